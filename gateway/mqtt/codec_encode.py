"""Encoders: one per control packet, and a PUBLISH path cheap enough for every delivery.

The encoder trusts its caller: it writes what the packet holds (any property, in any packet),
so tests can build packets a peer should refuse. It only refuses what cannot be written at all
(a string over 65535 bytes, a packet over 256 MB, AUTH before MQTT 5).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from gateway.mqtt.codec_primitives import (
    encode_binary,
    encode_string,
    encode_vbi,
    pack_u16,
)
from gateway.mqtt.codec_tables import V3_CONNACK_ENCODE
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
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
from gateway.mqtt.properties import encode_properties

_SHORT_HEADER = struct.Struct("!BBH")  # first byte, one-byte remaining length, a u16
_ACK = struct.Struct("!BBHB")  # first byte, remaining length, packet id, reason code
_MAX_U16 = 0xFFFF
_V3_FAILURE = 0x80


def _frame(first_byte: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((first_byte, size)) + body
    return bytes((first_byte,)) + encode_vbi(size) + body


def encode_publish_header(
    topic: str,
    payload_size: int,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    properties: Properties = EMPTY_PROPERTIES,
    version: int = MQTT_5,
) -> bytes:
    """Everything of a PUBLISH up to its payload: write this, then the payload itself."""
    raw_topic = topic.encode("utf-8")
    topic_size = len(raw_topic)
    if topic_size > _MAX_U16:
        raise ValueError("topic name longer than 65535 bytes")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    if qos:
        if not packet_id:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a non-zero packet identifier")
        tail = raw_topic + pack_u16(packet_id)
    else:
        tail = raw_topic
    if version == MQTT_5:
        tail += encode_properties(properties)
    remaining = 2 + len(tail) + payload_size
    if remaining < 0x80:
        return _SHORT_HEADER.pack(first, remaining, topic_size) + tail
    return bytes((first,)) + encode_vbi(remaining) + pack_u16(topic_size) + tail


def publish_header_parts(
    topic: str,
    payload_size: int,
    qos: int,
    retain: bool,
    dup: bool,
    properties: Properties,
    version: int,
) -> tuple[bytes, bytes]:
    """A QoS 1/2 PUBLISH header split around its packet identifier: (what comes before it,
    what follows it), so that a header cached per message costs one join per delivery."""
    header = encode_publish_header(topic, payload_size, qos, retain, dup, 1, properties, version)
    at = 1
    while header[at] & 0x80:  # the Remaining Length's continuation bytes
        at += 1
    at += 3 + len(topic.encode("utf-8"))  # its last byte, the topic's size and the topic
    return header[:at], header[at + 2 :]


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    properties: Properties = EMPTY_PROPERTIES,
    version: int = MQTT_5,
) -> bytes:
    header = encode_publish_header(
        topic, len(payload), qos, retain, dup, packet_id, properties, version
    )
    return header + payload


def _publish(packet: Publish, version: int) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.properties,
        version,
    )


def _connect(packet: Connect, version: int) -> bytes:
    level = packet.protocol_level
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    parts = [
        encode_string("MQIsdp" if level == MQTT_3_1 else "MQTT"),
        bytes((level, flags)),
        pack_u16(packet.keep_alive),
    ]
    if level == MQTT_5:
        parts.append(encode_properties(packet.properties))
    parts.append(encode_string(packet.client_id))
    if will is not None:
        if level == MQTT_5:
            parts.append(encode_properties(will.properties))
        parts += (encode_string(will.topic), encode_binary(will.payload))
    if packet.username is not None:
        parts.append(encode_string(packet.username))
    if packet.password is not None:
        parts.append(encode_binary(packet.password))
    return _frame(0x10, b"".join(parts))


def _connack(packet: ConnAck, version: int) -> bytes:
    flags = 0x01 if packet.session_present else 0
    if version == MQTT_5:
        body = bytes((flags, packet.reason_code)) + encode_properties(packet.properties)
        return _frame(0x20, body)
    return bytes((0x20, 2, flags, V3_CONNACK_ENCODE.get(packet.reason_code, 3)))


def _ack(first: int, packet: PubAck | PubRec | PubRel | PubComp, version: int) -> bytes:
    props = packet.properties
    if version < MQTT_5 or (packet.reason_code == 0 and props is EMPTY_PROPERTIES):
        return _SHORT_HEADER.pack(first, 2, packet.packet_id)
    if props is EMPTY_PROPERTIES:
        return _ACK.pack(first, 3, packet.packet_id, packet.reason_code)
    body = pack_u16(packet.packet_id) + bytes((packet.reason_code,)) + encode_properties(props)
    return _frame(first, body)


def _puback(packet: PubAck, version: int) -> bytes:
    return _ack(0x40, packet, version)


def _pubrec(packet: PubRec, version: int) -> bytes:
    return _ack(0x50, packet, version)


def _pubrel(packet: PubRel, version: int) -> bytes:
    return _ack(0x62, packet, version)


def _pubcomp(packet: PubComp, version: int) -> bytes:
    return _ack(0x70, packet, version)


def _subscribe(packet: Subscribe, version: int) -> bytes:
    parts = [pack_u16(packet.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(packet.properties))
    for topic_filter, options in packet.subscriptions:
        byte = options.qos
        if version == MQTT_5:
            byte |= (
                (0x04 if options.no_local else 0)
                | (0x08 if options.retain_as_published else 0)
                | (options.retain_handling << 4)
            )
        parts += (encode_string(topic_filter), bytes((byte,)))
    return _frame(0x82, b"".join(parts))


def _suback(packet: SubAck, version: int) -> bytes:
    if version == MQTT_5:
        head = pack_u16(packet.packet_id) + encode_properties(packet.properties)
        return _frame(0x90, head + bytes(packet.reason_codes))
    # 3.1.1 knows granted QoS 0-2 and one failure code.
    codes = bytes(code if code <= 2 else _V3_FAILURE for code in packet.reason_codes)
    return _frame(0x90, pack_u16(packet.packet_id) + codes)


def _unsubscribe(packet: Unsubscribe, version: int) -> bytes:
    parts = [pack_u16(packet.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(packet.properties))
    parts += [encode_string(topic_filter) for topic_filter in packet.topic_filters]
    return _frame(0xA2, b"".join(parts))


def _unsuback(packet: UnsubAck, version: int) -> bytes:
    if version < MQTT_5:
        return _SHORT_HEADER.pack(0xB0, 2, packet.packet_id)
    body = (
        pack_u16(packet.packet_id)
        + encode_properties(packet.properties)
        + bytes(packet.reason_codes)
    )
    return _frame(0xB0, body)


def _pingreq(packet: PingReq, version: int) -> bytes:
    return b"\xc0\x00"


def _pingresp(packet: PingResp, version: int) -> bytes:
    return b"\xd0\x00"


def _reason_and_properties(first: int, code: ReasonCode, props: Properties) -> bytes:
    # The shortest form the spec allows: nothing, the reason code alone, or both.
    if props is EMPTY_PROPERTIES:
        return bytes((first, 0)) if code == 0 else bytes((first, 1, code))
    return _frame(first, bytes((code,)) + encode_properties(props))


def _disconnect(packet: Disconnect, version: int) -> bytes:
    if version < MQTT_5:
        return b"\xe0\x00"
    return _reason_and_properties(0xE0, packet.reason_code, packet.properties)


def _auth(packet: Auth, version: int) -> bytes:
    if version < MQTT_5:
        raise ValueError("AUTH exists only in MQTT 5")
    return _reason_and_properties(0xF0, packet.reason_code, packet.properties)


_ENCODERS: dict[type[Packet], Callable[[Any, int], bytes]] = {
    Connect: _connect,
    ConnAck: _connack,
    Publish: _publish,
    PubAck: _puback,
    PubRec: _pubrec,
    PubRel: _pubrel,
    PubComp: _pubcomp,
    Subscribe: _subscribe,
    SubAck: _suback,
    Unsubscribe: _unsubscribe,
    UnsubAck: _unsuback,
    PingReq: _pingreq,
    PingResp: _pingresp,
    Disconnect: _disconnect,
    Auth: _auth,
}


def encode(packet: Packet, version: int) -> bytes:
    """Encode any packet for a peer speaking protocol level `version` (3, 4 or 5).

    A CONNECT is always encoded at its own `protocol_level`.
    """
    return _ENCODERS[type(packet)](packet, version)
