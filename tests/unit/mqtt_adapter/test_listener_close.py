"""The TCP listener's protocol (listener.py) around the handler, on a fake loop and transport:
a client that drops its connection leaves nothing behind (issue 7, S7)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.mqtt.codec import encode
from gateway.mqtt.listener import MqttProtocol
from gateway.mqtt.packets import MQTT_3_1_1, Connect
from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm
from tests.unit.shell.test_net_scheduling import FakeLoop

from .harness import World


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.eof = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_dropped_connection_ends_without_a_lingering_close() -> None:
    world = World()
    loop = cast(asyncio.AbstractEventLoop, FakeLoop())
    registry = ConnectionRegistry()
    flusher: FlushScheduler[MqttProtocol] = FlushScheduler(loop)
    alarm: MemoryAlarm[MqttProtocol] = MemoryAlarm(lambda: 0, 1 << 30, loop)
    protocol = MqttProtocol(world.hub, registry, flusher, alarm)
    transport = FakeTransport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    assert len(registry) == 1
    protocol.data_received(encode(Connect("dropped", MQTT_3_1_1, keep_alive=60), MQTT_3_1_1))
    assert transport.written == [b"\x20\x02\x00\x00"]
    assert protocol.handler is not None
    assert protocol.handler.owner is protocol
    protocol.connection_lost(None)
    # No EOF to a gone peer, no timer (no running loop needed), nothing registered.
    assert not transport.eof
    assert protocol._linger is None
    assert len(registry) == 0
    assert "dropped" not in world.hub.sessions
    assert world.hub.connections == 0
