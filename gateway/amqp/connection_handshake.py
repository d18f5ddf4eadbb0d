"""Handshake tables and rules of the AMQP connection machine: what the server announces,
which method each handshake state accepts, and RabbitMQ's tune-ok negotiation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from pamqp import base
from pamqp.commands import Connection

from gateway.amqp.connection_events import ConnectionState
from gateway.amqp.spec import CLASS_CONNECTION, NotAllowed

# RabbitMQ's ?MAX_MSG_SIZE: a content header announcing more is a frame error.
MAX_BODY_SIZE: Final = 512 * 1024 * 1024

# What RabbitMQ 3.x/4.x announces; clients switch features on from this table.
SERVER_CAPABILITIES: Final[Mapping[str, bool]] = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}
MECHANISMS: Final = "PLAIN AMQPLAIN"


# The one method each handshake state accepts on channel 0; anything else there is answered
# with 504 CHANNEL_ERROR "unexpected method in connection state ...", as RabbitMQ does.
HANDSHAKE_METHOD: Final[dict[ConnectionState, type[base.Frame]]] = {
    ConnectionState.STARTING: Connection.StartOk,
    ConnectionState.TUNING: Connection.TuneOk,
    ConnectionState.OPENING: Connection.Open,
}
# States in which input stays buffered until the shell answers.
NOT_READING: Final = frozenset(
    {ConnectionState.AUTHENTICATING, ConnectionState.OPEN_PENDING, ConnectionState.CLOSED}
)


Authenticator = Callable[[str, str, str], object | None]
# What an authenticator returns to decide later (a password hashed off the event loop): the
# machine emits `LoginRequested` and waits for `accept_login` or `refuse_login`.
LOGIN_PENDING: Final = object()


def shortstr_text(text: str) -> str:
    """Cut a reply text to the 255 octets a short string holds, on a character boundary."""
    data = text.encode()
    return text if len(data) <= 255 else data[:255].decode("utf-8", "ignore")


def negotiate(name: str, client: int, minimum: int, server: int) -> int:
    """RabbitMQ's tune-ok check: at least ``minimum``; at most ``server`` unless that is 0."""
    if client and client < minimum:
        raise NotAllowed(
            f"negotiated {name} = {client} is lower than the minimum allowed value ({minimum})",
            CLASS_CONNECTION,
            30,
        )
    if server and (client == 0 or client > server):
        raise NotAllowed(
            f"negotiated {name} = {client} is higher than the maximum allowed value ({server})",
            CLASS_CONNECTION,
            30,
        )
    return client
