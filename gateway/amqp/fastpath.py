"""Hand-written ``struct`` codecs for the frames every message crosses.

pamqp builds a Python object per field and is about ten times slower on these; it stays the
oracle in the property tests. Decoders read straight out of the receive buffer between two
offsets; encoders build whole frames (method, content header, body) in one go.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from gateway.amqp.spec import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    CLASS_BASIC,
    FRAME_BODY,
    FRAME_END_BYTE,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    AMQPSyntaxError,
)

_FRAME_HEAD = struct.Struct(">BHI")
_ACK_ARGS = struct.Struct(">QB")
_CONTENT_HEADER = struct.Struct(">HHQ")

HEARTBEAT_FRAME: Final = _FRAME_HEAD.pack(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE

# Above this size a delivery is handed out as chunks that reference the body instead of a
# joined copy of it (for ``transport.writelines``).
CHUNKED_BODY_THRESHOLD: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class BasicPublish:
    exchange: str
    routing_key: str
    mandatory: bool = False
    immediate: bool = False

    index: ClassVar[int] = (CLASS_BASIC << 16) | BASIC_PUBLISH
    name: ClassVar[str] = "Basic.Publish"


@dataclass(frozen=True, slots=True)
class BasicAck:
    delivery_tag: int
    multiple: bool = False

    index: ClassVar[int] = (CLASS_BASIC << 16) | BASIC_ACK
    name: ClassVar[str] = "Basic.Ack"


@dataclass(frozen=True, slots=True)
class BasicNack:
    delivery_tag: int
    multiple: bool = False
    requeue: bool = True

    index: ClassVar[int] = (CLASS_BASIC << 16) | BASIC_NACK
    name: ClassVar[str] = "Basic.Nack"


@dataclass(frozen=True, slots=True)
class BasicReject:
    delivery_tag: int
    requeue: bool = True

    index: ClassVar[int] = (CLASS_BASIC << 16) | BASIC_REJECT
    name: ClassVar[str] = "Basic.Reject"


FastMethod = BasicPublish | BasicAck | BasicNack | BasicReject


def _syntax(method: str, what: str, method_id: int) -> AMQPSyntaxError:
    return AMQPSyntaxError(f"malformed {method}: {what}", CLASS_BASIC, method_id)


def _decode_publish_args(buf: bytes | bytearray, start: int, end: int) -> BasicPublish:
    try:
        pos = start + 2  # reserved-1 (ticket), ignored as RabbitMQ does
        length = buf[pos]
        pos += 1
        exchange = buf[pos : pos + length].decode()
        pos += length
        length = buf[pos]
        pos += 1
        routing_key = buf[pos : pos + length].decode()
        pos += length
        bits = buf[pos]
        pos += 1
    except IndexError:
        raise _syntax("basic.publish", "arguments truncated", BASIC_PUBLISH) from None
    except UnicodeDecodeError:
        raise _syntax("basic.publish", "name is not valid UTF-8", BASIC_PUBLISH) from None
    if pos != end:
        # Also catches a string whose length ran past the frame (the slice came up short).
        raise _syntax("basic.publish", "argument lengths do not match the frame", BASIC_PUBLISH)
    return BasicPublish(exchange, routing_key, bool(bits & 1), bool(bits & 2))


# Publishers repeat the same few (exchange, routing key, flags): decoded methods by their
# argument octets, so a publish costs a dict lookup instead of two decodes and an object.
# Sharing is safe because BasicPublish is frozen. Cleared when full, which only costs misses.
_PUBLISH_CACHE: dict[bytes, BasicPublish] = {}
_PUBLISH_CACHE_MAX: Final = 1024


def decode_basic_publish(buf: bytes | bytearray, start: int, end: int) -> BasicPublish:
    """Decode Basic.Publish arguments found in ``buf[start:end]`` (after class and method id)."""
    return decode_publish_arguments(bytes(buf[start:end]))


def decode_publish_arguments(key: bytes) -> BasicPublish:
    """Decode Basic.Publish arguments given as their own bytes object."""
    method = _PUBLISH_CACHE.get(key)
    if method is None:
        method = _decode_publish_args(key, 0, len(key))
        if len(_PUBLISH_CACHE) >= _PUBLISH_CACHE_MAX:
            _PUBLISH_CACHE.clear()
        _PUBLISH_CACHE[key] = method
    return method


def _ack_args(
    buf: bytes | bytearray, start: int, end: int, name: str, method_id: int
) -> tuple[int, int]:
    if end - start != _ACK_ARGS.size:
        raise _syntax(name, f"expected {_ACK_ARGS.size} argument octets", method_id)
    tag, bits = _ACK_ARGS.unpack_from(buf, start)
    return tag, bits


def decode_basic_ack(buf: bytes | bytearray, start: int, end: int) -> BasicAck:
    tag, bits = _ack_args(buf, start, end, "basic.ack", BASIC_ACK)
    return BasicAck(tag, bool(bits & 1))


def decode_basic_nack(buf: bytes | bytearray, start: int, end: int) -> BasicNack:
    tag, bits = _ack_args(buf, start, end, "basic.nack", BASIC_NACK)
    return BasicNack(tag, bool(bits & 1), bool(bits & 2))


def decode_basic_reject(buf: bytes | bytearray, start: int, end: int) -> BasicReject:
    tag, bits = _ack_args(buf, start, end, "basic.reject", BASIC_REJECT)
    return BasicReject(tag, bool(bits & 1))


_ACK_FRAME = struct.Struct(">BHIHHQBB")


def encode_basic_ack(channel: int, delivery_tag: int, multiple: bool = False) -> bytes:
    return _ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, CLASS_BASIC, BASIC_ACK, delivery_tag, multiple, 0xCE
    )


def encode_basic_nack(
    channel: int, delivery_tag: int, multiple: bool = False, requeue: bool = True
) -> bytes:
    bits = (1 if multiple else 0) | (2 if requeue else 0)
    return _ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, CLASS_BASIC, BASIC_NACK, delivery_tag, bits, 0xCE
    )


def encode_basic_reject(channel: int, delivery_tag: int, requeue: bool = True) -> bytes:
    return _ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, CLASS_BASIC, BASIC_REJECT, delivery_tag, requeue, 0xCE
    )


@dataclass(frozen=True, slots=True)
class ContentHeader:
    """A content header payload; ``properties`` keeps the raw flags and property list."""

    class_id: int
    weight: int
    body_size: int
    properties: bytes


def decode_content_header(buf: bytes | bytearray, start: int, end: int) -> ContentHeader | None:
    """Decode a content header payload; None when it is too short to be one."""
    if end - start < _CONTENT_HEADER.size:
        return None
    class_id, weight, body_size = _CONTENT_HEADER.unpack_from(buf, start)
    return ContentHeader(
        class_id, weight, body_size, bytes(buf[start + _CONTENT_HEADER.size : end])
    )


def _encode_shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"short string longer than 255 octets: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


# Consumer tags, exchange names and routing keys recur on every delivery: encode each once.
_SHORTSTRS: dict[str, bytes] = {}
_SHORTSTRS_MAX: Final = 4096


def _shortstr(value: str) -> bytes:
    raw = _SHORTSTRS.get(value)
    if raw is None:
        raw = _encode_shortstr(value)
        if len(_SHORTSTRS) >= _SHORTSTRS_MAX:
            _SHORTSTRS.clear()
        _SHORTSTRS[value] = raw
    return raw


def encode_content_header(
    channel: int, body_size: int, properties: bytes, class_id: int = CLASS_BASIC
) -> bytes:
    return b"".join(
        (
            _FRAME_HEAD.pack(FRAME_HEADER, channel, _CONTENT_HEADER.size + len(properties)),
            _CONTENT_HEADER.pack(class_id, 0, body_size),
            properties,
            FRAME_END_BYTE,
        )
    )


def _body_chunk_size(frame_max: int, body_size: int) -> int:
    # frame_max 0 means "no limit" in the spec: one body frame carries it all.
    return frame_max - FRAME_OVERHEAD if frame_max else max(body_size, 1)


def encode_body_frames(
    channel: int, body: bytes | memoryview, frame_max: int
) -> list[bytes | memoryview]:
    """Body frames for ``body``: each a frame head, a view of the body slice and the end octet."""
    size = len(body)
    step = _body_chunk_size(frame_max, size)
    view = memoryview(body)
    out: list[bytes | memoryview] = []
    for offset in range(0, size, step):
        chunk = view[offset : offset + step]
        out.append(_FRAME_HEAD.pack(FRAME_BODY, channel, len(chunk)))
        out.append(chunk)
        out.append(FRAME_END_BYTE)
    return out


def encode_content(
    channel: int, properties: bytes, body: bytes, frame_max: int, class_id: int = CLASS_BASIC
) -> bytes:
    """Content header plus body frames as one bytes object."""
    size = len(body)
    head = encode_content_header(channel, size, properties, class_id)
    step = _body_chunk_size(frame_max, size)
    if size <= step:
        if not size:
            return head
        return b"".join((head, _FRAME_HEAD.pack(FRAME_BODY, channel, size), body, FRAME_END_BYTE))
    return b"".join((head, *encode_body_frames(channel, body, frame_max)))


# Basic.Deliver up to the consumer tag: frame head, class and method id.
_DELIVER_HEAD = struct.Struct(">BHIHH")
# After the consumer tag: delivery tag and redelivered.
_DELIVER_TAG = struct.Struct(">QB")
# After the routing key: the method frame's end, then the content header frame up to the
# property flags (frame head, class, weight, body size).
_DELIVER_HEADER = struct.Struct(">BBHIHHQ")
# After the properties: the header frame's end, then a body frame's head.
_DELIVER_BODY = struct.Struct(">BBHI")
_FRAME_END: Final = 0xCE
# Method arguments around the three short strings: delivery tag, redelivered, class and id.
_DELIVER_FIXED: Final = 4 + _DELIVER_TAG.size


def _deliver_method(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
) -> bytes:
    tag = _shortstr(consumer_tag)
    names = _shortstr(exchange) + _shortstr(routing_key)
    return b"".join(
        (
            _DELIVER_HEAD.pack(
                FRAME_METHOD, channel, _DELIVER_FIXED + len(tag) + len(names), CLASS_BASIC,
                BASIC_DELIVER,
            ),
            tag,
            _DELIVER_TAG.pack(delivery_tag, 1 if redelivered else 0),
            names,
            FRAME_END_BYTE,
        )
    )  # fmt: skip


def encode_deliver(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.Deliver, its content header and body frames as one bytes object."""
    parts = deliver_template(
        channel, consumer_tag, exchange, routing_key, properties, len(body), frame_max
    )
    if parts is None:
        method = _deliver_method(
            channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key
        )
        return method + encode_content(channel, properties, body, frame_max)
    head, middle = parts
    return b"".join((head, pack_delivery_tag(delivery_tag, redelivered), middle, body,
                     FRAME_END_BYTE))  # fmt: skip


# The delivery tag and redelivered flag of a Basic.Deliver: ``(delivery_tag, redelivered)``.
pack_delivery_tag: Final = _DELIVER_TAG.pack


def deliver_template(
    channel: int,
    consumer_tag: str,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body_size: int,
    frame_max: int,
) -> tuple[bytes, bytes] | None:
    """A delivery whose body fits one frame, split around its delivery tag: the delivery is
    ``head + pack_delivery_tag(tag, redelivered) + middle + body + FRAME_END_BYTE``. None for
    an empty body or one that takes several frames (:func:`encode_deliver` handles those).

    Everything but the delivery tag and the body recurs from one delivery to the next: for
    short properties the parts are cached, so a batch of deliveries is a few joins.
    """
    if not body_size or (frame_max and body_size > frame_max - FRAME_OVERHEAD):
        return None
    if len(properties) > _DELIVER_CACHED_PROPERTIES:
        return _deliver_parts(channel, consumer_tag, exchange, routing_key, properties, body_size)
    key = (channel, consumer_tag, exchange, routing_key, properties, body_size)
    parts = _DELIVER_PARTS.get(key)
    if parts is None:
        if len(_DELIVER_PARTS) >= _DELIVER_PARTS_MAX:
            _DELIVER_PARTS.clear()
        parts = _DELIVER_PARTS[key] = _deliver_parts(
            channel, consumer_tag, exchange, routing_key, properties, body_size
        )
    return parts


# Encoded deliveries around the delivery tag, by (channel, consumer tag, exchange, routing key,
# properties, body size); only short properties, so the key stays cheap to hash.
_DELIVER_PARTS: dict[tuple[int, str, str, str, bytes, int], tuple[bytes, bytes]] = {}
_DELIVER_PARTS_MAX: Final = 1024
_DELIVER_CACHED_PROPERTIES: Final = 64


def _deliver_parts(
    channel: int, consumer_tag: str, exchange: str, routing_key: str, properties: bytes, size: int
) -> tuple[bytes, bytes]:
    """A one-frame-body delivery split around the delivery tag: what precedes it (method
    frame head and consumer tag) and what follows it up to the body."""
    tag = _shortstr(consumer_tag)
    ex = _shortstr(exchange)
    key = _shortstr(routing_key)
    head = _DELIVER_HEAD.pack(
        FRAME_METHOD, channel, _DELIVER_FIXED + len(tag) + len(ex) + len(key),
        CLASS_BASIC, BASIC_DELIVER,
    ) + tag  # fmt: skip
    middle = b"".join(
        (
            ex,
            key,
            _DELIVER_HEADER.pack(
                _FRAME_END, FRAME_HEADER, channel, _CONTENT_HEADER.size + len(properties),
                CLASS_BASIC, 0, size,
            ),
            properties,
            _DELIVER_BODY.pack(_FRAME_END, FRAME_BODY, channel, size),
        )
    )  # fmt: skip
    return head, middle


def encode_deliver_chunks(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes | memoryview]:
    """The same frames as :func:`encode_deliver`, with the body referenced rather than copied."""
    method = _deliver_method(
        channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key
    )
    head = encode_content_header(channel, len(body), properties)
    return [method + head, *encode_body_frames(channel, body, frame_max)]
