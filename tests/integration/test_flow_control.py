"""Per-queue flow control in the real app (core/flow.py): a subscriber that stops reading makes
the gateway stop reading the publishers that feed it; memory stays bounded, and once the
subscriber reads again every message that was published arrives (QoS 0 included)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame

from gateway.amqp.spec import PROTOCOL_HEADER
from gateway.mqtt.codec import encode
from gateway.mqtt.packets import Connect, Publish, Subscribe, SubscriptionOptions
from tests.gateway_runner import RunningGateway, running_gateway
from tests.unit.amqp_adapter.helpers import content_frames

TOPIC = "flow/t"
PAYLOAD = b"p" * 64
# More than the kernel buffers on both sides of both sockets hold: the publisher must stall.
COUNT = 400_000
BATCH = 1000
TIMEOUT = 20.0
# What the design bounds a held queue by: its watermark (a quarter of the session queue's
# default limit of 10,000) plus the publishes of the one socket read that crossed it (uvloop
# reads up to 256 KiB at a time; an MQTT PUBLISH of TOPIC with PAYLOAD is 74 bytes).
WATERMARK = 10_000 // 4
ONE_READ = 256 * 1024 // (4 + len(TOPIC) + len(PAYLOAD))
BOUND = WATERMARK + ONE_READ


@pytest.fixture
def gateway() -> Iterator[RunningGateway]:
    with running_gateway(log_level="warning") as running:
        yield running


def mqtt_socket(port: int, client_id: str, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(encode(Connect(client_id, protocol_level=4, clean_start=True), 4))
    assert recv_exactly(sock, 4)[:1] == b"\x20"  # CONNACK
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the gateway")
        data += chunk
    return bytes(data)


def subscriber(port: int) -> socket.socket:
    sock = mqtt_socket(port, "flow-sub", rcvbuf=16 * 1024)
    sock.sendall(encode(Subscribe(1, ((TOPIC, SubscriptionOptions(0)),)), 4))
    assert recv_exactly(sock, 5)[:1] == b"\x90"  # SUBACK
    return sock


class Sender(threading.Thread):
    """Writes `batches` as fast as the socket takes them; `sent` counts what went."""

    def __init__(self, sock: socket.socket, batch: bytes, per_batch: int, total: int) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.batch = batch
        self.per_batch = per_batch
        self.total = total
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.sent < self.total:
                self.sock.sendall(self.batch)
                self.sent += self.per_batch
        except BaseException as exc:  # reported by the test
            self.error = exc


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def wait_stalled(sender: Sender) -> int:
    """Until the sender has made no progress for a while (the gateway stopped reading it)."""
    last, since = -1, time.monotonic()
    deadline = since + TIMEOUT
    while time.monotonic() < deadline:
        if sender.sent != last:
            last, since = sender.sent, time.monotonic()
        elif time.monotonic() - since > 1.0:
            return last
        time.sleep(0.05)
    raise AssertionError("the publisher was never stalled")


def count_publishes(sock: socket.socket, expected: int) -> int:
    """Read until `expected` identical QoS 0 PUBLISHes arrived; check their framing."""
    packet = encode(Publish(TOPIC, PAYLOAD, 0, False, False, None), 4)
    want = expected * len(packet)
    got = 0
    pending = b""
    while got < want:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed by the gateway")
        data = pending + chunk
        whole = len(data) - len(data) % len(packet)
        assert data[:whole] == packet * (whole // len(packet))
        pending = data[whole:]
        got += whole
    return got // len(packet)


def gateway_state(gateway: RunningGateway) -> tuple[int, int, int]:
    def read() -> tuple[int, int, int]:
        queue = gateway.gateway.broker.vhost("/").queue("mqtt-subscription-flow-sub")
        return gateway.gateway.broker.queued_bytes, queue.message_count, queue.dropped

    return gateway.call(read)


def test_slow_mqtt_subscriber_stalls_mqtt_publisher_and_loses_nothing(
    gateway: RunningGateway,
) -> None:
    sub = subscriber(gateway.mqtt_port)
    pub = mqtt_socket(gateway.mqtt_port, "flow-pub")
    batch = encode(Publish(TOPIC, PAYLOAD, 0, False, False, None), 4) * BATCH
    sender = Sender(pub, batch, BATCH, COUNT)
    sender.start()
    try:
        stalled_at = wait_stalled(sender)
        assert stalled_at < COUNT
        queued_bytes, ready, dropped = gateway_state(gateway)
        # Bounded by the session queue's watermark plus one read batch, below its limit.
        assert ready <= BOUND
        assert queued_bytes <= BOUND * len(PAYLOAD)
        assert dropped == 0
        assert count_publishes(sub, COUNT) == COUNT
        sender.join(TIMEOUT)
        assert sender.error is None
        assert gateway_state(gateway)[2] == 0
    finally:
        pub.close()
        sub.close()


# -- MQTT over WebSocket publisher -> MQTT subscriber ---------------------------------------------


def ws_frame(payload: bytes) -> bytes:
    """One masked binary frame, as a browser client sends it."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes([0x82, 0x80 | size])
    elif size < 65536:
        head = bytes([0x82, 0x80 | 126]) + struct.pack(">H", size)
    else:
        head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size)
    masked = bytes(a ^ b for a, b in zip(payload, (mask * (size // 4 + 1))[:size], strict=True))
    return head + mask + masked


def ws_publisher(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: mqtt\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert b" 101 " in response.split(b"\r\n")[0], response
    sock.sendall(ws_frame(encode(Connect("flow-ws-pub", protocol_level=4, clean_start=True), 4)))
    assert recv_exactly(sock, 6)[2:3] == b"\x20"  # a 4-byte CONNACK in a 2-byte frame header
    return sock


def test_slow_mqtt_subscriber_stalls_websocket_publisher_and_loses_nothing(
    gateway: RunningGateway,
) -> None:
    sub = subscriber(gateway.mqtt_port)
    pub = ws_publisher(gateway.ws_port)
    batch = ws_frame(encode(Publish(TOPIC, PAYLOAD, 0, False, False, None), 4) * BATCH)
    sender = Sender(pub, batch, BATCH, COUNT)
    sender.start()
    try:
        assert wait_stalled(sender) < COUNT
        _, ready, dropped = gateway_state(gateway)
        assert ready <= BOUND
        assert dropped == 0
        assert count_publishes(sub, COUNT) == COUNT
        sender.join(TIMEOUT)
        assert sender.error is None
    finally:
        pub.close()
        sub.close()


# -- AMQP publisher -> MQTT subscriber (S5's shape) -----------------------------------------------


def amqp_publisher(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(PROTOCOL_HEADER)
    _read_frame(sock)  # connection.start
    sock.sendall(pamqp_frame.marshal(
        commands.Connection.StartOk(
            client_properties={"capabilities": {"connection.blocked": True}},
            mechanism="PLAIN", response="\x00guest\x00guest", locale="en_US",
        ), 0,
    ))  # fmt: skip
    _read_frame(sock)  # connection.tune
    sock.sendall(pamqp_frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0))
    sock.sendall(pamqp_frame.marshal(commands.Connection.Open("/"), 0))
    _read_frame(sock)  # open-ok
    sock.sendall(pamqp_frame.marshal(commands.Channel.Open(), 1))
    _read_frame(sock)  # channel.open-ok
    return sock


def _read_frame(sock: socket.socket) -> bytes:
    header = recv_exactly(sock, 7)
    size = struct.unpack(">I", header[3:7])[0]
    return header + recv_exactly(sock, size + 1)


def amqp_publish_frames(count: int) -> bytes:
    one = pamqp_frame.marshal(
        commands.Basic.Publish(exchange="amq.topic", routing_key="flow.t"), 1
    ) + content_frames(1, PAYLOAD)
    return one * count


def test_slow_mqtt_subscriber_stalls_amqp_publisher_without_connection_blocked(
    gateway: RunningGateway,
) -> None:
    sub = subscriber(gateway.mqtt_port)
    pub = amqp_publisher(gateway.amqp_port)
    sender = Sender(pub, amqp_publish_frames(BATCH), BATCH, COUNT)
    sender.start()
    try:
        assert wait_stalled(sender) < COUNT
        _, ready, dropped = gateway_state(gateway)
        assert ready <= BOUND
        assert dropped == 0
        assert count_publishes(sub, COUNT) == COUNT
        sender.join(TIMEOUT)
        assert sender.error is None
        # Per-queue flow only stops reading: connection.blocked is the memory alarm's.
        pub.settimeout(0.2)
        with pytest.raises(TimeoutError):
            pub.recv(1)
    finally:
        pub.close()
        sub.close()


def test_unconsumed_offline_session_does_not_stall_publishers(gateway: RunningGateway) -> None:
    """A persistent session whose client is away holds nobody: its queue is bounded by its
    length limit (and offline sessions take no QoS 0 at all)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", gateway.mqtt_port))
    sock.sendall(encode(Connect("flow-away", protocol_level=4, clean_start=False), 4))
    recv_exactly(sock, 4)
    sock.sendall(encode(Subscribe(1, ((TOPIC, SubscriptionOptions(1)),)), 4))
    recv_exactly(sock, 5)
    sock.close()
    wait_until(lambda: gateway.call(
        lambda: gateway.gateway.mqtt.sessions["flow-away"].handler is None))  # fmt: skip
    pub = mqtt_socket(gateway.mqtt_port, "flow-pub2")
    total = 20 * BATCH
    sender = Sender(pub, encode(Publish(TOPIC, PAYLOAD, 0, False, False, None), 4) * BATCH,
                    BATCH, total)  # fmt: skip
    sender.start()
    try:
        sender.join(TIMEOUT)
        assert sender.sent == total
        assert sender.error is None
    finally:
        pub.close()


def test_drop_policy_never_stalls_and_counts_what_it_drops() -> None:
    """[mqtt] qos0_overflow = "drop": QoS 0 to a clean session whose socket is full is
    dropped and counted instead of holding the publishers."""
    with running_gateway(log_level="warning", mqtt={"qos0_overflow": "drop"}) as gateway:
        sub = subscriber(gateway.mqtt_port)
        pub = mqtt_socket(gateway.mqtt_port, "flow-pub")
        total = 100 * BATCH
        batch = encode(Publish(TOPIC, PAYLOAD, 0, False, False, None), 4) * BATCH
        sender = Sender(pub, batch, BATCH, total)
        sender.start()
        try:
            sender.join(TIMEOUT)
            assert sender.sent == total
            assert sender.error is None
            wait_until(lambda: gateway_state(gateway)[2] > 0)
            # A last PUBLISH: once the hub has counted it, every earlier one was routed.
            pub.sendall(encode(Publish("flow/end", b"", 0, False, False, None), 4))
            wait_until(lambda: gateway.call(lambda: gateway.gateway.mqtt.stats["published"])
                       == total + 1)  # fmt: skip
            _, ready, dropped = gateway_state(gateway)
            assert dropped > 0
            assert ready == 0
            # Exactly what was not dropped arrives (count_publishes checks every byte).
            assert count_publishes(sub, total - dropped) == total - dropped
        finally:
            pub.close()
            sub.close()
