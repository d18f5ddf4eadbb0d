"""The broker: virtual hosts, the observer hook, memory accounting, timers, errors."""

from __future__ import annotations

import pytest

from gateway.core import errors
from gateway.core.broker import Broker
from gateway.core.errors import CoreError, NotAllowed
from gateway.core.exchanges import Binding, Exchange
from gateway.core.message import QueueEntry
from gateway.core.queues import Queue

from .helpers import FakeClock, RecordingConsumer, make_broker, msg, publish


class RecordingObserver:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_exchange_declared(self, exchange: Exchange) -> None:
        self.events.append(("exchange+", exchange.name))

    def on_exchange_deleted(self, exchange: Exchange) -> None:
        self.events.append(("exchange-", exchange.name))

    def on_queue_declared(self, queue: Queue) -> None:
        self.events.append(("queue+", queue.name))

    def on_queue_deleted(self, queue: Queue) -> None:
        self.events.append(("queue-", queue.name))

    def on_binding_added(self, binding: Binding) -> None:
        self.events.append(("bind+", f"{binding.source}->{binding.destination}"))

    def on_binding_removed(self, binding: Binding) -> None:
        self.events.append(("bind-", f"{binding.source}->{binding.destination}"))

    def on_enqueued(self, queue: Queue, entry: QueueEntry) -> None:
        self.events.append(("enq", entry.message.body.decode()))

    def on_removed(self, queue: Queue, entry: QueueEntry) -> None:
        self.events.append(("rm", entry.message.body.decode()))


def test_vhosts() -> None:
    broker = Broker(FakeClock())
    assert [v.name for v in broker.vhosts()] == ["/"]
    lab = broker.add_vhost("lab")
    assert broker.add_vhost("lab") is lab
    assert broker.vhost("lab") is lab
    with pytest.raises(NotAllowed) as info:
        broker.vhost("nope")
    assert info.value.code == 530
    assert info.value.hard
    assert info.value.text == "NOT_ALLOWED - vhost nope not found"


def test_vhosts_are_separate() -> None:
    broker, root, _ = make_broker()
    lab = broker.add_vhost("lab")
    root.declare_queue("q")
    lab.declare_queue("q")
    publish(lab, "", "q")
    assert root.queue("q").message_count == 0
    assert lab.queue("q").message_count == 1


def test_observer_sees_only_durable_things() -> None:
    broker, vhost, _ = make_broker()
    observer = RecordingObserver()
    broker.observers.append(observer)
    vhost.declare_exchange("dx", "direct", durable=True)
    vhost.declare_exchange("tx", "direct")
    vhost.declare_queue("dq", durable=True)
    vhost.declare_queue("tq")
    vhost.bind_queue("dq", "dx", "k")
    vhost.bind_queue("tq", "dx", "k")
    vhost.bind_queue("dq", "tx", "k")
    vhost.publish("dx", msg("p", "k", exchange="dx", persistent=True))
    vhost.publish("dx", msg("t", "k", exchange="dx"))
    got = vhost.get("dq", no_ack=False)
    assert got is not None
    vhost.queue("dq").ack(got[0])
    vhost.publish("dx", msg("p2", "k", exchange="dx", persistent=True))
    vhost.delete_exchange("dx")
    vhost.delete_queue("dq")
    assert observer.events == [
        ("exchange+", "dx"),
        ("queue+", "dq"),
        ("bind+", "dx->dq"),
        ("enq", "p"),
        ("rm", "p"),
        ("enq", "p2"),
        ("bind-", "dx->dq"),
        ("exchange-", "dx"),
        ("queue-", "dq"),
    ]


def test_observer_sees_purges_and_no_ack_deliveries() -> None:
    broker, vhost, _ = make_broker()
    observer = RecordingObserver()
    broker.observers.append(observer)
    vhost.declare_queue("dq", durable=True)
    vhost.publish("", msg("a", "dq", persistent=True))
    vhost.publish("", msg("b", "dq", persistent=True))
    assert vhost.purge_queue("dq") == 2
    vhost.consume("dq", RecordingConsumer(), tag="c", no_ack=True)
    vhost.publish("", msg("c", "dq", persistent=True))
    assert observer.events[1:] == [
        ("enq", "a"),
        ("enq", "b"),
        ("rm", "a"),
        ("rm", "b"),
        ("enq", "c"),
        ("rm", "c"),
    ]


def test_queued_bytes_follow_every_path() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("a", arguments={"x-message-ttl": 1000})
    vhost.declare_queue("b")
    vhost.bind_queue("a", "amq.fanout", "")
    vhost.bind_queue("b", "amq.fanout", "")
    publish(vhost, "amq.fanout", "", b"12345")
    assert broker.queued_bytes == 10  # one body, counted per queue
    got = vhost.get("b", no_ack=False)
    assert got is not None
    assert broker.queued_bytes == 10
    vhost.queue("b").ack(got[0])
    assert broker.queued_bytes == 5
    clock.advance(2)
    broker.handle_timer()
    assert broker.queued_bytes == 0


def test_next_timer_skips_deleted_queues() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 1000})
    publish(vhost, "", "q")
    assert broker.next_timer() == 1001.0
    vhost.delete_queue("q")
    assert broker.next_timer() is None


def test_error_classes_carry_codes() -> None:
    table = {
        errors.AccessRefused: (403, False),
        errors.NotFound: (404, False),
        errors.ResourceLocked: (405, False),
        errors.PreconditionFailed: (406, False),
        errors.ResourceError: (506, False),
        errors.InvalidPath: (402, True),
        errors.CommandInvalid: (503, True),
        errors.NotAllowed: (530, True),
        errors.NotImplementedFeature: (540, True),
    }
    for cls, (code, hard) in table.items():
        error = cls("explained")
        assert isinstance(error, CoreError)
        assert (error.code, error.hard) == (code, hard)
        assert error.text == f"{cls.name} - explained"
        assert str(error) == error.text


def test_timer_heap_stays_small_under_steady_ttl_traffic() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 1000, "x-expires": 60000})
    for _ in range(200):
        publish(vhost, "", "q")
        clock.advance(0.25)
        broker.handle_timer()
    assert vhost.queue("q").message_count == 3  # the last second's worth
    assert len(broker._timers) <= 3


def test_offer_enqueues_without_routing() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    queue = vhost.queue("q")
    assert queue.offer(msg("a"))
    assert not queue.offer(msg("b"))
    assert [e.message.body for e in queue.ready_entries()] == [b"a"]
    assert broker.queued_bytes == 1
