"""A queue whose subscriptions had no room at the last dispatch is "blocked": publishes join the
backlog without asking the consumers again, until something that may give one room calls
``dispatch`` (an ack or reject freeing credit, a requeue, ``Subscription.resume``, a
subscription added or cancelled). Drop-head queues only call ``_trim`` past their limit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.consumers import CreditGroup, Delivery, Subscription
from gateway.core.dispatch import can_take
from gateway.core.queues import Queue
from gateway.core.settlement import ack_many

from .helpers import RecordingConsumer, make_broker, msg


class CountingConsumer(RecordingConsumer):
    """Counts how often the core asks whether it can take a message."""

    def __init__(self, *, accepting: bool = True) -> None:
        super().__init__(accepting=accepting)
        self.asked = 0

    def can_accept(self) -> bool:
        self.asked += 1
        return self.accepting


class Window(CountingConsumer):
    """An MQTT session's shape: no prefetch, ``can_accept`` says no past a window of unacked
    deliveries, and the adapter calls ``resume`` when an ack opens it."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.open: list[Delivery] = []

    def can_accept(self) -> bool:
        self.asked += 1
        return len(self.open) < self.window

    def deliver(self, delivery: Delivery) -> None:
        super().deliver(delivery)
        self.open.append(delivery)


def _publish(queue: Queue, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert queue.offer(msg(b"m%d" % i))


def test_a_full_window_is_asked_once_not_per_publish() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    consumer = Window(2)
    sub = vhost.consume("q", consumer, tag="c", no_ack=False)
    _publish(queue, 2)
    assert len(consumer.open) == 2
    asked = consumer.asked
    _publish(queue, 50, 2)
    assert consumer.asked - asked == 1  # the first backlog message finds out; the rest skip
    assert queue.message_count == 50
    # The adapter's ack + resume (an MQTT PUBACK) opens the window: the next ones flow.
    first = consumer.open.pop(0)
    queue.ack(first)
    sub.resume()
    assert len(consumer.open) == 2
    assert consumer.bodies == [b"m0", b"m1", b"m2"]
    asked = consumer.asked
    _publish(queue, 10, 52)
    assert consumer.asked == asked  # still blocked since the resume found the window full
    while consumer.open:
        queue.ack(consumer.open.pop(0))
        sub.resume()
    assert consumer.bodies == [b"m%d" % i for i in range(62)]
    assert queue.message_count == 0


def test_prefetch_credit_freed_by_an_ack_unblocks_without_resume() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    consumer = CountingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=1)
    _publish(queue, 5)
    assert consumer.bodies == [b"m0"]
    asked = consumer.asked
    _publish(queue, 5, 5)
    assert consumer.asked == asked  # at its prefetch limit: not even asked
    queue.ack(consumer.deliveries[0])
    assert consumer.bodies == [b"m0", b"m1"]


def test_a_paused_consumer_is_not_asked_per_publish_and_resume_delivers() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    consumer = CountingConsumer(accepting=False)
    sub = vhost.consume("q", consumer, tag="c", no_ack=True)
    asked = consumer.asked
    _publish(queue, 20)
    assert consumer.asked - asked <= 1
    consumer.accepting = True
    sub.resume()
    assert consumer.bodies == [b"m%d" % i for i in range(20)]
    # Unblocked again: a new message goes straight out.
    _publish(queue, 1, 20)
    assert consumer.bodies[-1] == b"m20"


def test_a_new_subscription_takes_the_backlog_of_a_blocked_queue() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    vhost.consume("q", CountingConsumer(accepting=False), tag="a", no_ack=True)
    _publish(queue, 3)
    other = CountingConsumer()
    second = vhost.consume("q", other, tag="b", no_ack=True)
    assert other.bodies == [b"m0", b"m1", b"m2"]
    second.cancel()
    _publish(queue, 2, 3)  # "a" alone, still paused
    assert queue.message_count == 2


def test_a_credit_group_wake_unblocks() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    group = CreditGroup(1)
    c1, c2 = CountingConsumer(), CountingConsumer()
    vhost.consume("q1", c1, tag="a", no_ack=False, credit_group=group)
    vhost.consume("q2", c2, tag="b", no_ack=False, credit_group=group)
    q1, q2 = vhost.queue("q1"), vhost.queue("q2")
    _publish(q1, 1)
    _publish(q2, 3)  # the group is full: q2 blocks
    assert c2.deliveries == []
    q1.ack(c1.deliveries[0])  # the group wakes q2
    assert c2.bodies == [b"m0"]


def test_drop_head_trims_only_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Queue] = []
    trim = Queue._trim

    def counting(queue: Queue) -> None:
        calls.append(queue)
        trim(queue)

    monkeypatch.setattr(Queue, "_trim", counting)
    _, vhost, _ = make_broker()
    vhost.declare_queue("n", arguments={"x-max-length": 3, "x-overflow": "drop-head"})
    vhost.declare_queue("b", arguments={"x-max-length-bytes": 4, "x-overflow": "drop-head"})
    by_count, by_bytes = vhost.queue("n"), vhost.queue("b")
    _publish(by_count, 3)
    assert calls == []
    _publish(by_count, 2, 3)
    assert len(calls) == 2
    assert [e.message.body for e in by_count.ready_entries()] == [b"m2", b"m3", b"m4"]
    assert by_count.dropped == 2
    calls.clear()
    by_bytes.offer(msg(b"ab"))
    by_bytes.offer(msg(b"cd"))
    assert calls == []
    by_bytes.offer(msg(b"e"))
    assert calls == [by_bytes]
    assert [e.message.body for e in by_bytes.ready_entries()] == [b"cd", b"e"]


# -- the invariant, under random operations ------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["publish", "ack", "ack_many", "reject", "requeue", "pause", "resume", "add", "cancel"]
        ),
        st.integers(0, 7),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, prefetch=st.integers(0, 3), group_limit=st.integers(0, 4), window=st.integers(1, 4))
def test_no_backlog_while_a_subscription_has_room(
    ops: list[tuple[str, int]], prefetch: int, group_limit: int, window: int
) -> None:
    """Whatever happens, as long as consumers call ``resume`` when they open up (the
    ``Consumer`` contract), a queue never keeps messages while a subscription could take one,
    and no message is lost or duplicated."""
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    queue = vhost.queue("q")
    group = CreditGroup(group_limit)
    consumers: list[tuple[Window, Subscription]] = []
    published = settled = 0
    tags = iter(range(1000))

    def add() -> None:
        consumer = Window(window)
        sub = vhost.consume(
            "q", consumer, tag=f"c{next(tags)}", no_ack=False, prefetch=prefetch,
            credit_group=group,
        )  # fmt: skip
        consumers.append((consumer, sub))

    add()
    for op, n in ops:
        consumer, sub = consumers[n % len(consumers)] if consumers else (None, None)
        if op == "publish":
            _publish(queue, n + 1, published)
            published += n + 1
        elif consumer is None or sub is None:
            if op == "add":
                add()
            continue
        elif op == "add" and len(consumers) < 3:
            add()
        elif op in ("ack", "reject", "requeue") and consumer.open:
            delivery = consumer.open.pop(n % len(consumer.open))
            if op == "ack":
                queue.ack(delivery)
                settled += 1
            elif op == "reject":
                queue.reject(delivery, requeue=False)
                settled += 1
            else:
                queue.requeue([delivery])
            sub.resume()  # the window opened
        elif op == "ack_many" and consumer.open:
            taken, consumer.open = consumer.open, []
            ack_many(taken)
            settled += len(taken)
            sub.resume()
        elif op == "pause":
            consumer.window = 0
        elif op == "resume":
            consumer.window = window
            sub.resume()
        elif op == "cancel":
            for delivery in consumer.open:
                queue.requeue([delivery])
            consumer.open.clear()
            sub.cancel()
            consumers.remove((consumer, sub))
        if queue.message_count:
            assert not any(can_take(s) for s in queue.subscriptions()), (op, n)
    # Conservation: every message is ready, open somewhere, or settled, exactly once.
    open_bodies = [d.message.body for c, _ in consumers for d in c.open]
    ready = [e.message.body for e in queue.ready_entries()]
    assert len(set(open_bodies) | set(ready)) == len(open_bodies) + len(ready)
    assert settled + len(open_bodies) + len(ready) == published
    assert queue.unacked_count == len(open_bodies)
