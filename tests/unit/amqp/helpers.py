"""A client side built from pamqp, as independent of our codec as the tests can make it."""

from __future__ import annotations

from typing import Any

from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat

from gateway.amqp.connection import AMQPConnection
from gateway.amqp.connection_events import Event, LoginRequested, OpenRequested
from gateway.amqp.spec import PROTOCOL_HEADER


def method(channel: int, value: Any) -> bytes:
    return pamqp_frame.marshal(value, channel)


def content(
    channel: int,
    body: bytes,
    properties: commands.Basic.Properties | None = None,
    frame_max: int = 4096,
) -> bytes:
    """Content header and body frames for ``body``, split to fit ``frame_max``."""
    header = pamqp_header.ContentHeader(0, len(body), properties or commands.Basic.Properties())
    out = [pamqp_frame.marshal(header, channel)]
    step = frame_max - 8
    chunks = (pamqp_body.ContentBody(body[i : i + step]) for i in range(0, len(body), step))
    out.extend(pamqp_frame.marshal(chunk, channel) for chunk in chunks)
    return b"".join(out)


def publish(
    channel: int, body: bytes, exchange: str = "amq.topic", routing_key: str = "a.b"
) -> bytes:
    return method(
        channel, commands.Basic.Publish(exchange=exchange, routing_key=routing_key)
    ) + content(channel, body)


HEARTBEAT = pamqp_heartbeat.Heartbeat.marshal()


def parse(data: bytes) -> list[tuple[int, Any]]:
    """(channel, frame object) for every frame in ``data``, decoded by pamqp."""
    frames: list[tuple[int, Any]] = []
    while data:
        consumed, channel, value = pamqp_frame.unmarshal(data)
        frames.append((channel, value))
        data = data[consumed:]
    return frames


def methods(data: bytes) -> list[tuple[int, Any]]:
    return [(ch, f) for ch, f in parse(data) if hasattr(f, "index")]


CLIENT_PROPERTIES: dict[str, Any] = {
    "product": "test",
    "capabilities": {
        "authentication_failure_close": True,
        "connection.blocked": True,
        "publisher_confirms": True,
    },
}


def start_ok(
    username: str = "guest",
    password: str = "guest",
    mechanism: str = "PLAIN",
    client_properties: dict[str, Any] | None = None,
) -> bytes:
    response = f"\x00{username}\x00{password}"
    return method(
        0,
        commands.Connection.StartOk(
            client_properties=CLIENT_PROPERTIES if client_properties is None else client_properties,
            mechanism=mechanism,
            response=response,
        ),
    )


class Peer:
    """Drives an :class:`AMQPConnection` with bytes and a fake clock."""

    def __init__(self, conn: AMQPConnection | None = None, now: float = 1000.0) -> None:
        self.conn = conn if conn is not None else AMQPConnection(authenticate=accept_guest)
        self.now = now
        self.events: list[Event] = []

    def send(self, data: bytes) -> list[Event]:
        events = self.conn.receive_data(data, self.now)
        self.events.extend(events)
        return events

    def advance(self, seconds: float) -> list[Event]:
        self.now += seconds
        events = self.conn.handle_timer(self.now)
        self.events.extend(events)
        return events

    def received(self) -> list[tuple[int, Any]]:
        return parse(self.conn.data_to_send())

    def handshake(
        self,
        *,
        channel_max: int = 2047,
        frame_max: int = 131072,
        heartbeat: int = 0,
        vhost: str = "/",
    ) -> None:
        """Protocol header through open-ok, checking each server step."""
        self.send(PROTOCOL_HEADER)
        [(_, start)] = self.received()
        assert isinstance(start, commands.Connection.Start)
        events = self.send(start_ok())
        if any(isinstance(e, LoginRequested) for e in events):
            self.conn.accept_login("guest")
        [(_, tune)] = self.received()
        assert isinstance(tune, commands.Connection.Tune)
        self.send(method(0, commands.Connection.TuneOk(channel_max, frame_max, heartbeat)))
        events = self.send(method(0, commands.Connection.Open(virtual_host=vhost)))
        assert events == [OpenRequested(vhost)]
        assert self.conn.open_ok() == []
        [(_, open_ok)] = self.received()
        assert isinstance(open_ok, commands.Connection.OpenOk)

    def open_channel(self, channel: int = 1) -> None:
        self.send(method(channel, commands.Channel.Open()))
        [(number, open_ok)] = self.received()
        assert (number, type(open_ok)) == (channel, commands.Channel.OpenOk)


def accept_guest(mechanism: str, username: str, password: str) -> object | None:
    return {"name": username} if (username, password) == ("guest", "guest") else None
