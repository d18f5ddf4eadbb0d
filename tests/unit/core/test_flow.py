"""Per-queue flow control (core/flow.py): watermarks, holds, release, and the no-deadlock rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.broker import Broker
from gateway.core.flow import FlowControl, FlowHold
from gateway.core.queues import Queue
from gateway.core.vhost import VirtualHost
from tests.unit.core.helpers import FakeClock, RecordingConsumer, msg


class Publisher:
    """A connection as flow control sees it: a hold and whether its socket is being read."""

    def __init__(self, flow: FlowControl, owner: object | None = None) -> None:
        self.flow = flow
        self.reading = True
        self.resumed = 0
        self.hold = FlowHold(self if owner is None else owner, self._resume)

    def _resume(self) -> None:
        self.resumed += 1
        self.reading = True

    def batch(self, vhost: VirtualHost, count: int, queue: str = "q") -> None:
        """One read batch of `count` publishes to the default exchange."""
        self.flow.begin()
        for i in range(count):
            vhost.publish("", msg(b"%d" % i, queue))
        if self.flow.hold(self.hold):
            self.reading = False


def make(high: int = 10, high_bytes: int = 1 << 20) -> tuple[Broker, VirtualHost, FlowControl]:
    flow = FlowControl(high_messages=high, high_bytes=high_bytes)
    broker = Broker(FakeClock(), flow=flow)
    return broker, broker.vhost("/"), flow


def consumed_queue(
    vhost: VirtualHost, name: str = "q", *, accepting: bool = False, owner: object = None,
    arguments: dict[str, object] | None = None,
) -> tuple[Queue, RecordingConsumer]:  # fmt: skip
    vhost.declare_queue(name, arguments=arguments)
    consumer = RecordingConsumer(accepting=accepting)
    vhost.consume(name, consumer, tag=f"t-{name}", no_ack=True, owner=owner)
    return vhost.queue(name), consumer


def drain(queue: Queue, consumer: RecordingConsumer) -> None:
    consumer.accepting = True
    for sub in queue.subscriptions():
        sub.resume()


def test_below_high_water_nothing_is_held() -> None:
    _, vhost, flow = make(high=10)
    consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 10)
    assert pub.reading
    assert not flow.hits


def test_paused_consumer_holds_publisher_until_low_water() -> None:
    _, vhost, flow = make(high=10)
    queue, _consumer = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 11)
    assert not pub.reading
    assert flow.waiting_on(queue) == 1
    # Taking a few (not below low water = 5) keeps it held.
    for _ in range(5):
        assert queue.get(no_ack=True) is not None
    assert not pub.reading
    assert queue.get(no_ack=True) is not None  # 5 left: low water
    assert pub.reading
    assert pub.resumed == 1
    assert flow.waiting_on(queue) == 0
    assert not queue._over


def test_dispatch_to_resumed_consumer_releases_and_delivers_everything() -> None:
    _, vhost, flow = make(high=10)
    queue, consumer = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 30)  # the whole batch is accepted: the pause applies to later reads
    assert not pub.reading
    drain(queue, consumer)
    assert pub.reading
    assert consumer.bodies == [b"%d" % i for i in range(30)]
    assert flow.holds_released == 1


def test_bytes_watermark() -> None:
    _, vhost, flow = make(high=1000, high_bytes=100)
    queue, _ = consumed_queue(vhost)
    pub = Publisher(flow)
    flow.begin()
    vhost.publish("", msg(b"x" * 101, "q"))
    assert flow.hold(pub.hold)
    assert queue.get(no_ack=True) is not None
    assert pub.resumed == 1


def test_queue_without_consumers_never_holds() -> None:
    _, vhost, flow = make(high=10)
    vhost.declare_queue("q")
    pub = Publisher(flow)
    pub.batch(vhost, 100)
    assert pub.reading
    assert vhost.queue("q").message_count == 100


def test_consumer_without_pushback_never_holds() -> None:
    """An offline persistent session: its queue is bounded by its length limit instead."""
    _, vhost, flow = make(high=10)
    queue, _ = consumed_queue(vhost)
    flow.set_pushback(queue.subscriptions(), False)
    pub = Publisher(flow)
    pub.batch(vhost, 50)
    assert pub.reading


def test_consumer_going_offline_releases_held_publishers() -> None:
    _, vhost, flow = make(high=10)
    queue, _ = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    assert not pub.reading
    flow.set_pushback(queue.subscriptions(), False)
    assert pub.reading
    assert not queue._over


def test_cancelled_consumer_releases_held_publishers() -> None:
    _, vhost, flow = make(high=10)
    queue, _ = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    queue.subscriptions()[0].cancel()
    assert pub.reading


def test_deleted_queue_releases_held_publishers() -> None:
    _, vhost, flow = make(high=10)
    queue, _ = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    vhost.delete_queue("q")
    assert pub.reading
    assert flow.waiting_on(queue) == 0
    assert not pub.hold.queues


def test_purge_releases_held_publishers() -> None:
    _, vhost, flow = make(high=10)
    consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    vhost.purge_queue("q")
    assert pub.reading


def test_expiry_releases_held_publishers() -> None:
    broker, vhost, flow = make(high=10)
    consumed_queue(vhost, arguments={"x-message-ttl": 1000})
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    assert not pub.reading
    clock = broker.clock
    assert isinstance(clock, FakeClock)
    clock.advance(2)
    broker.handle_timer()
    assert pub.reading


def test_publisher_is_not_held_by_a_queue_it_consumes() -> None:
    """Its own acks may be what that queue waits for: holding it would deadlock."""
    _, vhost, flow = make(high=10)
    owner = object()
    consumed_queue(vhost, owner=owner)
    pub = Publisher(flow, owner=owner)
    pub.batch(vhost, 50)
    assert pub.reading


def test_held_publishers_consumers_stop_pushing_back_so_cycles_unwind() -> None:
    """A publishes to B's queue and B to A's: once A is held (and its consumer stops pushing
    back, as the adapters do), B is released instead of both waiting forever."""
    _, vhost, flow = make(high=10)
    a_owner, b_owner = object(), object()
    queue_a, _ = consumed_queue(vhost, "qa", owner=a_owner)
    queue_b, _ = consumed_queue(vhost, "qb", owner=b_owner)
    a = Publisher(flow, owner=a_owner)
    b = Publisher(flow, owner=b_owner)
    b.batch(vhost, 20, "qa")
    assert not b.reading
    flow.set_pushback(queue_b.subscriptions(), False)  # B is held: its consumer can't drain
    a.batch(vhost, 20, "qb")
    assert a.reading  # qb has nobody pushing back
    flow.set_pushback(queue_a.subscriptions(), False)  # if A were held too...
    assert b.reading  # ...B would be let go


def test_hits_from_before_the_batch_are_not_claimed() -> None:
    _, vhost, flow = make(high=10)
    consumed_queue(vhost)
    for i in range(20):
        vhost.publish("", msg(b"%d" % i, "q"))  # a timer's publishes, say
    pub = Publisher(flow)
    pub.batch(vhost, 0)
    assert pub.reading


def test_release_forgets_a_closed_publisher() -> None:
    _, vhost, flow = make(high=10)
    queue, consumer = consumed_queue(vhost)
    pub = Publisher(flow)
    pub.batch(vhost, 20)
    flow.release(pub.hold)
    assert flow.waiting_on(queue) == 0
    drain(queue, consumer)
    assert pub.resumed == 0


def test_one_publisher_waits_for_every_queue_it_hit() -> None:
    _, vhost, flow = make(high=10)
    queue1, consumer1 = consumed_queue(vhost, "q1")
    queue2, consumer2 = consumed_queue(vhost, "q2")
    pub = Publisher(flow)
    flow.begin()
    for i in range(20):
        vhost.publish("", msg(b"%d" % i, "q1"))
        vhost.publish("", msg(b"%d" % i, "q2"))
    assert flow.hold(pub.hold)
    pub.reading = False
    drain(queue1, consumer1)
    assert not pub.reading
    drain(queue2, consumer2)
    assert pub.reading
    assert pub.resumed == 1


def test_length_limit_lowers_the_watermark() -> None:
    _, vhost, flow = make(high=1000)
    queue, _ = consumed_queue(vhost, arguments={"x-max-length": 100, "x-overflow": "drop-head"})
    assert queue._hw_messages == 25
    pub = Publisher(flow)
    pub.batch(vhost, 26)
    assert not pub.reading
    assert queue.dropped == 0


def test_watermarks_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FlowControl(high_messages=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["publish", "drain", "offline", "online", "get"]),
                  st.integers(1, 30)),
        max_size=30,
    )
)  # fmt: skip
def test_held_iff_waiting_and_never_stuck(ops: list[tuple[str, int]]) -> None:
    """Whatever happens, a held publisher waits on an over queue, and an over queue with a
    pushing consumer that drains always lets it go."""
    _, vhost, flow = make(high=10)
    queue, consumer = consumed_queue(vhost)
    pub = Publisher(flow)
    sent = 0
    for op, n in ops:
        if op == "publish" and pub.reading:
            flow.begin()
            for _ in range(n):
                vhost.publish("", msg(b"%d" % sent, "q"))
                sent += 1
            if flow.hold(pub.hold):
                pub.reading = False
        elif op == "drain":
            drain(queue, consumer)
            consumer.accepting = False
        elif op in ("offline", "online"):
            flow.set_pushback(queue.subscriptions(), op == "online")
        elif op == "get":
            for _ in range(n):
                queue.get(no_ack=True)
        assert pub.reading == (not pub.hold.held)
        if pub.hold.held:
            assert queue in pub.hold.queues
            assert queue._over
    flow.set_pushback(queue.subscriptions(), True)
    drain(queue, consumer)
    assert pub.reading
    assert flow.waiting_on(queue) == 0
