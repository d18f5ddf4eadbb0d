"""Batch dispatch (core/dispatch.py): a lone subscription whose consumer has ``deliver_many``
gets the ready backlog in batches bounded by its credit, with the bookkeeping of one delivery
at a time; everything else is dispatched one delivery at a time as before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import dispatch
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.queues import Queue
from gateway.core.settlement import ack_many
from gateway.core.vhost import VirtualHost

from .helpers import RecordingConsumer, make_broker, msg, publish


class BatchRecorder(RecordingConsumer):
    """A ``BatchConsumer``: keeps single deliveries and batches apart."""

    def __init__(self, *, accepting: bool = True) -> None:
        super().__init__(accepting=accepting)
        self.batches: list[list[bytes]] = []
        self.asked = 0

    def can_accept(self) -> bool:
        self.asked += 1
        return self.accepting

    def deliver_many(self, deliveries: list[Delivery]) -> None:
        self.batches.append([d.message.body for d in deliveries])
        self.deliveries.extend(deliveries)


def _backlog(n: int, **consume: object) -> tuple[Queue, BatchRecorder, list[Delivery]]:
    """Queue "q" with ``n`` messages m0.. behind a consumer at its limit of 2 (its first two
    deliveries are returned, unacked)."""
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = BatchRecorder()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2, **consume)  # type: ignore[arg-type]
    for i in range(n):
        publish(vhost, "", "q", f"m{i}")
    first = consumer.take()
    return vhost.queue("q"), consumer, first


def test_queue_methods_are_the_dispatch_functions() -> None:
    assert Queue.dispatch is dispatch.dispatch
    assert Queue._dispatch_ready is dispatch.dispatch_ready
    assert Queue._deliver is dispatch.deliver


def test_messages_to_an_empty_queue_go_one_by_one_then_the_backlog_in_batches() -> None:
    queue, consumer, first = _backlog(7)
    # Arriving at an empty queue with credit: deliver(), no batch.
    assert [d.message.body for d in first] == [b"m0", b"m1"]
    assert consumer.batches == []
    ack_many(first)
    assert consumer.batches == [[b"m2", b"m3"]]
    ack_many(consumer.take())
    assert consumer.batches == [[b"m2", b"m3"], [b"m4", b"m5"]]
    assert queue.message_count == 1
    assert queue.unacked_count == 2


def test_a_batch_is_tracked_like_single_deliveries() -> None:
    group = CreditGroup()
    queue, consumer, first = _backlog(5, credit_group=group)
    sub = queue.subscriptions()[0]
    ack_many(first)
    batch = consumer.take()
    assert [d.entry.seq for d in batch] == [3, 4]
    assert all(d.subscription is sub and d.queue is queue and not d.settled for d in batch)
    assert all(d.entry.delivery_count == 1 for d in batch)
    assert (sub.unacked, queue.unacked_count, group.unacked) == (2, 2, 2)
    assert queue.ready_bytes == 2  # "m4" left
    queue.ack(batch[0])
    assert consumer.batches[-1] == [b"m4"]


def test_the_channel_wide_limit_bounds_a_batch() -> None:
    group = CreditGroup(3)
    queue, consumer, first = _backlog(9, credit_group=group)
    queue.subscriptions()[0].prefetch = 0  # only the group limits now
    ack_many(first)
    assert consumer.batches == [[b"m2", b"m3", b"m4"]]
    assert group.unacked == 3


def test_can_accept_is_asked_once_per_batch_and_a_paused_consumer_gets_nothing() -> None:
    queue, consumer, first = _backlog(6)
    consumer.accepting = False
    ack_many(first)
    assert consumer.batches == []
    assert queue.message_count == 4
    consumer.accepting = True
    asked = consumer.asked
    queue.subscriptions()[0].resume()
    assert consumer.batches == [[b"m2", b"m3"]]
    assert consumer.asked - asked == 1


class WindowedRecorder(BatchRecorder):
    """A consumer with a window of its own (as an MQTT session's in-flight window)."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.credit_asked = 0

    def batch_credit(self) -> int:
        self.credit_asked += 1
        return self.window


def test_a_consumers_own_window_bounds_a_batch_and_a_closed_one_blocks_the_queue() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = WindowedRecorder(3)
    consumer.accepting = False
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=0)
    for i in range(8):
        publish(vhost, "", "q", f"m{i}")
    queue = vhost.queue("q")
    consumer.accepting = True
    queue.subscriptions()[0].resume()
    # No prefetch: without the window the whole backlog would be one batch.
    assert consumer.batches == [[b"m0", b"m1", b"m2"], [b"m3", b"m4", b"m5"], [b"m6", b"m7"]]
    assert queue.unacked_count == 8
    consumer.accepting = False
    publish(vhost, "", "q", "m8")  # into the backlog
    consumer.accepting = True
    consumer.window = -2  # over-full (a smaller window after a reconnect): nothing, no error
    queue.dispatch()
    assert queue.message_count == 1
    assert queue._blocked
    consumer.accepting = False
    asked = consumer.credit_asked
    queue.dispatch()
    assert consumer.credit_asked == asked  # asked only after can_accept says yes


def test_a_no_ack_batch_is_settled_and_bounded() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    count = dispatch.BATCH_MAX + 5
    for i in range(count):
        publish(vhost, "", "q", f"{i:05}")
    consumer = BatchRecorder()
    vhost.consume("q", consumer, tag="c", no_ack=True)
    assert [len(b) for b in consumer.batches] == [dispatch.BATCH_MAX, 5]
    assert consumer.bodies == [f"{i:05}".encode() for i in range(count)]
    assert all(d.settled for d in consumer.deliveries)
    assert broker.queued_bytes == 0
    assert vhost.queue("q").unacked_count == 0


def test_expired_entries_are_skipped_inside_a_batch() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q")
    consumer = BatchRecorder()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2)
    vhost.publish("", msg(b"a", "q"))
    vhost.publish("", msg(b"b", "q"))
    vhost.publish("", msg(b"short", "q", expiration="1000"))
    vhost.publish("", msg(b"c", "q"))
    vhost.publish("", msg(b"d", "q"))
    clock.advance(2)
    queue = vhost.queue("q")
    ack_many(consumer.take())
    assert consumer.batches == [[b"c", b"d"]]
    assert queue.expired == 1
    assert broker.queued_bytes == 2


def test_two_subscriptions_are_served_one_delivery_at_a_time() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    for i in range(4):
        publish(vhost, "", "q", f"m{i}")
    a, b = BatchRecorder(), BatchRecorder(accepting=False)
    vhost.consume("q", a, tag="a", no_ack=False, prefetch=1)
    vhost.consume("q", b, tag="b", no_ack=False, prefetch=1)
    assert a.batches == [[b"m0"]]  # alone when it subscribed
    b.accepting = True
    vhost.queue("q").subscriptions()[1].resume()
    ack_many(a.take())
    assert a.batches == [[b"m0"]]  # round-robin now: deliver(), no batch
    assert a.bodies == [b"m2"]
    assert b.bodies == [b"m1"]


def test_a_consumer_without_deliver_many_still_gets_single_deliveries() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    for i in range(3):
        publish(vhost, "", "q", f"m{i}")
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=2)
    assert sub.deliver_many is None
    assert consumer.bodies == [b"m0", b"m1"]
    ack_many(consumer.take())
    assert consumer.bodies == [b"m2"]


def test_a_publish_behind_a_consumer_at_its_limit_waits_then_is_refilled() -> None:
    # _offer skips the dispatch when the lone subscription has no credit: the message must
    # still go out once credit comes back.
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=1)
    publish(vhost, "", "q", "m0")
    publish(vhost, "", "q", "m1")
    queue = vhost.queue("q")
    assert (consumer.bodies, queue.message_count) == ([b"m0"], 1)
    queue.ack(consumer.take()[0])
    assert consumer.bodies == [b"m1"]
    assert queue.message_count == 0


# -- property: batches change nothing but the number of calls ---------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["publish", "publish", "ack_many", "ack", "requeue", "pause", "resume"]),
        st.integers(0, 5),
    ),
    max_size=40,
)


def _world(consumer: RecordingConsumer, prefetch: int, group_limit: int) -> VirtualHost:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 60_000})
    vhost.consume(
        "q", consumer, tag="c", no_ack=False, prefetch=prefetch,
        credit_group=CreditGroup(group_limit),
    )  # fmt: skip
    return vhost


@settings(max_examples=200, deadline=None)
@given(OPS, st.integers(0, 4), st.integers(0, 4))
def test_batches_deliver_what_single_deliveries_do(
    ops: list[tuple[str, int]], prefetch: int, group_limit: int
) -> None:
    single, batch = RecordingConsumer(), BatchRecorder()
    worlds = [
        (single, _world(single, prefetch, group_limit)),
        (batch, _world(batch, prefetch, group_limit)),
    ]
    published = 0
    for op, n in ops:
        for consumer, vhost in worlds:
            queue = vhost.queue("q")
            pending = [d for d in consumer.deliveries if not d.settled]
            if op == "publish":
                for i in range(n):
                    publish(vhost, "", "q", f"m{published + i}")
            elif op == "ack_many":
                ack_many(pending[:n])
            elif op == "ack" and pending:
                queue.ack(pending[n % len(pending)])
            elif op == "requeue" and pending:
                queue.requeue(pending[: n + 1])
            elif op == "pause":
                consumer.accepting = False
            elif op == "resume":
                consumer.accepting = True
                queue.subscriptions()[0].resume()
        if op == "publish":
            published += n
        (_, a), (_, b) = worlds
        qa, qb = a.queue("q"), b.queue("q")
        assert [(d.message.body, d.redelivered) for d in single.deliveries] == [
            (d.message.body, d.redelivered) for d in batch.deliveries
        ]
        assert (qa.message_count, qa.unacked_count, qa.ready_bytes) == (
            qb.message_count, qb.unacked_count, qb.ready_bytes,
        )  # fmt: skip
        assert a.broker.queued_bytes == b.broker.queued_bytes
