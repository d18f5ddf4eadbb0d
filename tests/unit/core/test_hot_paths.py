"""The per-message fast paths (one subscription, one target queue, inlined settlement) keep
the general path's behaviour: round-robin position, credit, memory accounting, observers."""

from __future__ import annotations

from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.message import Message, Properties

from .helpers import RecordingConsumer, make_broker, msg, publish
from .test_broker import RecordingObserver


class AckAtOnce(RecordingConsumer):
    def deliver(self, delivery: Delivery) -> None:
        super().deliver(delivery)
        delivery.queue.ack(delivery)


def test_second_consumer_takes_the_next_message_after_a_lone_one() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    a, b = RecordingConsumer(), RecordingConsumer()
    vhost.consume("q", a, tag="a", no_ack=True)
    publish(vhost, "", "q", "m0")
    vhost.consume("q", b, tag="b", no_ack=True)
    for i in range(1, 4):
        publish(vhost, "", "q", f"m{i}")
    # The lone consumer's delivery moved the round-robin past it, as the general path does.
    assert a.bodies == [b"m0", b"m2"]
    assert b.bodies == [b"m1", b"m3"]


def test_second_consumer_after_backlog_dispatch_to_a_lone_one() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    for i in range(2):
        publish(vhost, "", "q", f"m{i}")
    a, b = RecordingConsumer(), RecordingConsumer()
    vhost.consume("q", a, tag="a", no_ack=True)
    vhost.consume("q", b, tag="b", no_ack=True)
    publish(vhost, "", "q", "m2")
    publish(vhost, "", "q", "m3")
    assert a.bodies == [b"m0", b"m1", b"m3"]
    assert b.bodies == [b"m2"]


def test_single_queue_route_result_is_fresh_lists() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.topic", "a.#")
    first = vhost.publish("amq.topic", msg(b"1", "a.b"))
    second = vhost.publish("amq.topic", msg(b"2", "a.c"))
    assert first.routed
    assert second.routed
    assert first.queues == [vhost.queue("q")]
    assert first.rejected == []
    assert first.queues is not second.queues
    assert first.rejected is not second.rejected


def test_single_queue_rejected_by_a_deleted_queue_is_neither_accepted_nor_rejected() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    queue._destroy()  # deleted but still referenced by a route (as inside a deliver callback)
    result = vhost.publish("", msg(b"x", "q"))
    assert (result.queues, result.rejected, result.routed) == ([], [], True)


def test_ack_at_once_with_prefetch_and_group_keeps_counts_at_zero() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    group = CreditGroup()
    consumer = AckAtOnce()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2, credit_group=group)
    for i in range(5):
        publish(vhost, "", "q", f"m{i}")
    assert len(consumer.deliveries) == 5
    assert all(d.settled for d in consumer.deliveries)
    assert (sub.unacked, group.unacked, vhost.queue("q").unacked_count) == (0, 0, 0)
    assert broker.queued_bytes == 0


def test_ack_frees_a_full_group_for_another_queue() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("a")
    vhost.declare_queue("b")
    group = CreditGroup(1)
    ca, cb = RecordingConsumer(), RecordingConsumer()
    vhost.consume("a", ca, tag="a", no_ack=False, credit_group=group)
    vhost.consume("b", cb, tag="b", no_ack=False, credit_group=group)
    publish(vhost, "", "a", "a0")
    publish(vhost, "", "b", "b0")
    assert (ca.bodies, cb.bodies) == ([b"a0"], [])
    assert vhost.queue("a").ack(ca.deliveries[0])
    assert cb.bodies == [b"b0"]
    assert group.unacked == 1


def test_ack_of_a_full_prefetch_dispatches_the_next() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=1)
    publish(vhost, "", "q", "m0")
    publish(vhost, "", "q", "m1")
    assert consumer.bodies == [b"m0"]
    queue = vhost.queue("q")
    assert queue.ack(consumer.deliveries[0])
    assert consumer.bodies == [b"m0", b"m1"]
    assert queue.ack(consumer.deliveries[1])
    assert broker.queued_bytes == 0


def test_no_ack_direct_delivery_reports_enqueue_and_removal_of_durable_messages() -> None:
    broker, vhost, _ = make_broker()
    observer = RecordingObserver()
    broker.observers.append(observer)
    vhost.declare_queue("d", durable=True)
    vhost.consume("d", RecordingConsumer(), tag="c", no_ack=True)
    observer.events.clear()
    vhost.publish("", msg(b"p", "d", persistent=True))
    vhost.publish("", msg(b"t", "d"))
    assert observer.events == [("enq", "p"), ("rm", "p")]
    assert broker.queued_bytes == 0


def test_message_forms() -> None:
    props = Properties(delivery_mode=2, expiration="1500")
    derived = Message("x", "k", b"b", properties=props)
    assert (derived.persistent, derived.expiration_ms) == (True, 1500)
    assert derived.raw_properties is None
    given = Message("x", "k", b"b", properties=props, persistent=False, expiration_ms=7)
    assert (given.persistent, given.expiration_ms) == (False, 7)
    raw = Message("x", "k", b"b", raw_properties=b"\x00", decode_properties=lambda _: props)
    assert (raw.persistent, raw.expiration_ms, raw.raw_properties) == (False, None, b"\x00")
    assert raw.properties is props
    bare = Message("x", "k", b"b")
    assert (bare.persistent, bare.expiration_ms, bare.annotations) == (False, None, {})
    assert raw.id > derived.id
