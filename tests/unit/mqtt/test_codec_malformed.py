"""Bad input raises the exception, and carries the reason code, the spec asks for."""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-2.1.3-1.

from __future__ import annotations

import pytest

from gateway.mqtt.codec import (
    InvalidTopic,
    MalformedPacket,
    MqttError,
    PacketDecoder,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
    encode,
)
from gateway.mqtt.codec_primitives import encode_string, encode_vbi
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    Connect,
    Packet,
    PingReq,
    PubAck,
    Publish,
    ReasonCode,
    Will,
)

R = ReasonCode


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_vbi(len(body)) + body


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return encode_vbi(len(body)) + body


def publish_v5(topic: bytes, properties: bytes = b"\x00", first: int = 0x30) -> bytes:
    return frame(first, len(topic).to_bytes(2, "big") + topic + properties + b"payload")


def decode(
    data: bytes, version: int | None = MQTT_5, max_packet_size: int = 1 << 20
) -> list[Packet]:
    return PacketDecoder(protocol_level=version, max_packet_size=max_packet_size).feed(data)


def raises(data: bytes, reason: ReasonCode, version: int | None = MQTT_5) -> MqttError:
    with pytest.raises(MqttError) as info:
        decode(data, version)
    assert info.value.reason_code == reason, info.value
    return info.value


def connect_bytes(
    name: bytes = b"MQTT", level: int = 4, flags: int = 0x02, payload: bytes | None = None
) -> bytes:
    body = len(name).to_bytes(2, "big") + name + bytes((level, flags)) + b"\x00\x3c"
    if level == 5:
        body += b"\x00"
    body += encode_string("client") if payload is None else payload
    return frame(0x10, body)


# -- fixed header and remaining length ----------------------------------------------------------


def test_remaining_length_longer_than_4_bytes() -> None:
    error = raises(b"\x30\xff\xff\xff\xff\x01", R.MALFORMED_PACKET)
    assert isinstance(error, MalformedPacket)


def test_MQTT_1_5_5_1_remaining_length_minimally_encoded() -> None:
    # PINGREQ whose remaining length 0 is spelled in two bytes.
    raises(b"\xc0\x80\x00", R.MALFORMED_PACKET, MQTT_3_1_1)


def test_remaining_length_of_4_bytes_is_fine() -> None:
    wire = encode(Publish("t", b"x" * 2_097_200), MQTT_3_1_1)
    assert wire[1:5] == encode_vbi(len(wire) - 5)
    assert len(decode(wire, MQTT_3_1_1, max_packet_size=len(wire))) == 1


def test_packet_too_large_is_refused_from_its_header() -> None:
    # Only the fixed header has arrived: the declared size alone is enough to refuse.
    header = b"\x30" + encode_vbi(10_000)
    decoder = PacketDecoder(protocol_level=MQTT_5, max_packet_size=1_000)
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(header)
    assert info.value.reason_code == R.PACKET_TOO_LARGE


def test_packet_size_limit_counts_the_fixed_header() -> None:
    wire = encode(Publish("t", b"x" * 10), MQTT_3_1_1)
    assert len(decode(wire, MQTT_3_1_1, max_packet_size=len(wire))) == 1
    with pytest.raises(PacketTooLarge):
        decode(wire, MQTT_3_1_1, max_packet_size=len(wire) - 1)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02\x00\x01",  # SUBSCRIBE with flags 0000
        b"\x83\x02\x00\x01",  # SUBSCRIBE with flags 0011
        b"\xa0\x02\x00\x01",  # UNSUBSCRIBE with flags 0000
        b"\x60\x02\x00\x01",  # PUBREL with flags 0000
        b"\x42\x02\x00\x01",  # PUBACK with flags 0010
        b"\xc1\x00",  # PINGREQ with flags 0001
        b"\xe8\x00",  # DISCONNECT with flags 1000
    ],
)
@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_2_1_3_1_reserved_flags(data: bytes, version: int) -> None:
    raises(data, R.MALFORMED_PACKET, version)


def test_reserved_packet_type_0() -> None:
    raises(b"\x00\x00", R.MALFORMED_PACKET)


def test_auth_is_reserved_before_mqtt5() -> None:
    raises(b"\xf0\x00", R.MALFORMED_PACKET, MQTT_3_1_1)


def test_extra_bytes_after_the_packet_body() -> None:
    raises(b"\xc0\x01\x00", R.MALFORMED_PACKET)
    raises(b"\x40\x03\x00\x01\x00", R.MALFORMED_PACKET, MQTT_3_1_1)


def test_field_running_past_the_packet_end() -> None:
    # The topic claims 200 bytes in a 6-byte packet.
    raises(b"\x30\x06\x00\xc8abcd", R.MALFORMED_PACKET)


def test_MQTT_3_1_0_1_first_packet_must_be_connect() -> None:
    error = raises(encode(PingReq(), MQTT_5), R.PROTOCOL_ERROR, version=None)
    assert isinstance(error, ProtocolError)


# -- strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc3",  # truncated sequence
        b"\xc0\xaf",  # over-long "/"
        b"\xed\xa0\x80",  # UTF-16 surrogate U+D800
    ],
)
def test_MQTT_1_5_4_1_ill_formed_utf8(raw: bytes) -> None:
    raises(publish_v5(b"a/" + raw), R.MALFORMED_PACKET)
    client_id = len(raw).to_bytes(2, "big") + raw
    raises(connect_bytes(payload=client_id), R.MALFORMED_PACKET, version=None)
    reason = b"\x1f" + len(raw).to_bytes(2, "big") + raw
    raises(frame(0x40, b"\x00\x01\x80" + props(reason)), R.MALFORMED_PACKET)


def test_MQTT_1_5_4_2_null_character() -> None:
    raises(publish_v5(b"a/\x00"), R.MALFORMED_PACKET)
    raises(connect_bytes(payload=b"\x00\x03a\x00b"), R.MALFORMED_PACKET, version=None)
    pair = b"\x26" + encode_string("k") + b"\x00\x01\x00"
    raises(publish_v5(b"t", props(pair)), R.MALFORMED_PACKET)


# -- CONNECT -----------------------------------------------------------------------------------


def test_MQTT_3_1_2_1_unknown_protocol_name() -> None:
    raises(connect_bytes(name=b"HTTP"), R.PROTOCOL_ERROR, version=None)


@pytest.mark.parametrize(
    ("name", "level"), [(b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 4), (b"MQTT", 0x84)]
)
def test_MQTT_3_1_2_2_unsupported_protocol_level(name: bytes, level: int) -> None:
    error = raises(connect_bytes(name, level), R.UNSUPPORTED_PROTOCOL_VERSION, version=None)
    assert isinstance(error, UnsupportedProtocolVersion)


@pytest.mark.parametrize("level", [4, 5])
def test_MQTT_3_1_2_3_connect_reserved_flag(level: int) -> None:
    raises(connect_bytes(level=level, flags=0x03), R.MALFORMED_PACKET, version=None)


@pytest.mark.parametrize("flags", [0x08, 0x10, 0x20])  # Will QoS 1, Will QoS 2, Will Retain
def test_MQTT_3_1_2_11_will_fields_without_will_flag(flags: int) -> None:
    raises(connect_bytes(flags=0x02 | flags), R.MALFORMED_PACKET, version=None)


def test_MQTT_3_1_2_14_will_qos_3() -> None:
    will = encode_string("w") + b"\x00\x00"
    data = connect_bytes(flags=0x02 | 0x04 | 0x18, payload=encode_string("c") + will)
    raises(data, R.MALFORMED_PACKET, version=None)


def test_MQTT_3_1_2_22_password_without_user_name() -> None:
    payload = encode_string("c") + b"\x00\x02pw"
    raises(connect_bytes(flags=0x42, payload=payload), R.MALFORMED_PACKET, version=None)
    # MQTT 5 allows it.
    (connect,) = decode(connect_bytes(level=5, flags=0x42, payload=payload), version=None)
    assert isinstance(connect, Connect)
    assert connect.password == b"pw"
    assert connect.username is None


@pytest.mark.parametrize("topic", ["a/+", "#", ""])
def test_will_topic_must_be_a_topic_name(topic: str) -> None:
    wire = encode(Connect("c", will=Will(topic, b"x")), MQTT_3_1_1)
    raises(wire, R.TOPIC_NAME_INVALID, version=None)


def test_connect_truncated() -> None:
    raises(frame(0x10, b"\x00\x04MQTT\x04"), R.MALFORMED_PACKET, version=None)


# -- PUBLISH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_3_3_1_4_qos_3(version: int) -> None:
    raises(frame(0x36, b"\x00\x01t\x00\x01\x00"), R.MALFORMED_PACKET, version)


def test_MQTT_3_3_1_2_dup_on_qos_0_in_mqtt5() -> None:
    raises(publish_v5(b"t", first=0x38), R.MALFORMED_PACKET)
    # 3.1.1 receivers have no such rule; the flag is kept as sent.
    (packet,) = decode(frame(0x38, b"\x00\x01tx"), MQTT_3_1_1)
    assert packet == Publish("t", b"x", dup=True)


@pytest.mark.parametrize("topic", [b"a/+/c", b"a/#", b"+", b"#"])
@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_3_3_2_2_wildcard_in_publish_topic(topic: bytes, version: int) -> None:
    body = len(topic).to_bytes(2, "big") + topic + (b"\x00" if version == MQTT_5 else b"")
    error = raises(frame(0x30, body), R.TOPIC_NAME_INVALID, version)
    assert isinstance(error, InvalidTopic)


def test_empty_topic_needs_a_topic_alias() -> None:
    raises(publish_v5(b""), R.PROTOCOL_ERROR)
    (packet,) = decode(publish_v5(b"", props(b"\x23\x00\x05")))
    assert isinstance(packet, Publish)
    assert packet.topic == ""
    assert packet.properties.topic_alias == 5
    raises(frame(0x30, b"\x00\x00x"), R.TOPIC_NAME_INVALID, MQTT_3_1_1)


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_2_2_1_3_packet_identifier_zero(version: int) -> None:
    raises(
        frame(0x32, b"\x00\x01t\x00\x00" + (b"\x00" if version == 5 else b"")),
        R.PROTOCOL_ERROR,
        version,
    )
    raises(b"\x40\x02\x00\x00", R.PROTOCOL_ERROR, version)
    raises(b"\x82\x06\x00\x00\x00\x01a\x00", R.PROTOCOL_ERROR, MQTT_3_1_1)


# -- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------


def test_MQTT_3_8_3_2_subscribe_without_filters() -> None:
    raises(b"\x82\x03\x00\x01\x00", R.PROTOCOL_ERROR)
    raises(b"\x82\x02\x00\x01", R.PROTOCOL_ERROR, MQTT_3_1_1)


def test_MQTT_3_10_3_2_unsubscribe_without_filters() -> None:
    raises(b"\xa2\x03\x00\x01\x00", R.PROTOCOL_ERROR)


def subscribe_v5(topic_filter: str, options: int) -> bytes:
    return frame(0x82, b"\x00\x01\x00" + encode_string(topic_filter) + bytes((options,)))


@pytest.mark.parametrize("options", [0x40, 0x80, 0x03])
def test_MQTT_3_8_3_5_subscription_options_reserved_bits_and_qos_3(options: int) -> None:
    raises(subscribe_v5("a", options), R.MALFORMED_PACKET)


@pytest.mark.parametrize("options", [0x04, 0x10, 0x03])
def test_MQTT_3_8_3_4_v311_subscription_options(options: int) -> None:
    data = frame(0x82, b"\x00\x01" + encode_string("a") + bytes((options,)))
    raises(data, R.MALFORMED_PACKET, MQTT_3_1_1)


def test_retain_handling_3_is_a_protocol_error() -> None:
    raises(subscribe_v5("a", 0x30), R.PROTOCOL_ERROR)


def test_MQTT_3_8_3_4_no_local_on_a_shared_subscription() -> None:
    raises(subscribe_v5("$share/g/a", 0x04), R.PROTOCOL_ERROR)
    assert len(decode(subscribe_v5("a", 0x04))) == 1


def test_subscribe_truncated_before_options() -> None:
    raises(frame(0x82, b"\x00\x01\x00" + encode_string("a")), R.MALFORMED_PACKET)


# -- reason codes ------------------------------------------------------------------------------


def test_reason_code_not_valid_for_the_packet() -> None:
    raises(b"\x40\x03\x00\x01\x92", R.PROTOCOL_ERROR)  # PUBACK cannot say "id not found"
    assert decode(b"\x62\x03\x00\x01\x92") != []  # PUBREL can
    raises(b"\xe0\x01\x01", R.PROTOCOL_ERROR)  # 0x01 is not a DISCONNECT reason
    raises(b"\x20\x03\x00\x04\x00", R.PROTOCOL_ERROR)  # 0x04 is not a CONNACK reason
    raises(b"\x20\x02\x00\x06", R.PROTOCOL_ERROR, MQTT_3_1_1)  # return code 6 is reserved
    raises(b"\x90\x03\x00\x01\x03", R.PROTOCOL_ERROR, MQTT_3_1_1)  # granted QoS 3


def test_connack_reserved_flags() -> None:
    raises(b"\x20\x02\x02\x00", R.MALFORMED_PACKET, MQTT_3_1_1)


# -- errors after good packets -----------------------------------------------------------------


def test_good_packets_before_an_error_are_returned_then_the_error_raised() -> None:
    good = encode(PubAck(1), MQTT_5)
    decoder = PacketDecoder(protocol_level=MQTT_5)
    assert decoder.feed(good + b"\x00\x00") == [PubAck(1)]
    assert isinstance(decoder.error, MalformedPacket)
    with pytest.raises(MalformedPacket):
        decoder.feed(good)


def test_decoder_stays_broken_after_raising() -> None:
    decoder = PacketDecoder(protocol_level=MQTT_5)
    with pytest.raises(MalformedPacket):
        decoder.feed(b"\x00\x00")
    with pytest.raises(MalformedPacket):
        decoder.feed(encode(PubAck(1), MQTT_5))


def test_error_text_names_the_rule() -> None:
    with pytest.raises(MalformedPacket, match=r"MQTT-3\.3\.1-4"):
        decode(frame(0x36, b"\x00\x01t\x00\x01\x00"))


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"\x20\x01\x00", MQTT_5),  # CONNACK cut after its flags
        (b"\x30\x01\x00", MQTT_5),  # PUBLISH cut inside the topic length
        (b"\x32\x04\x00\x01t\x00", MQTT_5),  # PUBLISH cut inside the packet identifier
        (b"\x30\x03\x00\x01t", MQTT_5),  # MQTT 5 PUBLISH without its property length
        (b"\x40\x01\x00", MQTT_3_1_1),  # PUBACK cut inside the packet identifier
        (b"\x40\x05\x00\x01\x00\x05\x1f", MQTT_5),  # property length past the packet end
        (b"\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c", None),  # CONNECT without a client id
        (b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x09", None),  # client id past the end
    ],
)
def test_truncated_packets(data: bytes, version: int | None) -> None:
    raises(data, R.MALFORMED_PACKET, version)


def test_acks_need_at_least_one_reason_code() -> None:
    raises(b"\x90\x03\x00\x01\x00", R.PROTOCOL_ERROR)  # SUBACK
    raises(b"\xb0\x03\x00\x01\x00", R.PROTOCOL_ERROR)  # UNSUBACK


def test_encoder_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="65535"):
        encode(Publish("t" * 65536, b""), MQTT_5)
    with pytest.raises(ValueError, match="65535"):
        encode(Connect("c" * 65536), MQTT_3_1_1)
    with pytest.raises(ValueError, match="variable byte integer"):
        encode_vbi(268_435_456)
