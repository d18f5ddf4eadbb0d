"""The AMQP listener in the real app, driven by a raw socket client built from pamqp and our
frame decoder: handshake, content across frames, heartbeats, and the error paths that must
close one connection (and only that one) with the right code."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from gateway.amqp.frames import (
    BodyFrame,
    Frame,
    FrameDecoder,
    HeaderFrame,
    HeartbeatFrame,
    MethodFrame,
)
from gateway.amqp.spec import PROTOCOL_HEADER
from tests.gateway_runner import RunningGateway, running_gateway
from tests.unit.amqp_adapter.helpers import content_frames

TIMEOUT = 5.0


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.decoder = FrameDecoder(frame_max=0, protocol_header=False)
        self.raw = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, channel: int, method: Any) -> None:
        self.send(pamqp_frame.marshal(method, channel))

    def frame(self, *, skip_heartbeats: bool = True) -> Frame:
        while True:
            found = self.decoder.next_frame()
            if found is not None:
                if skip_heartbeats and isinstance(found, HeartbeatFrame):
                    continue
                return found
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.decoder.append(data)

    def method(self) -> Any:
        found = self.frame()
        assert isinstance(found, MethodFrame), found
        return found.method

    def expect(self, cls: type) -> Any:
        method = self.method()
        assert isinstance(method, cls), method
        return method

    def message(self) -> tuple[Any, bytes]:
        """A content-bearing method and its reassembled body."""
        method = self.method()
        header = self.frame()
        assert isinstance(header, HeaderFrame)
        body = b""
        while len(body) < header.header.body_size:
            part = self.frame()
            assert isinstance(part, BodyFrame)
            body += part.payload
        return method, body

    def closed_by_server(self) -> bool:
        """True once the server closed the socket (within the timeout)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
        return False

    def handshake(
        self, *, heartbeat: int = 0, frame_max: int = 131072
    ) -> commands.Connection.Start:
        self.send(PROTOCOL_HEADER)
        start: commands.Connection.Start = self.expect(commands.Connection.Start)
        self.call(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism="PLAIN",
                response="\x00guest\x00guest",
            ),
        )
        self.expect(commands.Connection.Tune)
        self.call(0, commands.Connection.TuneOk(2047, frame_max, heartbeat))
        self.call(0, commands.Connection.Open(virtual_host="/"))
        self.expect(commands.Connection.OpenOk)
        return start

    def open_channel(self, channel: int = 1) -> None:
        self.call(channel, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)


@pytest.fixture
def raw(gateway: RunningGateway) -> Any:
    clients: list[RawClient] = []

    def connect() -> RawClient:
        client = RawClient(gateway.amqp_port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def assert_still_works(client: RawClient, queue: str) -> None:
    client.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    assert client.expect(commands.Queue.DeclareOk).queue == queue


def test_handshake_announces_the_gateway(raw: Any) -> None:
    client = raw()
    start = client.handshake()
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.server_properties["product"] == "amqp-mqtt-gateway"
    assert "PLAIN" in start.mechanisms


def test_message_larger_than_frame_max_crosses_in_pieces(raw: Any) -> None:
    client = raw()
    client.handshake(frame_max=4096)
    client.open_channel()
    client.call(1, commands.Queue.Declare(queue="wire-big", auto_delete=True))
    client.expect(commands.Queue.DeclareOk)
    body = bytes(range(256)) * 200  # 51200 octets: 13 body frames each way
    client.call(1, commands.Basic.Publish(routing_key="wire-big"))
    client.send(content_frames(1, body, frame_max=4096))
    client.call(1, commands.Basic.Get(queue="wire-big", no_ack=True))
    method, received = client.message()
    assert isinstance(method, commands.Basic.GetOk)
    assert received == body


def test_wrong_password_gets_403_then_the_socket_closes(raw: Any) -> None:
    client = raw()
    client.send(PROTOCOL_HEADER)
    client.expect(commands.Connection.Start)
    client.call(
        0,
        commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN",
            response="\x00guest\x00wrong",
        ),
    )
    close = client.expect(commands.Connection.Close)
    assert close.reply_code == 403
    assert client.closed_by_server()


def test_wrong_protocol_header_is_answered_with_ours(raw: Any) -> None:
    client = raw()
    client.send(b"AMQP\x00\x00\x08\x00")
    assert client.sock.recv(8) == PROTOCOL_HEADER
    assert client.closed_by_server()


def _hard_error(client: RawClient, code: int) -> Any:
    close = client.expect(commands.Connection.Close)
    assert close.reply_code == code, close.reply_text
    return close


def test_unknown_method_closes_only_that_connection(raw: Any) -> None:
    bystander = raw()
    bystander.handshake()
    bystander.open_channel()
    client = raw()
    client.handshake()
    client.open_channel()
    payload = struct.pack(">HH", 99, 1)
    client.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    close = _hard_error(client, 540)
    assert (close.class_id, close.method_id) == (99, 1)
    client.call(0, commands.Connection.CloseOk())
    assert client.closed_by_server()
    assert_still_works(bystander, "wire-bystander-1")


def test_frame_larger_than_frame_max_is_a_frame_error(raw: Any) -> None:
    bystander = raw()
    bystander.handshake()
    bystander.open_channel()
    client = raw()
    client.handshake(frame_max=4096)
    client.open_channel()
    client.call(1, commands.Basic.Publish(routing_key="x"))
    header = pamqp_header.ContentHeader(0, 5000, commands.Basic.Properties())
    client.send(pamqp_frame.marshal(header, 1))
    # One body frame of 5000 octets, above the negotiated frame_max of 4096.
    client.send(struct.pack(">BHI", 3, 1, 5000) + b"\x00" * 5000 + b"\xce")
    _hard_error(client, 501)
    assert client.closed_by_server()  # framing is lost: no close-ok is awaited
    assert_still_works(bystander, "wire-bystander-2")


def test_bad_frame_end_is_a_frame_error(raw: Any) -> None:
    client = raw()
    client.handshake()
    client.open_channel()
    good = pamqp_frame.marshal(commands.Queue.Declare(queue="x"), 1)
    client.send(good[:-1] + b"\x00")
    _hard_error(client, 501)
    assert client.closed_by_server()


def test_content_on_a_channel_without_publish_is_unexpected(raw: Any) -> None:
    bystander = raw()
    bystander.handshake()
    bystander.open_channel()
    client = raw()
    client.handshake()
    client.open_channel()
    client.send(content_frames(1, b"orphan"))
    close = _hard_error(client, 505)
    assert close.reply_text.startswith("UNEXPECTED_FRAME")
    client.call(0, commands.Connection.CloseOk())
    assert client.closed_by_server()
    assert_still_works(bystander, "wire-bystander-3")


def test_channel_error_leaves_the_connection_open(raw: Any) -> None:
    client = raw()
    client.handshake()
    client.open_channel()
    client.call(1, commands.Queue.Declare(queue="wire-missing", passive=True))
    close = client.expect(commands.Channel.Close)
    assert close.reply_code == 404
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)
    assert_still_works(client, "wire-after-404")


def test_heartbeats_keep_a_live_connection_and_drop_a_silent_one(raw: Any) -> None:
    live = raw()
    live.handshake(heartbeat=1)
    live.open_channel()
    silent = raw()
    silent.handshake(heartbeat=1)
    # The server sends heartbeats on an idle connection...
    beat = live.frame(skip_heartbeats=False)
    assert isinstance(beat, HeartbeatFrame)
    # ...and drops a client that sends nothing for two intervals.
    start = time.monotonic()
    heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    while time.monotonic() - start < 2.6:
        # The live client answers each server heartbeat (one every half interval).
        assert isinstance(live.frame(skip_heartbeats=False), HeartbeatFrame)
        live.send(heartbeat)
    assert silent.closed_by_server()
    assert_still_works(live, "wire-heartbeat")


def test_shutdown_closes_connections_with_320() -> None:
    with running_gateway() as gateway:
        client = RawClient(gateway.amqp_port)
        try:
            client.handshake()
            stopper = threading.Thread(target=gateway.stop)
            stopper.start()
            close = client.expect(commands.Connection.Close)
            assert close.reply_code == 320
            assert close.reply_text == (
                "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
            )
            client.call(0, commands.Connection.CloseOk())
            assert client.closed_by_server()
            stopper.join(10)
        finally:
            client.close()
