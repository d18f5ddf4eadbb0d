"""What :class:`gateway.amqp.connection.AMQPConnection` reports: its states and its events."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.amqp.frames import Method
from gateway.amqp.spec import AMQPError


class ConnectionState(enum.Enum):
    AWAITING_HEADER = "awaiting_header"
    STARTING = "starting"  # connection.start sent, waiting for start-ok
    AUTHENTICATING = "authenticating"  # waiting for accept_login() / refuse_login()
    TUNING = "tuning"  # connection.tune sent, waiting for tune-ok
    OPENING = "opening"  # waiting for connection.open
    OPEN_PENDING = "open_pending"  # waiting for open_ok() / refuse_open()
    OPEN = "open"
    CLOSING = "closing"  # our connection.close sent, waiting for close-ok
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LoginRequested:
    """Credentials to check; answer with ``accept_login(user)`` or ``refuse_login()``."""

    mechanism: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class OpenRequested:
    """The client asked for a virtual host; answer with ``open_ok()`` or ``refuse_open()``."""

    virtual_host: str


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    channel: int


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """A channel is gone: the peer closed it, or the peer confirmed our ``close_channel``."""

    channel: int
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int
    by_peer: bool


@dataclass(frozen=True, slots=True)
class MethodReceived:
    """A method for the channel layer (anything but connection.* and channel.*)."""

    channel: int
    method: Method


# A content-bearing method with its raw properties and whole body, as
# FrameDecoder.next_publish reads it: (channel, method, raw properties, body).
Content = tuple[int, Method, bytes, bytes]


# Not frozen: one is built per read batch, and extended while the publishes continue.
@dataclass(slots=True)
class ContentReceived:
    """Content-bearing methods (Basic.Publish) on one channel, each with its raw properties and
    whole body, in the order they arrived.

    Consecutive contents on a channel with no other event in between come as one event, so a
    burst of publishes costs the channel layer one event instead of one per message.
    """

    channel: int
    contents: list[Content]


@dataclass(frozen=True, slots=True)
class HardErrorRaised:
    """The peer broke the protocol; connection.close with the error's code has been sent."""

    error: AMQPError


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over: the peer closed it, confirmed our close, or never will."""

    reply_code: int
    reply_text: str
    class_id: int
    method_id: int
    by_peer: bool


@dataclass(frozen=True, slots=True)
class HeartbeatTimedOut:
    """Two heartbeat intervals passed without an octet from the client."""

    heartbeat: int


@dataclass(frozen=True, slots=True)
class HandshakeTimedOut:
    state: ConnectionState


@dataclass(frozen=True, slots=True)
class ProtocolHeaderRejected:
    """The client did not open with AMQP 0-9-1; our header was sent back, as the spec says."""

    received: bytes


Event = (
    LoginRequested
    | OpenRequested
    | ChannelOpened
    | ChannelClosed
    | MethodReceived
    | ContentReceived
    | HardErrorRaised
    | ConnectionClosed
    | HeartbeatTimedOut
    | HandshakeTimedOut
    | ProtocolHeaderRejected
)
