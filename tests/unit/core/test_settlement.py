"""Batch settlement (``ack_many``), and the settlement and expiry modules behind Queue methods."""

from __future__ import annotations

from gateway.core import expiry, settlement
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.message import Message
from gateway.core.queues import Queue
from gateway.core.settlement import ack_many

from .helpers import RecordingConsumer, make_broker, publish


class SnapshotConsumer(RecordingConsumer):
    """Records, for every delivery, how many of the queue's deliveries were unacked then."""

    def __init__(self) -> None:
        super().__init__()
        self.unacked_seen: list[int] = []

    def deliver(self, delivery: Delivery) -> None:
        self.unacked_seen.append(delivery.queue.unacked_count)
        super().deliver(delivery)


def test_queue_methods_are_the_settlement_and_expiry_functions() -> None:
    assert Queue.ack is settlement.ack
    assert Queue.reject is settlement.reject
    assert Queue.requeue is settlement.requeue_deliveries
    assert Queue.purge is settlement.purge
    assert Queue._timer_fired is expiry.timer_fired
    assert Queue._arm_timer is expiry.arm_timer


def test_ack_many_refills_the_consumer_once_after_every_ack() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    consumer = SnapshotConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=3)
    for i in range(8):
        publish(vhost, "", "q", f"m{i}")
    first = consumer.take()
    assert [d.message.body for d in first] == [b"m0", b"m1", b"m2"]
    consumer.unacked_seen.clear()
    ack_many(first)
    assert consumer.bodies == [b"m3", b"m4", b"m5"]
    # All three acks were applied before the first refill (counted with the delivery being
    # made); refilling after each ack would show 3, 3, 3.
    assert consumer.unacked_seen == [1, 2, 3]
    assert all(d.settled for d in first)
    assert queue.unacked_count == 3
    assert queue.message_count == 2


def test_ack_many_skips_settled_deliveries_and_spans_queues() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("a")
    vhost.declare_queue("b")
    qa, qb = vhost.queue("a"), vhost.queue("b")
    group = CreditGroup(2)  # basic.qos global: one limit over both consumers
    ca, cb = RecordingConsumer(), RecordingConsumer()
    vhost.consume("a", ca, tag="ca", no_ack=False, credit_group=group)
    vhost.consume("b", cb, tag="cb", no_ack=False, credit_group=group)
    for i in range(3):
        publish(vhost, "", "a", f"a{i}")
        publish(vhost, "", "b", f"b{i}")
    assert ca.bodies == [b"a0"]
    assert cb.bodies == [b"b0"]
    taken = ca.take() + cb.take()
    assert qa.ack(taken[0])  # already settled: ack_many leaves it alone
    ack_many(taken)
    # The group's two credits went to the queues again: two new deliveries, in order.
    assert group.unacked == 2
    assert qa.unacked_count + qb.unacked_count == 2
    assert ca.bodies == [b"a1", b"a2"][: len(ca.bodies)]
    assert cb.bodies == [b"b1", b"b2"][: len(cb.bodies)]
    assert all(d.settled for d in taken)
    assert broker.queued_bytes == 4 * 2  # two delivered, two ready, of two bytes each


def test_ack_many_inside_a_dispatch_defers_to_the_running_loop() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    held: list[Delivery] = []

    class AckInBatches(RecordingConsumer):
        def deliver(self, delivery: Delivery) -> None:
            super().deliver(delivery)
            held.append(delivery)
            if len(held) == 2:
                batch = held[:]
                held.clear()
                ack_many(batch)  # the queue is mid-dispatch here

    consumer = AckInBatches()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2)
    for i in range(6):
        publish(vhost, "", "q", f"m{i}")
    assert consumer.bodies == [f"m{i}".encode() for i in range(6)]
    assert queue.unacked_count == 0
    assert queue.message_count == 0
    assert not queue._dispatching


def test_ack_many_of_nothing_changes_nothing() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    publish(vhost, "", "q", "m0")
    ack_many([])
    assert queue.message_count == 1
    assert not queue._dispatching


def test_expiry_functions_drive_the_queue_timer() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 1000})
    queue = vhost.queue("q")
    publish(vhost, "", "q", "m0")
    assert broker.next_timer() == clock.now + 1.0
    clock.advance(1.0)
    broker.handle_timer()
    assert queue.message_count == 0
    assert queue.expired == 1
    assert broker.queued_bytes == 0


def _ack_world(settle: str) -> list[object]:
    """Two queues (one durable, persistent messages observed), consumers with a prefetch, a
    shared credit group and none; half of the deliveries settled with ``ack_each`` or with
    one ``ack`` each (``settle``), in an order that switches queue and subscription, and a
    settled one among them. Returns everything observable afterwards."""
    broker, vhost, _ = make_broker()
    removed: list[tuple[str, int]] = []

    class Observer:
        def __getattr__(self, name: str) -> object:
            return lambda *args: None

        def on_removed(self, queue: Queue, entry: object) -> None:
            removed.append((queue.name, getattr(entry, "seq", -1)))

    broker.observers.append(Observer())  # type: ignore[arg-type]
    vhost.declare_queue("a", durable=True)
    vhost.declare_queue("b")
    vhost.declare_queue("c")
    group = CreditGroup(3)
    ca, cb, cc = SnapshotConsumer(), SnapshotConsumer(), SnapshotConsumer()
    vhost.consume("a", ca, tag="ca", no_ack=False, prefetch=2)
    vhost.consume("b", cb, tag="cb", no_ack=False, credit_group=group)
    vhost.consume("c", cc, tag="cc", no_ack=False)
    for i in range(6):
        for name in "abc":
            body = f"{name}{i}".encode()
            vhost.publish("", Message("", name, body, persistent=name == "a"))
    taken = ca.take() + cb.take() + cc.take()
    order = [taken[i] for i in (0, 3, 1, 4, 5, 2)] + taken[6:]
    order[1].queue.ack(order[1])
    if settle == "each":
        settlement.ack_each(order)
    else:
        for delivery in order:
            delivery.queue.ack(delivery)
    return [
        [(c.bodies, c.unacked_seen) for c in (ca, cb, cc)],
        [(q.message_count, q.unacked_count) for q in vhost.queues()],
        group.unacked,
        broker.queued_bytes,
        removed,
    ]


def test_ack_each_does_what_one_ack_per_delivery_does() -> None:
    assert _ack_world("each") == _ack_world("one by one")
