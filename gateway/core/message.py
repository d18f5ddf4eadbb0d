"""Messages as the core holds them: one body shared by every queue, properties decoded lazily."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.errors import PreconditionFailed

# RabbitMQ's ?MAX_EXPIRY_TIMER: TTLs and expirations must fit Erlang's timer range.
MAX_EXPIRY_MS = 4294967295

_next_id = itertools.count(1).__next__
# The id source of every Message, for an adapter that fills a Message's slots itself.
next_message_id = _next_id


@dataclass(frozen=True, slots=True)
class Properties:
    """The basic-class content properties; every field is optional.

    Frozen so a decoded instance can be shared: change one with ``dataclasses.replace`` and
    hand the result to ``Message.with_properties`` (or assign ``message.properties``).
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, object] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


EMPTY_PROPERTIES = Properties()


def parse_expiration(value: str) -> int:
    """The ``expiration`` property as milliseconds; 406 when it is not a valid TTL."""
    text = value.strip()
    body = text[1:] if text[:1] in ("-", "+") else text
    if not body.isdigit() or not body.isascii():
        raise PreconditionFailed(f"invalid expiration '{value}': no_integer")
    ms = int(text)
    if ms < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{ms}}}")
    if ms > MAX_EXPIRY_MS:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_too_large,{ms}}}")
    return ms


class Message:
    """One published message.

    Build it either with ``properties`` or with ``raw_properties`` plus ``decode_properties``;
    in the second form the properties are decoded on first access to ``.properties`` only, and
    ``.raw_properties`` keeps the encoded bytes for a delivery that can reuse them as they are
    (None once the properties were replaced; a plain attribute, read once per delivery: set
    ``properties`` instead of writing it).
    ``persistent`` and ``expiration_ms`` are given by the publisher (an adapter reads them cheaply
    from the raw bytes); when omitted they are derived from ``properties`` if that was given.
    Protocol facts ride in ``annotations`` under namespaced keys; the core never reads them.
    """

    __slots__ = (
        "_decode",
        "_properties",
        "annotations",
        "body",
        "exchange",
        "expiration_ms",
        "id",
        "persistent",
        "raw_properties",
        "routing_key",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        properties: Properties | None = None,
        raw_properties: bytes | None = None,
        decode_properties: Callable[[bytes], Properties] | None = None,
        annotations: dict[str, object] | None = None,
        persistent: bool | None = None,
        expiration_ms: int | None = None,
    ) -> None:
        # One branch per construction form; every message of a publish passes through here.
        if properties is None:
            if raw_properties is not None and decode_properties is None:
                raise ValueError("raw_properties needs decode_properties")
            self.raw_properties: bytes | None = raw_properties
            if persistent is None:
                persistent = False
        else:
            self.raw_properties = None
            if persistent is None:
                persistent = properties.delivery_mode == 2
            if expiration_ms is None and properties.expiration is not None:
                expiration_ms = parse_expiration(properties.expiration)
        self.id: int = _next_id()
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.annotations: dict[str, object] = {} if annotations is None else annotations
        self._properties = properties
        self._decode = decode_properties
        self.persistent: bool = persistent
        self.expiration_ms: int | None = expiration_ms

    @property
    def properties(self) -> Properties:
        props = self._properties
        if props is None:
            raw = self.raw_properties
            if raw is None or self._decode is None:
                props = EMPTY_PROPERTIES
            else:
                props = self._decode(raw)
            self._properties = props
        return props

    @properties.setter
    def properties(self, props: Properties) -> None:
        self._properties = props
        self.raw_properties = None
        self.persistent = props.delivery_mode == 2
        self.expiration_ms = (
            None if props.expiration is None else parse_expiration(props.expiration)
        )

    @property
    def body_size(self) -> int:
        return len(self.body)

    def with_properties(
        self,
        props: Properties,
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
    ) -> Message:
        """A new message with other properties, sharing this body (used for dead-lettering)."""
        persistent = self.persistent if props.delivery_mode is None else props.delivery_mode == 2
        return Message(
            self.exchange if exchange is None else exchange,
            self.routing_key if routing_key is None else routing_key,
            self.body,
            properties=props,
            annotations=dict(self.annotations),
            persistent=persistent,
        )

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id}, exchange={self.exchange!r}, routing_key={self.routing_key!r},"
            f" body_size={len(self.body)})"
        )


_new_message = object.__new__


def message_from_raw(
    exchange: str,
    routing_key: str,
    body: bytes,
    raw_properties: bytes,
    decode_properties: Callable[[bytes], Properties],
    persistent: bool,
    expiration_ms: int | None,
) -> Message:
    """``Message(..., raw_properties=, decode_properties=, persistent=, expiration_ms=)``
    without the keyword-argument call: about half the cost, and an adapter builds one per
    publish."""
    message: Message = _new_message(Message)
    message.id = _next_id()
    message.exchange = exchange
    message.routing_key = routing_key
    message.body = body
    message.annotations = {}
    message._properties = None
    message.raw_properties = raw_properties
    message._decode = decode_properties
    message.persistent = persistent
    message.expiration_ms = expiration_ms
    return message


def message_with_properties(
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Properties,
    annotations: dict[str, object],
    persistent: bool,
    expiration_ms: int | None,
) -> Message:
    """``Message(..., properties=, annotations=, persistent=, expiration_ms=)`` without the
    keyword-argument call (the same result; a None ``expiration_ms`` is read from the
    properties)."""
    if expiration_ms is None and properties.expiration is not None:
        expiration_ms = parse_expiration(properties.expiration)
    message: Message = _new_message(Message)
    message.id = _next_id()
    message.exchange = exchange
    message.routing_key = routing_key
    message.body = body
    message.annotations = annotations
    message._properties = properties
    message.raw_properties = None
    message._decode = None
    message.persistent = persistent
    message.expiration_ms = expiration_ms
    return message


class QueueEntry:
    """A message's place in one queue. ``seq`` orders the queue and restores requeue order."""

    __slots__ = ("delivery_count", "enqueued_at", "expires_at", "message", "redelivered", "seq")

    def __init__(
        self,
        message: Message,
        seq: int,
        enqueued_at: float,
        expires_at: float | None,
        redelivered: bool = False,
        delivery_count: int = 0,
    ) -> None:
        self.message = message
        self.seq = seq
        self.enqueued_at = enqueued_at
        self.expires_at = expires_at
        self.redelivered = redelivered
        self.delivery_count = delivery_count

    def __repr__(self) -> str:
        return f"QueueEntry(seq={self.seq}, message={self.message!r})"
