"""A client built from pamqp that drives :class:`AmqpConnectionHandler` with bytes, plus a
fake clock: no event loop, no sockets."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from gateway.amqp.channel_connection import AmqpConnectionHandler
from gateway.amqp.channel_context import AmqpContext, AmqpSettings, PublishHook
from gateway.amqp.spec import PROTOCOL_HEADER
from gateway.core.broker import Broker
from gateway.core.users import User, UserDatabase, hash_password

# A cheap scrypt cost so logins in tests take microseconds.
FAST_HASH = {"n": 2, "r": 1, "p": 1}

CAPABILITIES: dict[str, Any] = {
    "authentication_failure_close": True,
    "connection.blocked": True,
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_context(
    *,
    users: list[User] | None = None,
    on_publish: PublishHook | None = None,
    hooked_exchanges: frozenset[str] = frozenset(),
    **settings: Any,
) -> AmqpContext:
    clock = FakeClock()
    broker = Broker(clock)
    database = UserDatabase(users or [], guest_password_hash=hash_password("guest", **FAST_HASH))
    return AmqpContext(
        broker,
        database,
        AmqpSettings(**settings),
        on_publish=on_publish,
        hooked_exchanges=hooked_exchanges,
    )


@dataclass
class Frame:
    """One frame from the server; content methods carry their properties and body."""

    channel: int
    method: Any
    properties: Any = None
    raw_properties: bytes = b""
    body: bytes = b""


_HEAD = struct.Struct(">BHI")


def split_frames(data: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(type, channel, payload, whole frame) for each frame in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        kind, channel, size = _HEAD.unpack_from(data, pos)
        end = pos + 7 + size
        assert data[end] == 0xCE
        out.append((kind, channel, data[pos + 7 : end], data[pos : end + 1]))
        pos = end + 1
    return out


def parse(data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    current: Frame | None = None
    remaining = 0
    for kind, channel, payload, whole in split_frames(data):
        if kind == 1:
            _, _, method = pamqp_frame.unmarshal(whole)
            frame = Frame(channel, method)
            frames.append(frame)
            if method.name in ("Basic.Deliver", "Basic.GetOk", "Basic.Return"):
                current = frame
        elif kind == 2:
            assert current is not None
            assert current.channel == channel
            _, _, header = pamqp_frame.unmarshal(whole)
            assert isinstance(header, pamqp_header.ContentHeader)
            current.properties = header.properties
            current.raw_properties = payload[12:]
            remaining = header.body_size
            if remaining == 0:
                current = None
        elif kind == 3:
            assert current is not None
            assert current.channel == channel
            current.body += payload
            remaining -= len(payload)
            if remaining == 0:
                current = None
        else:
            frames.append(Frame(channel, "heartbeat"))
    return frames


def unchecked(cls: type, **fields: Any) -> Any:
    """A pamqp method without pamqp's name checks (RabbitMQ accepts any UTF-8 name)."""
    loose = type(cls.__name__, (cls,), {"validate": lambda self: None})
    return loose(**fields)


def method_frame(channel: int, method: Any) -> bytes:
    return pamqp_frame.marshal(method, channel)


def content_frames(
    channel: int,
    body: bytes,
    properties: commands.Basic.Properties | None = None,
    frame_max: int = 131072,
) -> bytes:
    header = pamqp_header.ContentHeader(0, len(body), properties or commands.Basic.Properties())
    out = [pamqp_frame.marshal(header, channel)]
    step = frame_max - 8
    out.extend(
        pamqp_frame.marshal(pamqp_body.ContentBody(body[offset : offset + step]), channel)
        for offset in range(0, len(body), step)
    )
    return b"".join(out)


class Client:
    """One client connection: send methods and content, read what the server said."""

    def __init__(
        self,
        context: AmqpContext,
        peer_host: str = "127.0.0.1",
        capabilities: dict[str, Any] | None = None,
    ) -> None:
        self.context = context
        self.capabilities = CAPABILITIES if capabilities is None else capabilities
        self.notified = 0
        self.handler = AmqpConnectionHandler(context, peer_host, output_ready=self._notify)
        self.conn = self.handler.conn
        self._backlog: list[Frame] = []

    def _notify(self) -> None:
        self.notified += 1

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.handler.receive(data)

    def call(self, channel: int, method: Any) -> None:
        self.send(method_frame(channel, method))

    def publish(
        self,
        channel: int,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        properties: commands.Basic.Properties | None = None,
        *,
        mandatory: bool = False,
        immediate: bool = False,
    ) -> None:
        self.send(self.publish_bytes(channel, body, exchange, routing_key, properties,
                                     mandatory=mandatory, immediate=immediate))  # fmt: skip

    @staticmethod
    def publish_bytes(
        channel: int,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        properties: commands.Basic.Properties | None = None,
        *,
        mandatory: bool = False,
        immediate: bool = False,
    ) -> bytes:
        publish = commands.Basic.Publish(
            exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
        )
        return method_frame(channel, publish) + content_frames(channel, body, properties)

    # -- receiving ---------------------------------------------------------------------------

    def frames(self) -> list[Frame]:
        out = self._backlog + parse(self.conn.data_to_send())
        self._backlog = []
        return out

    def push_back(self, frames: list[Frame]) -> None:
        """Frames read early (by a helper) that the test should still see."""
        self._backlog = frames + self._backlog

    def methods(self) -> list[Any]:
        return [frame.method for frame in self.frames()]

    def one(self, cls: type) -> Any:
        """Exactly one frame is pending and it is a ``cls``."""
        frames = self.frames()
        assert len(frames) == 1, frames
        assert isinstance(frames[0].method, cls), frames[0].method
        return frames[0].method

    # -- handshake ---------------------------------------------------------------------------

    def login(self, username: str = "guest", password: str = "guest") -> None:
        self.send(PROTOCOL_HEADER)
        start = self.one(commands.Connection.Start)
        assert "PLAIN" in start.mechanisms
        self.call(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "unit", "capabilities": self.capabilities},
                mechanism="PLAIN",
                response=f"\x00{username}\x00{password}",
            ),
        )

    def open(self, vhost: str = "/", *, heartbeat: int = 0, frame_max: int = 131072) -> None:
        self.login()
        self.one(commands.Connection.Tune)
        self.call(0, commands.Connection.TuneOk(2047, frame_max, heartbeat))
        self.call(0, commands.Connection.Open(virtual_host=vhost))
        self.one(commands.Connection.OpenOk)

    def open_channel(self, channel: int = 1) -> None:
        self.call(channel, commands.Channel.Open())
        self.one(commands.Channel.OpenOk)


def connected(context: AmqpContext, channel: int = 1, **kwargs: Any) -> Client:
    client = Client(context, **kwargs)
    client.open()
    client.open_channel(channel)
    return client


def declare(client: Client, queue: str = "", channel: int = 1, **kwargs: Any) -> str:
    client.call(channel, commands.Queue.Declare(queue=queue, **kwargs))
    ok = client.one(commands.Queue.DeclareOk)
    return str(ok.queue)


def consume(client: Client, queue: str, channel: int = 1, **kwargs: Any) -> str:
    client.call(channel, commands.Basic.Consume(queue=queue, **kwargs))
    frames = client.frames()
    assert isinstance(frames[0].method, commands.Basic.ConsumeOk), frames
    client.push_back(frames[1:])
    return str(frames[0].method.consumer_tag)
