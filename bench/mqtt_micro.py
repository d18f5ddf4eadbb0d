"""In-process micro-benchmarks of the MQTT per-message paths (no sockets, no event loop).

Real hub, sessions, handlers and `MqttConnection` machines, fed bytes as the listener feeds
them (one `receive_data` + `handle_events` per read) and drained with `data_to_send`; the
generators' own work (building PUBACKs, reading packet ids) is not timed. Registered as cases
of bench/core_micro.py:

  mqtt_s2   bench S2: 2 publishers, 100 QoS 1 PUBLISHes (64 bytes, topics bench/0, bench/1)
            per read each -> 1 QoS 1 subscriber on bench/# (window 100) that answers every
            PUBLISH it got with one read of PUBACKs; the queue keeps a backlog of 1,000 (as
            in the real S2, every delivery is a refill); ns per message, PUBACKs to the
            publishers and the subscriber's deliveries included
  mqtt_s1   bench S1: 2 publishers, 500 QoS 0 PUBLISHes per read each -> 1 clean-session
            QoS 0 subscriber on bench/#
  mqtt_s6   bench S6's shape: one QoS 0 PUBLISH per read through the listener's protocol
            (`MqttProtocol.data_received`, fake transports, as uvloop calls it), forwarded
            to a 3.1.1 subscriber on bench/#: from the third message on, the publisher's
            `RawFanout` (gateway/mqtt/session_fanout.py); hot caches, unlike the real S6
  mqtt_s7   bench S7's connects: ns of Python per CONNECT -> CONNACK, each client accepted and
            connected through the listener's protocol (connection_made, then its first read)
            with a fake transport, inside an asyncio loop that is never run

`python bench/mqtt_micro.py` prints the bytes of Python heap per idle connection (tracemalloc).
"""

from __future__ import annotations

import gc
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.broker import Broker
from gateway.core.users import UserDatabase, hash_password
from gateway.mqtt.codec import encode
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    Connect,
    Subscribe,
    SubscriptionOptions,
)
from gateway.mqtt.session_handler import ClientHandler
from gateway.mqtt.session_hub import MqttHub, MqttSettings

if TYPE_CHECKING:
    from gateway.mqtt.listener import MqttProtocol
    from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm

_PAYLOAD = bytes(64)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Owner:
    """The listener's side of a handler, reduced to nothing: output is drained by the case."""

    can_pause_reading = True

    def output_ready(self) -> None:
        pass

    def write_now(self, packet: bytes) -> bool:
        return False  # the cases drain what the machine queued

    def close_transport(self) -> None:
        pass

    def pause_reading(self) -> None:
        raise AssertionError("flow control held a publisher: the case is mis-sized")

    def resume_reading(self) -> None:
        pass


class _Client:
    def __init__(self, hub: MqttHub, clock: _Clock, client_id: str) -> None:
        self.conn = MqttConnection(max_packet_size=1 << 20, connect_timeout=10.0, now=clock())
        self.handler = ClientHandler(hub, self.conn, "127.0.0.1", _Owner())
        self.clock = clock
        connack = self.read(encode(Connect(client_id, MQTT_3_1_1, keep_alive=0), MQTT_3_1_1))
        assert connack[:1] == b"\x20", "CONNACK"

    def read(self, data: bytes) -> bytes:
        """One read by the gateway; returns what it wrote back to this client."""
        events = self.conn.receive_data(data, self.clock())
        if events:
            self.handler.handle_events(events)
        return self.conn.data_to_send()


class _StoreBarrier:
    """The commit barrier `gateway run` always has (its store, gateway/store/observer.py), for
    a world without durable queues: nothing is ever recorded, so nothing waits. Without it the
    QoS 1 paths would take branches production never takes."""

    committed = 0

    @property
    def written(self) -> int:
        return 0

    def after_commit(self, written: int, callback: Callable[[], None]) -> None:
        callback()


def _world() -> tuple[MqttHub, _Clock]:
    clock = _Clock()
    broker = Broker(clock)
    broker.commit_barrier = _StoreBarrier()
    users = UserDatabase((), default_guest=True, guest_password_hash=hash_password("guest", n=16))
    return MqttHub(broker, users, MqttSettings(), clock), clock


def _subscriber(hub: MqttHub, clock: _Clock, qos: int) -> _Client:
    sub = _Client(hub, clock, "sub")
    subscribe = Subscribe(1, (("bench/#", SubscriptionOptions(qos=qos)),))
    sub.read(encode(subscribe, MQTT_3_1_1))
    return sub


def _publishes(topic: bytes, qos: int, first_id: int, count: int) -> bytes:
    name = struct.pack(">H", len(topic)) + topic
    if qos == 0:
        one = bytes([0x30, len(name) + len(_PAYLOAD)]) + name + _PAYLOAD
        return one * count
    head = bytes([0x32, len(name) + 2 + len(_PAYLOAD)]) + name
    return b"".join(head + struct.pack(">H", first_id + i) + _PAYLOAD for i in range(count))


def _timed(work: Callable[[], int]) -> tuple[int, float]:
    """`work()` with the cyclic collector off: what it returned and the seconds it took."""
    gc.collect()
    gc.disable()
    perf = time.perf_counter
    t0 = perf()
    try:
        result = work()
    finally:
        gc.enable()
    return result, perf() - t0


def run_s2(count: int) -> float:
    hub, clock = _world()
    sub = _subscriber(hub, clock, 1)
    pubs = [_Client(hub, clock, f"pub{i}") for i in range(2)]
    # Packet ids 1..100 and 101..200 alternate, as a window of 100 in flight reuses them.
    reads = [
        [_publishes(f"bench/{i}".encode(), 1, 1 + half * 100, 100) for half in range(2)]
        for i in range(2)
    ]
    packet = 2 + 2 + len("bench/0") + 2 + len(_PAYLOAD)  # one PUBLISH to the subscriber
    id_at = 2 + 2 + len("bench/0")

    def answer(pending: bytes) -> bytes:
        # The subscriber answers everything it got with one read of PUBACKs.
        assert len(pending) % packet == 0, "only PUBLISHes of one size"
        return b"".join(
            b"\x40\x02" + pending[j : j + 2] for j in range(id_at, len(pending), packet)
        )

    # As in the real S2 the publishers run ahead of the subscriber's window: a backlog of
    # 1,000 messages, so every delivery comes from the queue's backlog.
    for n in range(5):
        for i, pub in enumerate(pubs):
            pub.read(reads[i][n & 1])
    pending = sub.conn.data_to_send()
    rounds = max(1, count // 200)
    gc.collect()
    gc.disable()
    elapsed = 0.0
    acked = delivered = 0
    perf = time.perf_counter
    try:
        for n in range(rounds):
            t0 = perf()
            for i, pub in enumerate(pubs):
                acked += len(pub.read(reads[i][(n + 1) & 1])) // 4
            elapsed += perf() - t0
            for _ in range(2):
                acks = answer(pending)
                delivered += len(acks) // 4
                t0 = perf()
                pending = sub.read(acks)
                elapsed += perf() - t0
    finally:
        gc.enable()
    total = rounds * 200
    assert acked == total, (acked, total)
    assert delivered == total, (delivered, total)
    return elapsed * 1e9 / total


def run_s1(count: int) -> float:
    hub, clock = _world()
    sub = _subscriber(hub, clock, 0)
    pubs = [_Client(hub, clock, f"pub{i}") for i in range(2)]
    reads = [_publishes(f"bench/{i}".encode(), 0, 0, 500) for i in range(2)]
    rounds = max(1, count // 1000)
    size = 2 + 2 + len("bench/0") + len(_PAYLOAD)

    def publish() -> int:
        got = 0
        for _ in range(rounds):
            for i, pub in enumerate(pubs):
                pub.read(reads[i])
            got += len(sub.conn.data_to_send())
        return got

    got, elapsed = _timed(publish)
    total = rounds * 1000
    assert got == total * size, (got, total * size)
    return elapsed * 1e9 / total


def run_s6(count: int) -> float:
    """ns per lone QoS 0 PUBLISH from the publisher's `data_received` to the subscriber's
    `write`, through the listener's protocol (see `_listener`)."""
    import asyncio

    return asyncio.run(_lone_publishes(max(1, count // 10)))


async def _lone_publishes(count: int) -> float:
    import asyncio
    from typing import cast

    from bench.wire import mqtt_connect_packet
    from gateway.mqtt.listener import MqttProtocol

    hub, _clock = _world()
    registry, flusher, alarm = _listener()

    def client(client_id: str, port: int) -> tuple[MqttProtocol, _Transport]:
        protocol = MqttProtocol(hub, registry, flusher, alarm)
        transport = _Transport(port)
        protocol.connection_made(cast(asyncio.Transport, transport))
        protocol.data_received(mqtt_connect_packet(client_id))
        assert transport.last == b"\x20\x02\x00\x00", "CONNACK"
        return protocol, transport

    sub, sub_out = client("sub", 40001)
    sub.data_received(encode(Subscribe(1, (("bench/#", SubscriptionOptions(qos=0)),)), MQTT_3_1_1))
    pub, _ = client("pub", 40002)
    one = _publishes(b"bench/0", 0, 0, 1)
    for _ in range(3):  # the topic name checked, its route cached, its fanout recorded
        pub.data_received(one)
    written = sub_out.writes

    def publish() -> int:
        for _ in range(count):
            pub.data_received(one)
        return count

    _timed(publish)
    assert sub_out.last is one, "the publisher's bytes, as read"
    assert sub_out.writes == written + count, "one write per message"
    return _timed(publish)[1] * 1e9 / count


def _listener() -> tuple[
    ConnectionRegistry, FlushScheduler[MqttProtocol], MemoryAlarm[MqttProtocol]
]:
    """The listener's shared parts for protocols run inside a loop that never runs."""
    import asyncio

    from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm

    loop = asyncio.get_running_loop()
    flusher: FlushScheduler[MqttProtocol] = FlushScheduler(loop)
    alarm: MemoryAlarm[MqttProtocol] = MemoryAlarm(lambda: 0, 1 << 30, loop)
    return ConnectionRegistry(), flusher, alarm


# -- S7: connects through the listener --------------------------------------------------------


class _Transport:
    """What the listener uses of a transport, keeping only the last write (the CONNACK)."""

    def __init__(self, port: int) -> None:
        self.peer = ("127.0.0.1", port)
        self.last = b""
        self.writes = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def _connects(count: int, measure_bytes: bool) -> float:
    """ns per CONNECT -> CONNACK (or, with `measure_bytes`, bytes of Python heap per idle
    connection) for `count` clean-session 3.1.1 clients, each accepted and connected through
    `MqttProtocol` (listener.py) as uvloop would: `connection_made`, then its first read."""
    import asyncio
    import tracemalloc
    from typing import cast

    from bench.wire import mqtt_connect_packet
    from gateway.mqtt.listener import MqttProtocol

    hub, _clock = _world()
    registry, flusher, alarm = _listener()
    packets = [mqtt_connect_packet(f"idle-{i}") for i in range(count + 1)]
    transports = [_Transport(40000 + i % 20000) for i in range(count + 1)]
    held: list[MqttProtocol] = []

    def connect(i: int) -> None:
        protocol = MqttProtocol(hub, registry, flusher, alarm)
        protocol.connection_made(cast(asyncio.Transport, transports[i]))
        protocol.data_received(packets[i])
        held.append(protocol)

    connect(count)  # the first guest login hashes its password once
    assert transports[count].last == b"\x20\x02\x00\x00", "CONNACK"

    def connect_all() -> int:
        for i in range(count):
            connect(i)
        return count

    if measure_bytes:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        connect_all()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used / count
    _, elapsed = _timed(connect_all)
    assert all(t.last == b"\x20\x02\x00\x00" for t in transports), "every client got CONNACK"
    return elapsed * 1e9 / count


def run_s7(count: int) -> float:
    """bench S7's connects in process: ns of Python per CONNECT -> CONNACK (no sockets, so
    without uvloop's accept and the kernel, which the real run adds)."""
    import asyncio

    return asyncio.run(_connects(max(1, count // 20), measure_bytes=False))


def idle_connection_bytes(count: int = 5000) -> float:
    """Bytes of Python heap per idle connected client (tracemalloc; the fake transport's
    share is left out: uvloop's transport and libuv handle are C memory, about 1.26 KiB of
    RSS per connection on their own, see bench/relay.py in bench/README.md)."""
    import asyncio

    # The fake transports are built before the measurement starts: none of them is counted.
    return asyncio.run(_connects(count, measure_bytes=True))


if __name__ == "__main__":
    print(f"{idle_connection_bytes():.0f} B of Python heap per idle MQTT connection")
