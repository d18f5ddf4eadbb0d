"""A blocking MQTT client made of a socket and the gateway's own codec, for what real clients
will not do on purpose: withhold acks, resend a QoS 2 packet id, send malformed bytes, or look
at exact wire codes."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator
from typing import TypeVar

import pytest

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_5,
    ConnAck,
    Connect,
    Packet,
    Properties,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    Will,
)

P = TypeVar("P")
TIMEOUT = 5.0


_OPEN: list[RawClient] = []


@pytest.fixture(autouse=True)
def close_raw_clients() -> Iterator[None]:
    """Autouse in every module that imports it: no socket outlives its test."""
    yield
    while _OPEN:
        _OPEN.pop().close()


class ConnectionClosed(Exception):
    """The server closed the connection."""


class RawClient:
    def __init__(self, port: int, version: int = MQTT_5, host: str = "127.0.0.1") -> None:
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.decoder = PacketDecoder(protocol_level=version)
        self._pending: deque[Packet] = deque()
        self.eof = False
        _OPEN.append(self)

    # -- wire --------------------------------------------------------------------------------

    def send(self, *packets: Packet) -> None:
        self.sock.sendall(b"".join(encode(packet, self.version) for packet in packets))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet; ConnectionClosed at EOF, TimeoutError when none arrives."""
        while not self._pending:
            if self.eof:
                raise ConnectionClosed
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                continue
            self._pending.extend(self.decoder.feed(data))
        return self._pending.popleft()

    def expect(self, kind: type[P], timeout: float = TIMEOUT) -> P:
        packet = self.recv(timeout)
        assert isinstance(packet, kind), packet
        return packet

    def expect_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Read until the server closes the connection; return what came before."""
        got: list[Packet] = []
        while True:
            try:
                got.append(self.recv(timeout))
            except ConnectionClosed:
                return got

    def assert_silent(self, window: float = 0.3) -> None:
        try:
            packet = self.recv(window)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {packet}")

    def close(self) -> None:
        self.sock.close()

    # -- conveniences ------------------------------------------------------------------------

    def connect(
        self,
        client_id: str,
        *,
        clean: bool = True,
        properties: Properties = EMPTY_PROPERTIES,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        keep_alive: int = 0,
    ) -> ConnAck:
        self.send(
            Connect(
                client_id,
                protocol_level=self.version,
                clean_start=clean,
                keep_alive=keep_alive,
                username=username,
                password=password,
                will=will,
                properties=properties,
            )
        )
        return self.expect(ConnAck)

    def subscribe(
        self,
        topic_filter: str,
        qos: int = 1,
        *,
        packet_id: int = 1,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> SubAck:
        self.send(Subscribe(packet_id, ((topic_filter, SubscriptionOptions(qos)),), properties))
        return self.expect(SubAck)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        packet_id: int | None = None,
        retain: bool = False,
        dup: bool = False,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        if qos and packet_id is None:
            packet_id = 1
        self.send(Publish(topic, payload, qos, retain, dup, packet_id, properties))

    def publishes(self, count: int, timeout: float = TIMEOUT) -> list[Publish]:
        got = [self.expect(Publish, timeout) for _ in range(count)]
        return got

    def ack(self, packet: Publish) -> None:
        assert packet.packet_id is not None
        self.send(PubAck(packet.packet_id))
