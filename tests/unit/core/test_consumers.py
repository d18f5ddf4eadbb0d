"""Dispatch, credit, settlement and requeue order."""

from __future__ import annotations

import pytest

from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.errors import AccessRefused, NotFound, PreconditionFailed

from .helpers import RecordingConsumer, make_broker, publish


def fill(vhost: object, count: int, queue: str = "q") -> None:
    for i in range(count):
        publish(vhost, "", queue, f"m{i}")  # type: ignore[arg-type]


def test_round_robin_between_consumers() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    a, b, c = RecordingConsumer(), RecordingConsumer(), RecordingConsumer()
    for tag, consumer in (("a", a), ("b", b), ("c", c)):
        vhost.consume("q", consumer, tag=tag, no_ack=True)
    fill(vhost, 7)
    assert a.bodies == [b"m0", b"m3", b"m6"]
    assert b.bodies == [b"m1", b"m4"]
    assert c.bodies == [b"m2", b"m5"]


def test_consume_delivers_backlog_in_order() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 3)
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False)
    assert consumer.bodies == [b"m0", b"m1", b"m2"]
    assert sub.unacked == 3
    assert all(d.subscription is sub and not d.redelivered for d in consumer.deliveries)
    assert [d.entry.delivery_count for d in consumer.deliveries] == [1, 1, 1]


def test_prefetch_limits_unacked_and_ack_frees_credit() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 5)
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2)
    assert consumer.bodies == [b"m0", b"m1"]
    queue = vhost.queue("q")
    assert queue.message_count == 3
    assert queue.unacked_count == 2
    assert queue.ack(consumer.deliveries[0])
    assert consumer.bodies == [b"m0", b"m1", b"m2"]
    assert not queue.ack(consumer.deliveries[0])  # twice: nothing happens
    assert consumer.bodies == [b"m0", b"m1", b"m2"]


def test_prefetch_skips_full_consumer_in_round_robin() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    a, b = RecordingConsumer(), RecordingConsumer()
    vhost.consume("q", a, tag="a", no_ack=False, prefetch=1)
    vhost.consume("q", b, tag="b", no_ack=False, prefetch=3)
    fill(vhost, 5)
    assert a.bodies == [b"m0"]
    assert b.bodies == [b"m1", b"m2", b"m3"]
    assert vhost.queue("q").message_count == 1


def test_credit_group_is_shared_across_queues() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    group = CreditGroup(3)
    c1, c2 = RecordingConsumer(), RecordingConsumer()
    vhost.consume("q1", c1, tag="1", no_ack=False, credit_group=group)
    vhost.consume("q2", c2, tag="2", no_ack=False, prefetch=10, credit_group=group)
    fill(vhost, 2, "q1")
    fill(vhost, 2, "q2")
    assert len(c1.deliveries) + len(c2.deliveries) == 3
    assert group.unacked == 3
    assert c1.bodies == [b"m0", b"m1"]
    assert c2.bodies == [b"m0"]
    # Acking on q1 frees group credit that q2 uses.
    vhost.queue("q1").ack(c1.deliveries[0])
    assert c2.bodies == [b"m0", b"m1"]
    assert group.unacked == 3


def test_credit_group_limit_change() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    group = CreditGroup(1)
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, credit_group=group)
    fill(vhost, 4)
    assert len(consumer.deliveries) == 1
    group.set_limit(3)
    assert len(consumer.deliveries) == 3
    group.set_limit(0)
    assert len(consumer.deliveries) == 4


def test_no_ack_needs_no_credit_and_leaves_nothing_behind() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    group = CreditGroup(1)
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=True, prefetch=1, credit_group=group)
    fill(vhost, 3)
    assert len(consumer.deliveries) == 3
    assert all(d.settled for d in consumer.deliveries)
    assert sub.unacked == 0
    assert group.unacked == 0
    assert broker.queued_bytes == 0


def test_back_pressure_and_resume() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    paused, open_ = RecordingConsumer(accepting=False), RecordingConsumer()
    sub = vhost.consume("q", paused, tag="p", no_ack=True)
    fill(vhost, 2)
    assert paused.deliveries == []
    assert vhost.queue("q").message_count == 2
    other = vhost.consume("q", open_, tag="o", no_ack=True)
    assert open_.bodies == [b"m0", b"m1"]
    other.cancel()
    fill(vhost, 2)
    paused.accepting = True
    sub.resume()
    assert paused.bodies == [b"m0", b"m1"]


def test_back_pressure_via_queue_dispatch() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer(accepting=False)
    vhost.consume("q", consumer, tag="c", no_ack=True)
    fill(vhost, 1)
    consumer.accepting = True
    vhost.queue("q").dispatch()
    assert consumer.bodies == [b"m0"]


def test_requeue_restores_original_order() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 5)
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=3)
    queue = vhost.queue("q")
    d0, d1, d2 = consumer.take()
    # Pause so requeued messages stay in the queue where we can look at them.
    consumer.accepting = False
    queue.reject(d1, requeue=True)
    queue.reject(d0, requeue=True)
    assert [e.message.body for e in queue.ready_entries()] == [b"m0", b"m1", b"m3", b"m4"]
    assert [e.redelivered for e in queue.ready_entries()] == [True, True, False, False]
    queue.ack(d2)
    consumer.accepting = True
    sub.resume()
    assert consumer.bodies == [b"m0", b"m1", b"m3"]
    assert [d.redelivered for d in consumer.deliveries] == [True, True, False]
    assert [d.entry.delivery_count for d in consumer.deliveries] == [2, 2, 1]


def test_requeue_into_the_middle() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 4)
    queue = vhost.queue("q")
    got = [vhost.get("q", no_ack=False) for _ in range(3)]
    deliveries = [g[0] for g in got if g is not None]
    queue.reject(deliveries[0], requeue=True)  # m0 before m3
    queue.reject(deliveries[2], requeue=True)  # m2 between m0 and m3
    queue.reject(deliveries[1], requeue=True)  # m1 between m0 and m2
    assert [e.message.body for e in queue.ready_entries()] == [b"m0", b"m1", b"m2", b"m3"]


def test_cancel_with_requeue_and_requeue_all() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 4)
    first = RecordingConsumer()
    sub = vhost.consume("q", first, tag="a", no_ack=False, prefetch=2)
    queue = vhost.queue("q")
    assert first.bodies == [b"m0", b"m1"]
    vhost.requeue_all(sub)
    # Requeued at the front, and handed straight back to the same consumer in order.
    assert first.bodies == [b"m0", b"m1", b"m0", b"m1"]
    sub.cancel(requeue_unacked=True)
    assert [e.message.body for e in queue.ready_entries()] == [b"m0", b"m1", b"m2", b"m3"]
    second = RecordingConsumer()
    vhost.consume("q", second, tag="b", no_ack=True)
    assert second.bodies == [b"m0", b"m1", b"m2", b"m3"]
    assert [d.redelivered for d in second.deliveries] == [True, True, False, False]


def test_cancel_without_requeue_keeps_deliveries_settleable() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False)
    fill(vhost, 1)
    sub.cancel()
    assert not sub.active
    assert sub.unacked == 1
    fill(vhost, 1)
    assert len(consumer.deliveries) == 1  # no more deliveries after cancel
    assert vhost.queue("q").ack(consumer.deliveries[0])
    assert sub.unacked == 0


def test_reject_without_requeue_drops() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False)
    fill(vhost, 1)
    queue = vhost.queue("q")
    assert queue.reject(consumer.deliveries[0], requeue=False)
    assert queue.message_count == 0
    assert queue.unacked_count == 0
    assert broker.queued_bytes == 0
    assert not queue.reject(consumer.deliveries[0], requeue=True)


def test_ack_inside_deliver_is_reentrant() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 5)
    seen: list[bytes] = []

    class AckAtOnce(RecordingConsumer):
        def deliver(self, delivery: Delivery) -> None:
            seen.append(delivery.message.body)
            delivery.queue.ack(delivery)

    vhost.consume("q", AckAtOnce(), tag="c", no_ack=False, prefetch=1)
    assert seen == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert vhost.queue("q").unacked_count == 0


def test_basic_get() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    assert vhost.get("q", no_ack=False) is None
    fill(vhost, 3)
    got = vhost.get("q", no_ack=False)
    assert got is not None
    delivery, left = got
    assert (delivery.message.body, left, delivery.subscription) == (b"m0", 2, None)
    queue = vhost.queue("q")
    assert queue.unacked_count == 1
    queue.reject(delivery, requeue=True)
    again = vhost.get("q", no_ack=True)
    assert again is not None
    assert again[0].message.body == b"m0"
    assert again[0].redelivered
    assert again[0].settled
    assert broker.queued_bytes == 4
    with pytest.raises(NotFound):
        vhost.get("missing", no_ack=True)


def test_prefetch_does_not_apply_to_get() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 3)
    assert all(vhost.get("q", no_ack=False) is not None for _ in range(3))


def test_exclusive_consumer() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    sub = vhost.consume("q", RecordingConsumer(), tag="x", no_ack=True, exclusive=True)
    with pytest.raises(AccessRefused) as info:
        vhost.consume("q", RecordingConsumer(), tag="y", no_ack=True)
    assert info.value.text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    assert info.value.code == 403
    sub.cancel()
    vhost.consume("q", RecordingConsumer(), tag="y", no_ack=True)
    with pytest.raises(AccessRefused):
        vhost.consume("q", RecordingConsumer(), tag="z", no_ack=True, exclusive=True)


def test_consume_argument_validation() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    with pytest.raises(PreconditionFailed) as info:
        vhost.consume(
            "q", RecordingConsumer(), tag="c", no_ack=True, arguments={"x-priority": "hi"}
        )
    assert "invalid arg 'x-priority'" in info.value.text
    vhost.consume("q", RecordingConsumer(), tag="c", no_ack=True, arguments={"x-priority": 5})


def test_single_active_consumer() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-single-active-consumer": True})
    a, b = RecordingConsumer(), RecordingConsumer()
    sub_a = vhost.consume("q", a, tag="a", no_ack=True)
    vhost.consume("q", b, tag="b", no_ack=True)
    fill(vhost, 3)
    assert len(a.deliveries) == 3
    assert b.deliveries == []
    a.accepting = False
    fill(vhost, 1)
    assert b.deliveries == []  # b waits even though a is paused
    sub_a.cancel()
    assert b.bodies == [b"m0"]


def test_owner_closed_requeues_unacked() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    conn = object()
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, owner=conn)
    fill(vhost, 2)
    vhost.owner_closed(conn)
    queue = vhost.queue("q")
    assert queue.consumer_count == 0
    assert [e.message.body for e in queue.ready_entries()] == [b"m0", b"m1"]
    assert all(d.settled for d in consumer.deliveries)


def test_server_cancel_on_delete_frees_group_credit() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    group = CreditGroup(1)
    c1, c2 = RecordingConsumer(), RecordingConsumer()
    vhost.consume("q1", c1, tag="1", no_ack=False, credit_group=group)
    vhost.consume("q2", c2, tag="2", no_ack=False, credit_group=group)
    fill(vhost, 1, "q1")
    fill(vhost, 1, "q2")
    assert c2.deliveries == []
    vhost.delete_queue("q1")
    assert c1.cancelled == 1
    assert c2.bodies == [b"m0"]


def test_publish_from_inside_deliver_keeps_order() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    seen: list[bytes] = []

    class Echo(RecordingConsumer):
        def deliver(self, delivery: Delivery) -> None:
            seen.append(delivery.message.body)
            if delivery.message.body == b"start":
                publish(vhost, "", "q", "one")
                publish(vhost, "", "q", "two")

    vhost.consume("q", Echo(), tag="c", no_ack=True)
    publish(vhost, "", "q", "start")
    publish(vhost, "", "q", "three")
    assert seen == [b"start", b"one", b"two", b"three"]
    assert vhost.queue("q").message_count == 0


def test_cancel_from_inside_deliver() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    fill(vhost, 3)

    class CancelAfterOne(RecordingConsumer):
        def deliver(self, delivery: Delivery) -> None:
            super().deliver(delivery)
            delivery.subscription.cancel()  # type: ignore[union-attr]

    first = CancelAfterOne()
    vhost.consume("q", first, tag="a", no_ack=True)
    assert first.bodies == [b"m0"]
    second = RecordingConsumer()
    vhost.consume("q", second, tag="b", no_ack=True)
    assert second.bodies == [b"m1", b"m2"]
