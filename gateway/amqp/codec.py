"""Basic-class content properties and field tables.

A publish carries its properties as raw bytes; nothing decodes them unless someone reads them
(``gateway.core.message.Message`` calls :func:`decode_properties` lazily). What every publish
needs, the delivery mode and expiration, :func:`peek_delivery_mode_expiration` reads without
decoding the headers table.

Short-string properties that are not valid UTF-8 decode with ``surrogateescape`` and encode
back to the same octets. Field tables are decoded by pamqp; the encoder keeps the caller's key
order, writes ``bytes`` as long strings (pamqp decodes a non-UTF-8 long string to ``bytes``, so
that round trip is exact) and floats as doubles (pamqp writes 32-bit floats).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Final

from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode

from gateway.amqp.spec import CLASS_BASIC, CLASS_CONNECTION, AMQPSyntaxError, CommandInvalid
from gateway.core.message import Properties

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DOUBLE = struct.Struct(">d")

# Property flags, most significant bit first, in wire order.
CONTENT_TYPE: Final = 0x8000
CONTENT_ENCODING: Final = 0x4000
HEADERS: Final = 0x2000
DELIVERY_MODE: Final = 0x1000
PRIORITY: Final = 0x0800
CORRELATION_ID: Final = 0x0400
REPLY_TO: Final = 0x0200
EXPIRATION: Final = 0x0100
MESSAGE_ID: Final = 0x0080
TIMESTAMP: Final = 0x0040
TYPE: Final = 0x0020
USER_ID: Final = 0x0010
APP_ID: Final = 0x0008
CLUSTER_ID: Final = 0x0004
_CONTINUATION: Final = 0x0001
_KNOWN_FLAGS: Final = 0xFFFC

EMPTY_PROPERTIES_RAW: Final = b"\x00\x00"

_OCTET_FLAGS: Final = DELIVERY_MODE | PRIORITY
_SHORTSTR_FLAGS: Final = (
    CONTENT_TYPE
    | CONTENT_ENCODING
    | CORRELATION_ID
    | REPLY_TO
    | EXPIRATION
    | MESSAGE_ID
    | TYPE
    | USER_ID
    | APP_ID
    | CLUSTER_ID
)


def _malformed(what: str) -> AMQPSyntaxError:
    # Reported against basic.publish: the only content a client sends.
    return AMQPSyntaxError(f"malformed content properties: {what}", CLASS_BASIC, 40)


def _read_flags(raw: bytes) -> tuple[int, int]:
    """The basic-class flag word and the offset of the first property value."""
    if len(raw) < 2:
        raise _malformed("property flags truncated")
    flags = _U16.unpack_from(raw, 0)[0]
    pos = 2
    word = flags
    while word & _CONTINUATION:
        # Further flag words would announce properties the basic class does not have.
        if len(raw) < pos + 2:
            raise _malformed("property flags truncated")
        word = _U16.unpack_from(raw, pos)[0]
        pos += 2
        if word & ~_CONTINUATION:
            raise _malformed("unknown property flags set")
    # Bit 1 is unused by the basic class; RabbitMQ ignores it, and so do we.
    return flags & _KNOWN_FLAGS, pos


# What most publishers send: no properties, or only a delivery mode. Looked up by the raw
# octets before any parsing.
_COMMON_PEEKS: Final[dict[bytes, tuple[int | None, str | None]]] = {
    EMPTY_PROPERTIES_RAW: (None, None),
    **{_U16.pack(DELIVERY_MODE) + bytes((mode,)): (mode, None) for mode in range(256)},
}


# The same raw octets, mapped to whether the message is persistent (delivery mode 2): a
# publish with one of these has no property to check or rewrite and no headers.
PLAIN_PROPERTIES: Final[Mapping[bytes, bool]] = {
    raw: mode == 2 for raw, (mode, _) in _COMMON_PEEKS.items()
}


def peek_delivery_mode_expiration(raw: bytes) -> tuple[int | None, str | None]:
    """``(delivery_mode, expiration)`` from raw properties, checking the layout as it goes.

    Walks every present property by its length prefix; the headers table is skipped, not
    decoded. Raises 502 SYNTAX_ERROR when a length runs past the end or octets are left over.
    """
    common = _COMMON_PEEKS.get(raw)
    if common is not None:
        return common
    flags, pos = _read_flags(raw)
    size = len(raw)
    delivery_mode: int | None = None
    expiration: str | None = None
    bit = 0x8000
    try:
        while bit >= CLUSTER_ID:
            if flags & bit:
                if bit & _SHORTSTR_FLAGS:
                    length = raw[pos]
                    if bit == EXPIRATION:
                        expiration = raw[pos + 1 : pos + 1 + length].decode(
                            "utf-8", "surrogateescape"
                        )
                    pos += 1 + length
                elif bit & _OCTET_FLAGS:
                    if bit == DELIVERY_MODE:
                        delivery_mode = raw[pos]
                    pos += 1
                elif bit == HEADERS:
                    pos += 4 + _U32.unpack_from(raw, pos)[0]
                else:  # timestamp
                    pos += 8
                if pos > size:
                    raise _malformed("property value runs past the end")
            bit >>= 1
    except (IndexError, struct.error):
        raise _malformed("property value truncated") from None
    if pos != size:
        raise _malformed(f"{size - pos} octets after the last property")
    return delivery_mode, expiration


def decode_properties(raw: bytes) -> Properties:
    """Decode raw content properties (flags included) into the core's ``Properties``."""
    if raw == EMPTY_PROPERTIES_RAW:
        return Properties()
    flags, pos = _read_flags(raw)
    values: list[object] = []
    try:
        bit = 0x8000
        while bit >= CLUSTER_ID:
            if not flags & bit:
                values.append(None)
            elif bit & _SHORTSTR_FLAGS:
                length = raw[pos]
                end = pos + 1 + length
                if end > len(raw):
                    raise _malformed("short string runs past the end")
                values.append(raw[pos + 1 : end].decode("utf-8", "surrogateescape"))
                pos = end
            elif bit & _OCTET_FLAGS:
                values.append(raw[pos])
                pos += 1
            elif bit == HEADERS:
                end = pos + 4 + _U32.unpack_from(raw, pos)[0]
                if end > len(raw):
                    raise _malformed("headers table runs past the end")
                values.append(decode_table(raw[pos:end], CLASS_BASIC, 40))
                pos = end
            else:
                values.append(_U64.unpack_from(raw, pos)[0])
                pos += 8
            bit >>= 1
    except (IndexError, struct.error):
        raise _malformed("property value truncated") from None
    if pos != len(raw):
        raise _malformed(f"{len(raw) - pos} octets after the last property")
    return Properties(*values)  # type: ignore[arg-type]


def _shortstr(value: str, name: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > 255:
        raise ValueError(f"property {name} is longer than 255 octets")
    return bytes((len(data),)) + data


def _octet(value: int, name: str) -> bytes:
    if not 0 <= value <= 255:
        raise ValueError(f"property {name} must be 0..255, not {value}")
    return bytes((value,))


def encode_properties(props: Properties) -> bytes:
    """Encode ``Properties`` as a content header's flags and property list.

    An empty string is a present, empty property (pamqp would drop it; RabbitMQ keeps it).
    """
    flags = 0
    parts: list[bytes] = []
    if props.content_type is not None:
        flags |= CONTENT_TYPE
        parts.append(_shortstr(props.content_type, "content_type"))
    if props.content_encoding is not None:
        flags |= CONTENT_ENCODING
        parts.append(_shortstr(props.content_encoding, "content_encoding"))
    if props.headers is not None:
        flags |= HEADERS
        parts.append(encode_table(props.headers))
    if props.delivery_mode is not None:
        flags |= DELIVERY_MODE
        parts.append(_octet(props.delivery_mode, "delivery_mode"))
    if props.priority is not None:
        flags |= PRIORITY
        parts.append(_octet(props.priority, "priority"))
    if props.correlation_id is not None:
        flags |= CORRELATION_ID
        parts.append(_shortstr(props.correlation_id, "correlation_id"))
    if props.reply_to is not None:
        flags |= REPLY_TO
        parts.append(_shortstr(props.reply_to, "reply_to"))
    if props.expiration is not None:
        flags |= EXPIRATION
        parts.append(_shortstr(props.expiration, "expiration"))
    if props.message_id is not None:
        flags |= MESSAGE_ID
        parts.append(_shortstr(props.message_id, "message_id"))
    if props.timestamp is not None:
        flags |= TIMESTAMP
        parts.append(_U64.pack(props.timestamp))
    if props.type is not None:
        flags |= TYPE
        parts.append(_shortstr(props.type, "type"))
    if props.user_id is not None:
        flags |= USER_ID
        parts.append(_shortstr(props.user_id, "user_id"))
    if props.app_id is not None:
        flags |= APP_ID
        parts.append(_shortstr(props.app_id, "app_id"))
    if props.cluster_id is not None:
        flags |= CLUSTER_ID
        parts.append(_shortstr(props.cluster_id, "cluster_id"))
    return _U16.pack(flags) + b"".join(parts)


def decode_table(data: bytes, class_id: int = 0, method_id: int = 0) -> dict[str, object]:
    """Decode a field table (with its 32-bit length prefix) that fills ``data`` exactly.

    Raises 502 SYNTAX_ERROR naming ``class_id``/``method_id`` as the failing method.
    """
    try:
        consumed, table = pamqp_decode.field_table(data)
    except (ValueError, OverflowError, OSError, IndexError) as err:
        raise AMQPSyntaxError(f"malformed field table: {err}", class_id, method_id) from None
    if consumed != len(data):
        raise AMQPSyntaxError("field table length does not match its contents", class_id, method_id)
    return dict(table)


def _table_value(value: object) -> bytes:
    if isinstance(value, str):
        data = value.encode()
        return b"S" + _U32.pack(len(data)) + data
    if isinstance(value, bytes):
        return b"S" + _U32.pack(len(value)) + value
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, int):
        return pamqp_encode.table_integer(value)
    if isinstance(value, float):
        return b"d" + _DOUBLE.pack(value)
    if isinstance(value, Mapping):
        return b"F" + encode_table(value)
    if isinstance(value, list | tuple):
        items = b"".join(_table_value(item) for item in value)
        return b"A" + _U32.pack(len(items)) + items
    if value is None or isinstance(value, Decimal | bytearray | datetime):
        # void, decimal, byte array and timestamps: pamqp's encodings.
        return pamqp_encode.encode_table_value(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a field table")


def encode_table(table: Mapping[str, object]) -> bytes:
    """Encode a field table with its 32-bit length prefix, keeping the key order."""
    parts: list[bytes] = []
    for key, value in table.items():
        name = key.encode()
        if len(name) > 255:
            raise ValueError(f"field table key longer than 255 octets: {key[:40]!r}...")
        parts.append(bytes((len(name),)))
        parts.append(name)
        parts.append(_table_value(value))
    body = b"".join(parts)
    return _U32.pack(len(body)) + body


def _as_bytes(value: object) -> bytes:
    # pamqp hands long strings back as str when they are UTF-8 and as bytes otherwise.
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise AMQPSyntaxError("authentication response is not a string", CLASS_CONNECTION, 11)


def _as_text(value: object, what: str) -> str:
    try:
        return _as_bytes(value).decode()
    except UnicodeDecodeError:
        raise AMQPSyntaxError(f"{what} is not valid UTF-8", CLASS_CONNECTION, 11) from None


def parse_credentials(mechanism: str, response: object) -> tuple[str, str]:
    """Username and password from a PLAIN or AMQPLAIN connection.start-ok response.

    Malformed: 502 SYNTAX_ERROR; another mechanism: 503 COMMAND_INVALID (as RabbitMQ).
    """
    response = _as_bytes(response)
    if mechanism == "PLAIN":
        # RFC 4616: [authzid] NUL authcid NUL passwd
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise AMQPSyntaxError("PLAIN response invalid", CLASS_CONNECTION, 11)
        return _as_text(parts[1], "username"), _as_text(parts[2], "password")
    if mechanism == "AMQPLAIN":
        # A field table without its length prefix.
        table = decode_table(len(response).to_bytes(4, "big") + response, CLASS_CONNECTION, 11)
        if "LOGIN" not in table or "PASSWORD" not in table:
            raise AMQPSyntaxError(
                "AMQPLAIN auth info is missing LOGIN or PASSWORD field", CLASS_CONNECTION, 11
            )
        return _as_text(table["LOGIN"], "LOGIN"), _as_text(table["PASSWORD"], "PASSWORD")
    raise CommandInvalid(f"unknown authentication mechanism '{mechanism}'", CLASS_CONNECTION, 11)
