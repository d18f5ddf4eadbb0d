"""bench/roles.py `mqtt_idle_connections` (S7): every connection is opened, sent its CONNECT
and counted on its CONNACK; a refused CONNECT counts as failed, not as connected."""

from __future__ import annotations

import socket
import threading
from typing import Any, cast

from bench.procs import CONNECTED, RoleContext
from bench.roles import mqtt_idle_connections
from bench.wire import mqtt_connect_packet


class _Context:
    """Just what the role uses of RoleContext: counters, ready, stopped, cpu_since_go."""

    def __init__(self, server: threading.Thread) -> None:
        self.counters = [0] * (CONNECTED + 1)
        self._server = server

    def ready(self) -> None:
        pass

    @property
    def stopped(self) -> bool:
        # Once the server has answered every CONNECT. The role looks at this only when a poll
        # found nothing to read, which cannot happen before it has read every answer.
        return not self._server.is_alive()

    def cpu_since_go(self) -> float:
        return 0.0


def _read_packet(conn: socket.socket) -> bytes:
    """One MQTT packet whose remaining length fits one byte (a short CONNECT)."""
    data = b""
    while len(data) < 2 or len(data) < 2 + data[1]:
        chunk = conn.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def _serve(listener: socket.socket, count: int, connack: bytes, got: list[bytes]) -> None:
    """Accept `count` connections, read each one's CONNECT, answer `connack`."""
    held = []
    for _ in range(count):
        conn, _peer = listener.accept()
        got.append(_read_packet(conn))
        conn.sendall(connack)
        held.append(conn)
    for conn in held:
        conn.close()


def _run(count: int, connack: bytes) -> tuple[dict[str, Any], list[bytes]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    got: list[bytes] = []
    server = threading.Thread(target=_serve, args=(listener, count, connack, got))
    server.start()
    try:
        ctx = _Context(server)
        result = mqtt_idle_connections(
            cast(RoleContext, ctx), port, "c", count, 4, idle_timeout=5.0, slot=0
        )
    finally:
        server.join(10)
        listener.close()
    return result, got


def test_every_connection_is_counted_once_its_connack_arrives() -> None:
    result, got = _run(40, b"\x20\x02\x00\x00")
    assert result["connected"] == 40
    assert result["failed"] == 0
    assert result["end_ns"] > 0
    # Each connection sent its own CONNECT, whole.
    assert sorted(got) == sorted(mqtt_connect_packet(f"c-{i}") for i in range(40))


def test_a_refused_connect_is_counted_as_failed() -> None:
    # CONNACK return code 5: not authorized.
    result, _got = _run(6, b"\x20\x02\x00\x05")
    assert result["connected"] == 0
    assert result["failed"] == 6
