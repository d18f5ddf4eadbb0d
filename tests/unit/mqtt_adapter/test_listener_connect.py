"""The listener's connect path (issue 7, S7) on a fake loop and transport: the connect timeout
armed straight on the timer wheel, the first read through the CONNECT fast path or, for
anything else, the generic one, and the registry's "empty" flag kept without a call per add."""

from __future__ import annotations

import asyncio
import gc
import math
import weakref
from typing import Any, cast

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.listener import MqttProtocol
from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, ConnAck, Connect, PingReq, ReasonCode, Will
from gateway.mqtt.session import Session
from gateway.mqtt.session_handler import ClientHandler
from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm, TimerWheel
from tests.unit.shell.test_net_scheduling import FakeLoop

from .harness import World
from .test_listener_close import FakeTransport


class TlsLikeTransport(FakeTransport):
    """Cannot half-close: a close needs no running loop for the lingering read."""

    def can_write_eof(self) -> bool:
        return False


class Listener:
    def __init__(self, **settings: Any) -> None:
        self.world = World(**settings)
        self.loop = FakeLoop()
        loop = cast(asyncio.AbstractEventLoop, self.loop)
        self.registry = ConnectionRegistry()
        self.flusher: FlushScheduler[MqttProtocol] = FlushScheduler(loop)
        self.alarm: MemoryAlarm[MqttProtocol] = MemoryAlarm(lambda: 0, 1 << 30, loop)

    def accept(self) -> tuple[MqttProtocol, FakeTransport]:
        protocol = MqttProtocol(self.world.hub, self.registry, self.flusher, self.alarm)
        transport = TlsLikeTransport()
        protocol.connection_made(cast(asyncio.Transport, transport))
        return protocol, transport

    def fire_timers_due_by(self, when: float) -> None:
        due = [entry for entry in self.loop.at if entry[0] <= when and not entry[3].cancelled]
        self.loop.at = [entry for entry in self.loop.at if entry not in due]
        for _, callback, args, _ in due:
            callback(*args)


def test_the_connect_timeout_is_armed_on_the_wheel_and_closes_a_silent_client() -> None:
    listener = Listener(connect_timeout=5.0)
    protocol, transport = listener.accept()
    opened = listener.world.clock()
    assert protocol._timer_at == opened + 5.0
    tick = math.ceil((listener.loop.now + 5.0) / TimerWheel.RESOLUTION)
    assert [when for when, *_ in listener.loop.at] == [tick * TimerWheel.RESOLUTION]
    listener.world.clock.now += 5.0
    listener.fire_timers_due_by(tick * TimerWheel.RESOLUTION)
    assert transport.closed
    assert transport.written == []  # 3.1.1 has nothing to say before CONNECT
    assert listener.world.hub.connections == 0


def test_a_common_connect_alone_in_the_first_read_is_answered() -> None:
    listener = Listener()
    protocol, transport = listener.accept()
    protocol.data_received(encode(Connect("fast", MQTT_3_1_1, keep_alive=60), MQTT_3_1_1))
    assert transport.written == [b"\x20\x02\x00\x00"]
    session = listener.world.hub.sessions["fast"]
    assert session.handler is protocol.handler
    assert session.attached_at == listener.world.clock()
    # The keep-alive deadline is later than the connect timeout: the timer stays as armed.
    assert protocol._timer_at == listener.world.clock() + 10.0


def test_other_first_reads_take_the_generic_path_with_the_same_answers() -> None:
    listener = Listener()
    pipelined, out1 = listener.accept()
    connect = encode(Connect("pipelined", MQTT_3_1_1, keep_alive=60), MQTT_3_1_1)
    pipelined.data_received(connect + encode(PingReq(), MQTT_3_1_1))
    assert b"".join(out1.written) == b"\x20\x02\x00\x00\xd0\x00"  # CONNACK, PINGRESP
    split, out2 = listener.accept()
    wire = encode(Connect("split", MQTT_5, keep_alive=60), MQTT_5)
    split.data_received(wire[:5])
    assert out2.written == []
    split.data_received(wire[5:])
    [connack] = PacketDecoder(protocol_level=MQTT_5).feed(b"".join(out2.written))
    assert isinstance(connack, ConnAck)
    assert connack.reason_code == ReasonCode.SUCCESS
    with_will, out3 = listener.accept()
    will = Will("gone/w", b"bye", 0, False)
    with_will.data_received(encode(Connect("will", MQTT_3_1_1, keep_alive=60, will=will), 4))
    assert out3.written == [b"\x20\x02\x00\x00"]
    assert with_will.handler is not None
    assert with_will.handler.will == will


def test_the_registry_is_empty_exactly_while_no_connection_is_live() -> None:
    listener = Listener()
    registry = listener.registry
    assert registry._empty.is_set()
    first, _ = listener.accept()
    second, _ = listener.accept()
    assert len(registry) == 2
    assert not registry._empty.is_set()
    first.connection_lost(None)
    assert not registry._empty.is_set()
    second.connection_lost(None)
    assert registry._empty.is_set()
    third, _ = listener.accept()
    assert not registry._empty.is_set()
    third.connection_lost(None)
    assert registry._empty.is_set()


def test_a_dropped_connection_is_freed_without_the_cyclic_collector() -> None:
    listener = Listener()
    protocol, transport = listener.accept()
    protocol.data_received(encode(Connect("gone", MQTT_3_1_1, keep_alive=60), MQTT_3_1_1))
    assert protocol.handler is not None
    gone = weakref.ref(protocol)

    def alive() -> tuple[int, int]:
        kinds = [type(o) for o in gc.get_objects()]
        return kinds.count(ClientHandler), kinds.count(Session)

    gc.collect()
    gc.disable()  # what is left must go by reference counting alone
    try:
        handlers, sessions = alive()
        protocol.connection_lost(None)
        del protocol, transport
        assert gone() is None
        # The handler went, and the clean session that ended with it.
        assert alive() == (handlers - 1, sessions - 1)
    finally:
        gc.enable()
