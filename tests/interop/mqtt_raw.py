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
    MQTT_5,
    Packet,
    PubAck,
    Publish,
)
from tests.mqtt_client_base import PacketClient

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


class RawClient(PacketClient):
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

    def publishes(self, count: int, timeout: float = TIMEOUT) -> list[Publish]:
        got = [self.expect(Publish, timeout) for _ in range(count)]
        return got

    def ack(self, packet: Publish) -> None:
        assert packet.packet_id is not None
        self.send(PubAck(packet.packet_id))
