"""The MQTT connection machine's states, its transition tables (kept as data: anything
missing from a table is a protocol error) and the events it makes up itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from gateway.mqtt.codec import Plain
from gateway.mqtt.codec_tables import CONNACK_CODES
from gateway.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)

__all__ = [
    "RECEIVE_TRANSITIONS",
    "REFUSED_CONNACK",
    "SEND_TRANSITIONS",
    "ConnectTimedOut",
    "ConnectionState",
    "Event",
    "KeepaliveExpired",
    "LocalProtocolError",
    "ProtocolViolation",
    "connack_code",
]


class ConnectionState(Enum):
    AWAIT_CONNECT = "await_connect"  # nothing received yet
    AWAIT_CONNACK = "await_connack"  # CONNECT received; the session decides (and may AUTH)
    CONNECTED = "connected"  # a successful CONNACK went out
    CLOSED = "closed"

    # Members are singletons compared by identity: hash them the same way. Enum's own
    # __hash__ is a Python-level call on every transition-table lookup (issue 7, S7).
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class KeepaliveExpired:
    """No packet for 1.5 x `keep_alive` seconds [MQTT-3.1.2-24]; v5 got DISCONNECT 0x8D."""

    keep_alive: int


@dataclass(frozen=True, slots=True)
class ConnectTimedOut:
    """No CONNECT within `connect_timeout` of the connection opening."""


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The client broke the protocol. `reason_code` is what went wrong; the machine queued
    what the protocol allows it to say (v5 DISCONNECT or CONNACK, or nothing)."""

    reason_code: ReasonCode
    text: str


# `Plain` items come out only with `plain_publish` set, and only once CONNECTED.
Event = Packet | Plain | KeepaliveExpired | ConnectTimedOut | ProtocolViolation


class LocalProtocolError(Exception):
    """The local side asked for something the protocol forbids in this state (a bug)."""


_S = ConnectionState
_FROM_CLIENT: tuple[type[Packet], ...] = (
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    Unsubscribe,
    PingReq,
    Auth,
)
_FROM_SERVER: tuple[type[Packet], ...] = (
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    PingResp,
    Auth,
)
REFUSED_CONNACK = "refused ConnAck"  # a CONNACK with a reason code >= 0x80

# What may arrive in each state, and the state after it; anything else is a protocol error.
RECEIVE_TRANSITIONS: Mapping[tuple[ConnectionState, type[Packet]], ConnectionState] = {
    (_S.AWAIT_CONNECT, Connect): _S.AWAIT_CONNACK,
    **{(_S.AWAIT_CONNACK, kind): _S.AWAIT_CONNACK for kind in _FROM_CLIENT},
    (_S.AWAIT_CONNACK, Disconnect): _S.CLOSED,
    **{(_S.CONNECTED, kind): _S.CONNECTED for kind in _FROM_CLIENT},
    (_S.CONNECTED, Disconnect): _S.CLOSED,
}
# What may be sent in each state; anything else raises LocalProtocolError. Nothing goes out
# before CONNACK but AUTH [MQTT-3.2.0-1], and no DISCONNECT before a successful CONNACK
# [MQTT-3.14.0-1].
SEND_TRANSITIONS: Mapping[tuple[ConnectionState, type[Packet] | str], ConnectionState] = {
    (_S.AWAIT_CONNACK, ConnAck): _S.CONNECTED,
    (_S.AWAIT_CONNACK, REFUSED_CONNACK): _S.CLOSED,
    (_S.AWAIT_CONNACK, Auth): _S.AWAIT_CONNACK,
    **{(_S.CONNECTED, kind): _S.CONNECTED for kind in _FROM_SERVER},
    (_S.CONNECTED, Disconnect): _S.CLOSED,
}


def connack_code(reason_code: ReasonCode, fallback: ReasonCode) -> ReasonCode:
    """The nearest code a CONNACK may carry (its list is shorter than DISCONNECT's)."""
    if reason_code in CONNACK_CODES:
        return reason_code
    if reason_code == ReasonCode.SERVER_SHUTTING_DOWN:
        return ReasonCode.SERVER_UNAVAILABLE
    return fallback
