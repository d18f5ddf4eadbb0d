"""A dropped AMQP connection is freed by reference counting alone (issue 7).

The gateway runs with the cyclic collector frozen and rarely triggered (app.GC_THRESHOLDS), so
anything of a connection that only a reference cycle keeps alive stays in memory. These tests
drive the real listener protocol on a fake loop and transport with the collector disabled and
check that the protocol, its handler, the connection machine, its channels, consumers and
subscriptions are gone right after ``connection_lost``, whichever way the connection ended,
and that teardown still did its work (requeued deliveries, exclusive queue deleted).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from pamqp import commands

from gateway.amqp.channel import AmqpChannel
from gateway.amqp.channel_consume import ChannelConsumer
from gateway.amqp.listener import AmqpProtocol
from gateway.amqp.spec import PROTOCOL_HEADER
from gateway.core.consumers import Subscription
from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm
from tests.unit.shell.test_net_scheduling import FakeLoop

from .helpers import CAPABILITIES, Frame, content_frames, make_context, method_frame, parse


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, chunks: list[bytes | memoryview]) -> None:
        self.written.extend(bytes(chunk) for chunk in chunks)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Peer:
    """One client connection through the listener's protocol."""

    def __init__(self, protocol: AmqpProtocol, transport: FakeTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self._read = 0

    def send(self, *methods: tuple[int, Any]) -> None:
        self.protocol.data_received(b"".join(method_frame(ch, m) for ch, m in methods))

    def publish(self, channel: int, routing_key: str, body: bytes, count: int = 1) -> None:
        publish = commands.Basic.Publish(exchange="", routing_key=routing_key)
        one = method_frame(channel, publish) + content_frames(channel, body)
        self.protocol.data_received(one * count)

    def frames(self) -> list[Frame]:
        data = b"".join(self.transport.written[self._read :])
        self._read = len(self.transport.written)
        return parse(data)

    def methods(self) -> list[Any]:
        return [frame.method for frame in self.frames()]

    def login(self, password: str = "guest") -> None:
        self.protocol.data_received(PROTOCOL_HEADER)
        start_ok = commands.Connection.StartOk(
            client_properties={"capabilities": CAPABILITIES},
            mechanism="PLAIN",
            response=f"\x00guest\x00{password}",
        )
        self.send((0, start_ok))

    def open(self) -> None:
        self.login()
        self.send(
            (0, commands.Connection.TuneOk(2047, 131072, 60)),
            (0, commands.Connection.Open(virtual_host="/")),
        )
        names = [m.name for m in self.methods()]
        assert names == ["Connection.Start", "Connection.Tune", "Connection.OpenOk"]


class Listener:
    def __init__(self) -> None:
        self.context = make_context()
        loop = cast(asyncio.AbstractEventLoop, FakeLoop())
        self.registry = ConnectionRegistry()
        self.flusher: FlushScheduler[AmqpProtocol] = FlushScheduler(loop)
        self.alarm: MemoryAlarm[AmqpProtocol] = MemoryAlarm(lambda: 0, 1 << 30, loop)

    def accept(self) -> Peer:
        protocol = AmqpProtocol(self.context, self.registry, self.flusher, self.alarm)
        transport = FakeTransport()
        protocol.connection_made(cast(asyncio.Transport, transport))
        return Peer(protocol, transport)


def _alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()  # what is left must go by reference counting alone
    try:
        yield
    finally:
        gc.enable()


def _watch(peer: Peer) -> list[weakref.ref[Any]]:
    handler = peer.protocol.handler
    assert handler is not None
    return [weakref.ref(peer.protocol), weakref.ref(handler), weakref.ref(handler.conn)]


def _busy_session(peer: Peer) -> None:
    """Two channels, a shared and an exclusive queue, a consumer with three unacked deliveries
    and a publisher in confirm mode."""
    peer.open()
    peer.send((1, commands.Channel.Open()), (2, commands.Channel.Open()))
    peer.send(
        (1, commands.Queue.Declare(queue="work")),
        (1, commands.Queue.Declare(queue="", exclusive=True)),
        (1, commands.Basic.Qos(prefetch_count=10)),
        (1, commands.Basic.Consume(queue="work", consumer_tag="c1")),
        (2, commands.Confirm.Select()),
    )
    peer.publish(2, "work", b"m", count=3)
    methods = peer.methods()
    delivered = [m for m in methods if isinstance(m, commands.Basic.Deliver)]
    assert [m.delivery_tag for m in delivered] == [1, 2, 3]
    confirms = [m for m in methods if isinstance(m, commands.Basic.Ack)]
    assert [m.delivery_tag for m in confirms][-1:] == [3]


def _drop_lost(peer: Peer) -> None:
    peer.protocol.connection_lost(ConnectionResetError())


def _drop_client_close(peer: Peer) -> None:
    peer.send((0, commands.Connection.Close(200, "bye", 0, 0)))
    assert [m.name for m in peer.methods()] == ["Connection.CloseOk"]
    assert peer.transport.closed
    peer.protocol.connection_lost(None)  # what the loop does after transport.close()


def _drop_server_close(peer: Peer) -> None:
    peer.protocol.shutdown()
    [close] = peer.methods()
    assert isinstance(close, commands.Connection.Close)
    assert close.reply_code == 320
    peer.send((0, commands.Connection.CloseOk()))
    assert peer.transport.closed
    peer.protocol.connection_lost(None)


@pytest.mark.parametrize(
    "drop",
    [_drop_lost, _drop_client_close, _drop_server_close],
    ids=["transport_lost", "client_close", "server_close"],
)
def test_a_dropped_open_connection_is_freed_without_the_cyclic_collector(
    drop: Callable[[Peer], None],
) -> None:
    listener = Listener()
    with collector_off():
        peer = listener.accept()
        _busy_session(peer)
        watched = _watch(peer)
        handler = peer.protocol.handler
        assert handler is not None
        channel = weakref.ref(handler.channels[1])
        consumer = weakref.ref(handler.channels[1].consumers["c1"])
        del handler
        counts = _alive(AmqpChannel), _alive(ChannelConsumer), _alive(Subscription)
        drop(peer)
        del peer
        assert [ref() for ref in watched] == [None, None, None]
        assert channel() is None
        assert consumer() is None
        assert (_alive(AmqpChannel), _alive(ChannelConsumer), _alive(Subscription)) == (
            counts[0] - 2,
            counts[1] - 1,
            counts[2] - 1,
        )
    # Teardown did its work all the same.
    vhost = listener.context.broker.vhost("/")
    assert [q.name for q in vhost.queues() if q.name.startswith("amq.gen-")] == []
    work = vhost.queue("work")
    assert (work.message_count, work.unacked_count, work.consumer_count) == (3, 0, 0)
    assert listener.context.connections == 0
    assert len(listener.registry) == 0


def test_a_failed_login_is_freed_without_the_cyclic_collector() -> None:
    listener = Listener()
    with collector_off():
        peer = listener.accept()
        peer.login(password="wrong")
        [start, close] = peer.methods()
        assert isinstance(start, commands.Connection.Start)
        assert isinstance(close, commands.Connection.Close)
        assert close.reply_code == 403
        assert peer.transport.closed
        watched = _watch(peer)
        peer.protocol.connection_lost(None)
        del peer
        assert [ref() for ref in watched] == [None, None, None]


def test_a_publisher_held_by_flow_control_is_freed_when_dropped() -> None:
    listener = Listener()
    with collector_off():
        consumer = listener.accept()
        consumer.open()
        consumer.send(
            (1, commands.Channel.Open()),
            # A length limit of 8 puts the high watermark at 2 messages.
            (1, commands.Queue.Declare(queue="slow", arguments={"x-max-length": 8})),
            (1, commands.Basic.Qos(prefetch_count=1)),
            (1, commands.Basic.Consume(queue="slow")),
        )
        publisher = listener.accept()
        publisher.open()
        publisher.send((1, commands.Channel.Open()))
        publisher.publish(1, "slow", b"p", count=5)
        assert not publisher.transport.reading  # held until "slow" drains
        handler = publisher.protocol.handler
        assert handler is not None
        assert handler._flow is not None
        del handler
        watched = _watch(publisher)
        publisher.protocol.connection_lost(None)
        del publisher
        assert [ref() for ref in watched] == [None, None, None]
    slow = listener.context.broker.vhost("/").queue("slow")
    assert listener.context.broker.flow.waiting_on(slow) == 0  # the hold was released
