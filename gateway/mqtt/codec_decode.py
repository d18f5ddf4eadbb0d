"""Decoders for each control packet's variable header and payload.

Each takes (flags, data, pos, end, version): the fixed-header flag nibble, the bytes holding
the packet, where its variable header starts and where the packet ends, and the protocol level
(3, 4 or 5). The fixed header itself, and the flag nibble of every type but PUBLISH, are checked
by `PacketDecoder` before these run.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.mqtt.codec_errors import (
    InvalidTopic,
    MalformedPacket,
    ProtocolError,
    UnsupportedProtocolVersion,
)
from gateway.mqtt.codec_primitives import decode_binary, decode_string, decode_u16
from gateway.mqtt.codec_tables import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    UNSUBACK_CODES,
    V3_CONNACK_DECODE,
    V3_SUBACK_CODES,
)
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    PING_REQ,
    PING_RESP,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
    make_publish,
)
from gateway.mqtt.properties import (
    CTX_AUTH,
    CTX_CONNACK,
    CTX_CONNECT,
    CTX_DISCONNECT,
    CTX_PUBACK,
    CTX_PUBCOMP,
    CTX_PUBLISH,
    CTX_PUBREC,
    CTX_PUBREL,
    CTX_SUBACK,
    CTX_SUBSCRIBE,
    CTX_UNSUBACK,
    CTX_UNSUBSCRIBE,
    CTX_WILL,
    decode_properties,
)

Decoder = Callable[[int, bytes, int, int, int], Packet]

_REASON: dict[int, ReasonCode] = {int(code): code for code in ReasonCode}
_PROTOCOL_NAMES = {b"MQTT": (MQTT_3_1_1, MQTT_5), b"MQIsdp": (MQTT_3_1,)}
_SHARE_PREFIX = "$share/"
_PLUS = ord("+")
_HASH = ord("#")


def _reason(value: int, allowed: frozenset[int], packet: str) -> ReasonCode:
    if value not in allowed:
        raise ProtocolError(f"reason code 0x{value:02X} is not valid in {packet}")
    return _REASON[value]


def _packet_id(data: bytes, pos: int, end: int) -> tuple[int, int]:
    packet_id, pos = decode_u16(data, pos, end)
    if packet_id == 0:
        raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]")
    return packet_id, pos


def _expect_end(pos: int, end: int) -> None:
    if pos != end:
        raise MalformedPacket("unexpected bytes at the end of the packet")


def decode_connect(flags: int, data: bytes, pos: int, end: int, version: int) -> Connect:
    connect = decode_common_connect(data, pos, end)
    if connect is not None:
        return connect
    return decode_connect_full(data, pos, end)


# The commonest CONNECTs (issue 7, S7: the connect rate) start with one of these: protocol
# name "MQTT", level 4 or 5, then the flags. Will, reserved bit, 3.1 are the full decoder's.
_COMMON_HEADS = {b"\x00\x04MQTT\x04": MQTT_3_1_1, b"\x00\x04MQTT\x05": MQTT_5}
# Connect flags the common path takes: Clean Start, Password, User Name.
_COMMON_FLAGS = 0xC2
_new = object.__new__
_connect_fields = [
    Connect.__dict__[name].__set__
    for name in ("client_id", "protocol_level", "clean_start", "keep_alive", "username",
                 "password", "will", "properties")
]  # fmt: skip
(_set_client_id, _set_level, _set_clean_start, _set_keep_alive, _set_username, _set_password,
 _set_will, _set_properties) = _connect_fields  # fmt: skip


def _field_stop(data: bytes, cursor: int, end: int) -> int:
    """Where the two-byte-length field at `cursor` stops, or -1 if it runs past `end`."""
    if cursor + 2 > end:
        return -1
    stop = cursor + 2 + ((data[cursor] << 8) | data[cursor + 1])
    return stop if stop <= end else -1


def _common_text(data: bytes, cursor: int, end: int) -> tuple[str, int] | None:
    """The UTF-8 string field at `cursor` and where it stops; None if it is short, holds a
    NUL or is not UTF-8 (the full decoder then says which)."""
    stop = _field_stop(data, cursor, end)
    if stop < 0:
        return None
    raw = data[cursor + 2 : stop]
    if 0 in raw:
        return None
    try:
        return raw.decode("utf-8"), stop
    except UnicodeDecodeError:
        return None


def decode_common_connect(data: bytes, pos: int, end: int) -> Connect | None:
    """The CONNECT at `data[pos:end]` if it is a common one: "MQTT" level 4 or 5, no will,
    no MQTT 5 properties, a client id and optionally a user name and password, all well
    formed. None for anything else (valid or not): `decode_connect_full` then decides.
    Equal to what `decode_connect_full` returns whenever it returns a packet (tested with
    it as the oracle)."""
    level = _COMMON_HEADS.get(data[pos : pos + 7])
    if level is None or pos + 12 > end:
        return None
    connect_flags = data[pos + 7]
    if connect_flags & ~_COMMON_FLAGS & 0xFF:
        return None
    cursor = pos + 10  # after the flags and the keep-alive
    if level == MQTT_5:
        if data[cursor]:
            return None  # properties: the full decoder
        cursor += 1
    elif connect_flags & 0xC0 == 0x40:
        return None  # 3.1.1 password without a user name: the full decoder's error
    # Strings as (length, bytes): any short or bad one leaves it to the full decoder.
    field = _common_text(data, cursor, end)
    if field is None:
        return None
    client_id, stop = field
    username: str | None = None
    password: bytes | None = None
    if connect_flags & 0x80:
        field = _common_text(data, stop, end)
        if field is None:
            return None
        username, stop = field
    if connect_flags & 0x40:
        cursor = stop
        stop = _field_stop(data, cursor, end)
        if stop < 0:
            return None
        password = data[cursor + 2 : stop]
    if stop != end:
        return None
    connect: Connect = _new(Connect)
    _set_client_id(connect, client_id)
    _set_level(connect, level)
    _set_clean_start(connect, connect_flags & 0x02 == 0x02)
    _set_keep_alive(connect, (data[pos + 8] << 8) | data[pos + 9])
    _set_username(connect, username)
    _set_password(connect, password)
    _set_will(connect, None)
    _set_properties(connect, EMPTY_PROPERTIES)
    return connect


def decode_connect_full(data: bytes, pos: int, end: int) -> Connect:
    """Any CONNECT, every check."""
    name, pos = decode_binary(data, pos, end)
    levels = _PROTOCOL_NAMES.get(name)
    if levels is None:
        raise ProtocolError(f"unknown protocol name {name!r} [MQTT-3.1.2-1]")
    if pos + 4 > end:
        raise MalformedPacket("CONNECT variable header is truncated")
    level = data[pos]
    connect_flags = data[pos + 1]
    keep_alive = (data[pos + 2] << 8) | data[pos + 3]
    pos += 4
    if level not in levels:
        raise UnsupportedProtocolVersion(f"protocol {name!r} level {level} is not supported")
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set [MQTT-3.1.2-3]")
    has_will = connect_flags & 0x04
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    has_password = connect_flags & 0x40
    has_username = connect_flags & 0x80
    if will_qos == 3:
        raise MalformedPacket("Will QoS 3 [MQTT-3.1.2-14]")
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("Will QoS or Will Retain set without a Will [MQTT-3.1.2-11]")
    if level < MQTT_5 and has_password and not has_username:
        raise MalformedPacket("password without a user name (3.1.1: [MQTT-3.1.2-22])")
    properties = EMPTY_PROPERTIES
    if level == MQTT_5:
        properties, pos = decode_properties(data, pos, end, CTX_CONNECT)
    client_id, pos = decode_string(data, pos, end)
    will = None
    if has_will:
        will_properties = EMPTY_PROPERTIES
        if level == MQTT_5:
            will_properties, pos = decode_properties(data, pos, end, CTX_WILL)
        will_topic, pos = decode_string(data, pos, end)
        if not will_topic or "+" in will_topic or "#" in will_topic:
            raise InvalidTopic(f"Will Topic {will_topic!r} is not a valid topic name")
        will_payload, pos = decode_binary(data, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = None
    if has_username:
        username, pos = decode_string(data, pos, end)
    password = None
    if has_password:
        password, pos = decode_binary(data, pos, end)
    _expect_end(pos, end)
    return Connect(
        client_id=client_id,
        protocol_level=level,
        clean_start=bool(connect_flags & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will=will,
        properties=properties,
    )


def decode_connack(flags: int, data: bytes, pos: int, end: int, version: int) -> ConnAck:
    if pos + 2 > end:
        raise MalformedPacket("CONNACK is truncated")
    ack_flags = data[pos]
    code = data[pos + 1]
    pos += 2
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flags are set [MQTT-3.2.2-1]")
    properties = EMPTY_PROPERTIES
    if version == MQTT_5:
        reason = _reason(code, CONNACK_CODES, "CONNACK")
        properties, pos = decode_properties(data, pos, end, CTX_CONNACK)
    else:
        found = V3_CONNACK_DECODE.get(code)
        if found is None:
            raise ProtocolError(f"CONNACK return code {code} is reserved")
        reason = found
    _expect_end(pos, end)
    return ConnAck(bool(ack_flags), reason, properties)


# Raw topic bytes -> the checked topic name; bounded, cleared when full.
TOPIC_NAMES: dict[bytes, str] = {}
TOPIC_NAMES_MAX = 4096


def _topic_name(raw_topic: bytes) -> str:
    """Check and decode a PUBLISH topic name, remembering a valid non-empty one."""
    # `int in bytes` is a memchr, far cheaper than a bytes needle or any general validator.
    if _PLUS in raw_topic or _HASH in raw_topic:
        raise InvalidTopic("wildcard in a PUBLISH topic name [MQTT-3.3.2-2]")
    if 0 in raw_topic:
        raise MalformedPacket("topic name contains U+0000 [MQTT-1.5.4-2]")
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("topic name is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
    if topic:
        if len(TOPIC_NAMES) >= TOPIC_NAMES_MAX:
            TOPIC_NAMES.clear()
        TOPIC_NAMES[raw_topic] = topic
    return topic


def decode_publish(flags: int, data: bytes, pos: int, end: int, version: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    dup = flags & 0x08
    if dup and not qos and version == MQTT_5:
        raise MalformedPacket("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
    if pos + 2 > end:
        raise MalformedPacket("PUBLISH is truncated")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("topic name runs past the end of the packet")
    raw_topic = data[pos + 2 : stop]
    pos = stop
    # Publishers repeat topics: a topic name seen before was checked and decoded then.
    topic = TOPIC_NAMES.get(raw_topic)
    if topic is None:
        topic = _topic_name(raw_topic)
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("PUBLISH ends inside the packet identifier")
        packet_id = (data[pos] << 8) | data[pos + 1]
        if not packet_id:
            raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]")
        pos += 2
    properties = EMPTY_PROPERTIES
    if version == MQTT_5:
        if pos < end and data[pos] == 0:
            pos += 1
        else:
            properties, pos = decode_properties(data, pos, end, CTX_PUBLISH)
        if not topic and properties.topic_alias is None:
            raise ProtocolError("empty topic name without a Topic Alias")
    elif not topic:
        raise InvalidTopic("empty topic name [MQTT-4.7.3-1]")
    return make_publish(
        topic, data[pos:end], qos, bool(flags & 0x01), bool(dup), packet_id, properties
    )


def _decode_ack(
    data: bytes, pos: int, end: int, version: int, allowed: frozenset[int], context: int, name: str
) -> tuple[int, ReasonCode, Properties]:
    packet_id, pos = _packet_id(data, pos, end)
    if version < MQTT_5 or pos == end:
        # 3.1.1, or the MQTT 5 short form meaning Success with no properties.
        _expect_end(pos, end)
        return packet_id, ReasonCode.SUCCESS, EMPTY_PROPERTIES
    reason = _reason(data[pos], allowed, name)
    pos += 1
    properties = EMPTY_PROPERTIES
    if pos < end:
        properties, pos = decode_properties(data, pos, end, context)
    _expect_end(pos, end)
    return packet_id, reason, properties


def decode_puback(flags: int, data: bytes, pos: int, end: int, version: int) -> PubAck:
    return PubAck(*_decode_ack(data, pos, end, version, PUBACK_CODES, CTX_PUBACK, "PUBACK"))


def decode_pubrec(flags: int, data: bytes, pos: int, end: int, version: int) -> PubRec:
    return PubRec(*_decode_ack(data, pos, end, version, PUBACK_CODES, CTX_PUBREC, "PUBREC"))


def decode_pubrel(flags: int, data: bytes, pos: int, end: int, version: int) -> PubRel:
    return PubRel(*_decode_ack(data, pos, end, version, PUBREL_CODES, CTX_PUBREL, "PUBREL"))


def decode_pubcomp(flags: int, data: bytes, pos: int, end: int, version: int) -> PubComp:
    return PubComp(*_decode_ack(data, pos, end, version, PUBREL_CODES, CTX_PUBCOMP, "PUBCOMP"))


def _subscription_options(byte: int, topic_filter: str, version: int) -> SubscriptionOptions:
    qos = byte & 0x03
    if qos == 3:
        raise MalformedPacket("SUBSCRIBE requests QoS 3")
    if version < MQTT_5:
        if byte & 0xFC:
            raise MalformedPacket("SUBSCRIBE reserved option bits are set (3.1.1: [MQTT-3.8.3-4])")
        return SubscriptionOptions(qos)
    if byte & 0xC0:
        raise MalformedPacket("SUBSCRIBE reserved option bits are set [MQTT-3.8.3-5]")
    retain_handling = (byte >> 4) & 0x03
    if retain_handling == 3:
        raise ProtocolError("Retain Handling 3")
    no_local = bool(byte & 0x04)
    if no_local and topic_filter.startswith(_SHARE_PREFIX):
        raise ProtocolError("No Local on a shared subscription [MQTT-3.8.3-4]")
    return SubscriptionOptions(qos, no_local, bool(byte & 0x08), retain_handling)


def decode_subscribe(flags: int, data: bytes, pos: int, end: int, version: int) -> Subscribe:
    packet_id, pos = _packet_id(data, pos, end)
    properties = EMPTY_PROPERTIES
    if version == MQTT_5:
        properties, pos = decode_properties(data, pos, end, CTX_SUBSCRIBE)
    subscriptions: list[tuple[str, SubscriptionOptions]] = []
    while pos < end:
        topic_filter, pos = decode_string(data, pos, end)
        if pos >= end:
            raise MalformedPacket("SUBSCRIBE ends before the subscription options")
        options = _subscription_options(data[pos], topic_filter, version)
        pos += 1
        subscriptions.append((topic_filter, options))
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE without a topic filter [MQTT-3.8.3-2]")
    return Subscribe(packet_id, tuple(subscriptions), properties)


def decode_suback(flags: int, data: bytes, pos: int, end: int, version: int) -> SubAck:
    packet_id, pos = _packet_id(data, pos, end)
    properties = EMPTY_PROPERTIES
    allowed = V3_SUBACK_CODES
    if version == MQTT_5:
        properties, pos = decode_properties(data, pos, end, CTX_SUBACK)
        allowed = SUBACK_CODES
    codes = tuple(_reason(code, allowed, "SUBACK") for code in data[pos:end])
    if not codes:
        raise ProtocolError("SUBACK without a reason code")
    return SubAck(packet_id, codes, properties)


def decode_unsubscribe(flags: int, data: bytes, pos: int, end: int, version: int) -> Unsubscribe:
    packet_id, pos = _packet_id(data, pos, end)
    properties = EMPTY_PROPERTIES
    if version == MQTT_5:
        properties, pos = decode_properties(data, pos, end, CTX_UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = decode_string(data, pos, end)
        filters.append(topic_filter)
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, tuple(filters), properties)


def decode_unsuback(flags: int, data: bytes, pos: int, end: int, version: int) -> UnsubAck:
    packet_id, pos = _packet_id(data, pos, end)
    if version < MQTT_5:
        _expect_end(pos, end)
        return UnsubAck(packet_id)
    properties, pos = decode_properties(data, pos, end, CTX_UNSUBACK)
    codes = tuple(_reason(code, UNSUBACK_CODES, "UNSUBACK") for code in data[pos:end])
    if not codes:
        raise ProtocolError("UNSUBACK without a reason code")
    return UnsubAck(packet_id, codes, properties)


def decode_pingreq(flags: int, data: bytes, pos: int, end: int, version: int) -> Packet:
    _expect_end(pos, end)
    return PING_REQ


def decode_pingresp(flags: int, data: bytes, pos: int, end: int, version: int) -> Packet:
    _expect_end(pos, end)
    return PING_RESP


def _decode_reason_and_properties(
    data: bytes, pos: int, end: int, allowed: frozenset[int], context: int, name: str
) -> tuple[ReasonCode, Properties]:
    # Remaining Length 0 means Success with no properties; 1 means a reason code alone.
    if pos == end:
        return ReasonCode.SUCCESS, EMPTY_PROPERTIES
    reason = _reason(data[pos], allowed, name)
    pos += 1
    properties = EMPTY_PROPERTIES
    if pos < end:
        properties, pos = decode_properties(data, pos, end, context)
    _expect_end(pos, end)
    return reason, properties


def decode_disconnect(flags: int, data: bytes, pos: int, end: int, version: int) -> Disconnect:
    if version < MQTT_5:
        _expect_end(pos, end)
        return Disconnect()
    return Disconnect(
        *_decode_reason_and_properties(
            data, pos, end, DISCONNECT_CODES, CTX_DISCONNECT, "DISCONNECT"
        )
    )


def decode_auth(flags: int, data: bytes, pos: int, end: int, version: int) -> Auth:
    if version < MQTT_5:
        raise MalformedPacket("packet type 15 is reserved before MQTT 5")
    return Auth(*_decode_reason_and_properties(data, pos, end, AUTH_CODES, CTX_AUTH, "AUTH"))


def _decode_reserved(flags: int, data: bytes, pos: int, end: int, version: int) -> Packet:
    raise MalformedPacket("packet type 0 is reserved")


# Indexed by packet type (the high nibble of the first byte).
DECODERS: tuple[Decoder, ...] = (
    _decode_reserved,
    decode_connect,
    decode_connack,
    decode_publish,
    decode_puback,
    decode_pubrec,
    decode_pubrel,
    decode_pubcomp,
    decode_subscribe,
    decode_suback,
    decode_unsubscribe,
    decode_unsuback,
    decode_pingreq,
    decode_pingresp,
    decode_disconnect,
    decode_auth,
)
