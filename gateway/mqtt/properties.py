"""MQTT 5 properties on the wire (spec 2.2.2.2): the property table as data, encode, decode."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, NamedTuple

from gateway.mqtt.codec_errors import MalformedPacket, ProtocolError
from gateway.mqtt.codec_primitives import (
    check_utf8,
    decode_binary,
    decode_u16,
    decode_u32,
    decode_vbi,
    encode_binary,
    encode_string,
    encode_vbi,
    pack_u16,
    pack_u32,
)
from gateway.mqtt.packets import EMPTY_PROPERTIES, Packet, Properties

# Where a property list sits; a bit each so the table can say "allowed in" as one int.
CTX_CONNECT = 1 << 0
CTX_CONNACK = 1 << 1
CTX_PUBLISH = 1 << 2
CTX_WILL = 1 << 3
CTX_PUBACK = 1 << 4
CTX_PUBREC = 1 << 5
CTX_PUBREL = 1 << 6
CTX_PUBCOMP = 1 << 7
CTX_SUBSCRIBE = 1 << 8
CTX_SUBACK = 1 << 9
CTX_UNSUBSCRIBE = 1 << 10
CTX_UNSUBACK = 1 << 11
CTX_DISCONNECT = 1 << 12
CTX_AUTH = 1 << 13
_ACKS = CTX_PUBACK | CTX_PUBREC | CTX_PUBREL | CTX_PUBCOMP
_ALL = (1 << 14) - 1


class Kind(Enum):
    BYTE = "byte"
    BOOL = "bool"  # a byte that must be 0 or 1
    U16 = "u16"
    U32 = "u32"
    VBI = "vbi"
    STRING = "string"
    BINARY = "binary"
    PAIR = "pair"


class PropertySpec(NamedTuple):
    identifier: int
    name: str
    kind: Kind
    contexts: int


USER_PROPERTY = 0x26
SUBSCRIPTION_IDENTIFIER = 0x0B

# Spec table 2-4, in identifier order (the encoder writes properties in this order).
PROPERTY_TABLE: tuple[PropertySpec, ...] = (
    PropertySpec(0x01, "payload_format_indicator", Kind.BYTE, CTX_PUBLISH | CTX_WILL),
    PropertySpec(0x02, "message_expiry_interval", Kind.U32, CTX_PUBLISH | CTX_WILL),
    PropertySpec(0x03, "content_type", Kind.STRING, CTX_PUBLISH | CTX_WILL),
    PropertySpec(0x08, "response_topic", Kind.STRING, CTX_PUBLISH | CTX_WILL),
    PropertySpec(0x09, "correlation_data", Kind.BINARY, CTX_PUBLISH | CTX_WILL),
    PropertySpec(0x0B, "subscription_identifiers", Kind.VBI, CTX_PUBLISH | CTX_SUBSCRIBE),
    PropertySpec(
        0x11, "session_expiry_interval", Kind.U32, CTX_CONNECT | CTX_CONNACK | CTX_DISCONNECT
    ),
    PropertySpec(0x12, "assigned_client_identifier", Kind.STRING, CTX_CONNACK),
    PropertySpec(0x13, "server_keep_alive", Kind.U16, CTX_CONNACK),
    PropertySpec(0x15, "authentication_method", Kind.STRING, CTX_CONNECT | CTX_CONNACK | CTX_AUTH),
    PropertySpec(0x16, "authentication_data", Kind.BINARY, CTX_CONNECT | CTX_CONNACK | CTX_AUTH),
    PropertySpec(0x17, "request_problem_information", Kind.BOOL, CTX_CONNECT),
    PropertySpec(0x18, "will_delay_interval", Kind.U32, CTX_WILL),
    PropertySpec(0x19, "request_response_information", Kind.BOOL, CTX_CONNECT),
    PropertySpec(0x1A, "response_information", Kind.STRING, CTX_CONNACK),
    PropertySpec(0x1C, "server_reference", Kind.STRING, CTX_CONNACK | CTX_DISCONNECT),
    PropertySpec(
        0x1F,
        "reason_string",
        Kind.STRING,
        CTX_CONNACK | _ACKS | CTX_SUBACK | CTX_UNSUBACK | CTX_DISCONNECT | CTX_AUTH,
    ),
    PropertySpec(0x21, "receive_maximum", Kind.U16, CTX_CONNECT | CTX_CONNACK),
    PropertySpec(0x22, "topic_alias_maximum", Kind.U16, CTX_CONNECT | CTX_CONNACK),
    PropertySpec(0x23, "topic_alias", Kind.U16, CTX_PUBLISH),
    PropertySpec(0x24, "maximum_qos", Kind.BYTE, CTX_CONNACK),
    PropertySpec(0x25, "retain_available", Kind.BOOL, CTX_CONNACK),
    PropertySpec(0x26, "user_properties", Kind.PAIR, _ALL),
    PropertySpec(0x27, "maximum_packet_size", Kind.U32, CTX_CONNECT | CTX_CONNACK),
    PropertySpec(0x28, "wildcard_subscription_available", Kind.BOOL, CTX_CONNACK),
    PropertySpec(0x29, "subscription_identifier_available", Kind.BOOL, CTX_CONNACK),
    PropertySpec(0x2A, "shared_subscription_available", Kind.BOOL, CTX_CONNACK),
)
_BY_ID: dict[int, PropertySpec] = {spec.identifier: spec for spec in PROPERTY_TABLE}

# Byte properties whose only legal values are 0 and 1; zero is illegal for these integers.
_ZERO_OR_ONE = frozenset({"payload_format_indicator", "maximum_qos"})
_NON_ZERO = frozenset({"receive_maximum", "maximum_packet_size"})


def decode_properties(data: bytes, pos: int, end: int, context: int) -> tuple[Properties, int]:
    """Decode a property length and list. `context` is one CTX_* bit."""
    length, pos = decode_vbi(data, pos, end)
    if length == 0:
        return EMPTY_PROPERTIES, pos
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    values: dict[str, Any] = {}
    user_properties: list[tuple[str, str]] = []
    subscription_ids: list[int] = []
    while pos < stop:
        # Identifiers are variable byte integers, but every defined one fits in one byte.
        spec = _BY_ID.get(data[pos])
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{data[pos]:02X}")
        pos += 1
        if not spec.contexts & context:
            raise MalformedPacket(f"property {spec.name} is not allowed in this packet")
        value, pos = _decode_value(spec, data, pos, stop)
        if spec.identifier == USER_PROPERTY:
            user_properties.append(value)
        elif spec.identifier == SUBSCRIPTION_IDENTIFIER:
            if value == 0:
                raise ProtocolError("subscription identifier 0")
            # Only a PUBLISH to a subscriber carries several [MQTT-3.3.4-3].
            if subscription_ids and context != CTX_PUBLISH:
                raise ProtocolError("subscription identifier given twice")
            subscription_ids.append(value)
        elif spec.name in values:
            raise ProtocolError(f"property {spec.name} given twice")
        else:
            values[spec.name] = value
    if user_properties:
        values["user_properties"] = tuple(user_properties)
    if subscription_ids:
        values["subscription_identifiers"] = tuple(subscription_ids)
    return Properties(**values), pos


def _decode_value(spec: PropertySpec, data: bytes, pos: int, stop: int) -> tuple[Any, int]:
    kind = spec.kind
    if kind is Kind.STRING:
        raw, pos = decode_binary(data, pos, stop)
        return check_utf8(raw), pos
    if kind is Kind.PAIR:
        raw_name, pos = decode_binary(data, pos, stop)
        raw_value, pos = decode_binary(data, pos, stop)
        return (check_utf8(raw_name), check_utf8(raw_value)), pos
    if kind is Kind.BINARY:
        return decode_binary(data, pos, stop)
    if kind is Kind.VBI:
        return decode_vbi(data, pos, stop)
    if kind is Kind.U32:
        number, pos = decode_u32(data, pos, stop)
    elif kind is Kind.U16:
        number, pos = decode_u16(data, pos, stop)
    else:
        if pos >= stop:
            raise MalformedPacket("property list ends inside a byte property")
        number = data[pos]
        pos += 1
        if kind is Kind.BOOL:
            if number > 1:
                raise ProtocolError(f"property {spec.name} must be 0 or 1")
            return number == 1, pos
        if spec.name in _ZERO_OR_ONE and number > 1:
            raise ProtocolError(f"property {spec.name} must be 0 or 1")
    if number == 0 and spec.name in _NON_ZERO:
        raise ProtocolError(f"property {spec.name} must not be 0")
    return number, pos


def encode_properties(props: Properties) -> bytes:
    """Property length plus list. The result is cached on the (immutable) Properties."""
    if props is EMPTY_PROPERTIES:
        return b"\x00"
    cached = props.wire_cache
    if cached is not None:
        return cached
    parts: list[bytes] = []
    for spec in PROPERTY_TABLE:
        value = getattr(props, spec.name)
        if value is None or value == ():
            continue
        ident = bytes((spec.identifier,))
        kind = spec.kind
        if kind is Kind.PAIR:
            for name, text in value:
                parts += (ident, encode_string(name), encode_string(text))
        elif kind is Kind.VBI:
            for number in value:
                parts += (ident, encode_vbi(number))
        elif kind is Kind.STRING:
            parts += (ident, encode_string(value))
        elif kind is Kind.BINARY:
            parts += (ident, encode_binary(value))
        elif kind is Kind.U32:
            parts += (ident, pack_u32(value))
        elif kind is Kind.U16:
            parts += (ident, pack_u16(value))
        else:
            parts += (ident, bytes((int(value),)))
    body = b"".join(parts)
    wire = encode_vbi(len(body)) + body
    object.__setattr__(props, "wire_cache", wire)
    return wire


def without_problem_information(props: Properties) -> Properties:
    """Drop Reason String and User Properties: what a sender may leave out when the packet
    would exceed the peer's Maximum Packet Size, or when the peer asked for no problem
    information [MQTT-3.1.2-32]."""
    if props.reason_string is None and not props.user_properties:
        return props
    stripped = dataclasses.replace(props, reason_string=None, user_properties=())
    return EMPTY_PROPERTIES if stripped == EMPTY_PROPERTIES else stripped


def server_disconnect_properties(properties: Properties) -> Properties:
    """A server DISCONNECT's properties: Session Expiry Interval is the client's to send,
    never the server's [MQTT-3.14.2-2]."""
    if properties.session_expiry_interval is None:
        return properties
    return dataclasses.replace(properties, session_expiry_interval=None)


def packet_with_properties(packet: Packet, properties: Properties) -> Packet:
    """``packet`` carrying ``properties`` instead of its own (itself when they are the same)."""
    if properties is getattr(packet, "properties", properties):
        return packet  # unchanged, or a packet without properties (PINGRESP)
    replaced: Packet = dataclasses.replace(packet, properties=properties)  # type: ignore[arg-type]
    return replaced
