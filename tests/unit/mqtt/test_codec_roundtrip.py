"""encode -> decode is the identity, for every packet in every protocol level, however the
bytes are split."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import PacketDecoder, encode, encode_publish, encode_publish_header
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_3_1_1,
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
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
)
from tests.unit.mqtt.strategies import PACKET_KINDS, any_packet, connects, packets_of

VERSIONS = (MQTT_3_1, MQTT_3_1_1, MQTT_5)
# 42 (type, level) pairs: modest example counts keep the suite at a few seconds.
PER_TYPE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STREAMS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_all(data: bytes, version: int | None) -> list[Packet]:
    decoder = PacketDecoder(protocol_level=version)
    packets = decoder.feed(data)
    assert decoder.error is None
    return packets


CASES = [
    (kind, version)
    for kind in PACKET_KINDS
    for version in VERSIONS
    if kind != "Auth" or version == MQTT_5
]


@pytest.mark.parametrize(("kind", "version"), CASES)
@PER_TYPE
@given(data=st.data())
def test_round_trip(kind: str, version: int, data: st.DataObject) -> None:
    packet = data.draw(packets_of(kind, version))
    wire = encode(packet, version)
    assert decode_all(wire, version) == [packet]


@pytest.mark.parametrize("version", VERSIONS)
@STREAMS
@given(data=st.data())
def test_connect_teaches_the_decoder_its_version(version: int, data: st.DataObject) -> None:
    connect = data.draw(connects(version))
    after = data.draw(st.lists(any_packet(version), max_size=4))
    wire = encode(connect, version) + b"".join(encode(p, version) for p in after)
    decoder = PacketDecoder()
    assert decoder.feed(wire) == [connect, *after]
    assert decoder.protocol_level == version


def feed_in_chunks(wire: bytes, cuts: list[int], version: int) -> list[Packet]:
    decoder = PacketDecoder(protocol_level=version)
    out: list[Packet] = []
    start = 0
    for cut in [*sorted(cuts), len(wire)]:
        out += decoder.feed(wire[start:cut])
        start = cut
    return out


@pytest.mark.parametrize("version", VERSIONS)
@STREAMS
@given(data=st.data())
def test_random_chunking_gives_the_same_packets(version: int, data: st.DataObject) -> None:
    packets = data.draw(st.lists(any_packet(version), min_size=1, max_size=6))
    wire = b"".join(encode(p, version) for p in packets)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    assert feed_in_chunks(wire, cuts, version) == packets


def _one_of_each(version: int) -> list[Packet]:
    props = EMPTY_PROPERTIES
    if version == MQTT_5:
        props = Properties(reason_string="why", user_properties=(("k", "v"), ("k", "w")))
    big_payload = bytes(range(256)) * 3  # a multi-byte remaining length
    packets: list[Packet] = [
        Connect(
            "client-1",
            protocol_level=version,
            keep_alive=30,
            username="u",
            password=b"p",
            will=Will("last/will", b"gone", 1, True),
        ),
        ConnAck(True),
        Publish("plant/7/temp", b"21.5"),
        Publish("plant/7/temp", big_payload, 2, True, True, 513),
        PubAck(1),
        PubRec(2, properties=props),
        PubRel(3),
        PubComp(4),
        Subscribe(5, (("plant/+/temp", SubscriptionOptions(1)), ("#", SubscriptionOptions(2)))),
        SubAck(5, (ReasonCode.GRANTED_QOS_1, ReasonCode.UNSPECIFIED_ERROR), props),
        Unsubscribe(6, ("plant/+/temp",)),
        UnsubAck(6, (ReasonCode.SUCCESS,) if version == MQTT_5 else ()),
        PingReq(),
        PingResp(),
        Disconnect(),
    ]
    if version == MQTT_5:
        packets += [Auth(ReasonCode.CONTINUE_AUTHENTICATION, Properties(authentication_method="x"))]
    return packets


@pytest.mark.parametrize("version", VERSIONS)
def test_split_at_every_offset(version: int) -> None:
    packets = _one_of_each(version)
    wire = b"".join(encode(p, version) for p in packets)
    for cut in range(len(wire) + 1):
        assert feed_in_chunks(wire, [cut], version) == packets, cut


@pytest.mark.parametrize("version", VERSIONS)
def test_one_byte_at_a_time(version: int) -> None:
    packets = _one_of_each(version)
    wire = b"".join(encode(p, version) for p in packets)
    assert feed_in_chunks(wire, list(range(len(wire))), version) == packets


def test_feed_accepts_bytearray_and_memoryview() -> None:
    wire = encode(Publish("a/b", b"x"), MQTT_3_1_1)
    decoder = PacketDecoder(protocol_level=MQTT_3_1_1)
    assert decoder.feed(bytearray(wire[:3])) == []
    assert decoder.feed(memoryview(wire)[3:]) == [Publish("a/b", b"x")]
    assert decoder.feed(memoryview(wire)) == [Publish("a/b", b"x")]


def test_decoded_payload_is_bytes() -> None:
    (packet,) = decode_all(encode(Publish("t", b"\x00\x01"), MQTT_5), MQTT_5)
    assert isinstance(packet, Publish)
    assert type(packet.payload) is bytes


# -- exact wire forms: the spec's examples and the shortest forms ----------------------------


def test_pingreq_and_pingresp_wire() -> None:
    assert encode(PingReq(), MQTT_3_1_1) == b"\xc0\x00"
    assert encode(PingResp(), MQTT_5) == b"\xd0\x00"


def test_connect_protocol_names() -> None:
    assert encode(Connect("c", protocol_level=MQTT_3_1), MQTT_3_1)[2:11] == b"\x00\x06MQIsdp\x03"
    assert encode(Connect("c", protocol_level=MQTT_3_1_1), MQTT_3_1_1)[2:9] == b"\x00\x04MQTT\x04"
    assert encode(Connect("c", protocol_level=MQTT_5), MQTT_5)[2:9] == b"\x00\x04MQTT\x05"


def test_v5_acks_use_the_short_form_for_success_without_properties() -> None:
    assert encode(PubAck(7), MQTT_5) == b"\x40\x02\x00\x07"
    assert encode(PubRel(7), MQTT_5) == b"\x62\x02\x00\x07"
    assert encode(PubAck(7, ReasonCode.NO_MATCHING_SUBSCRIBERS), MQTT_5) == b"\x40\x03\x00\x07\x10"
    assert encode(Disconnect(), MQTT_5) == b"\xe0\x00"
    assert encode(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT), MQTT_5) == b"\xe0\x01\x8d"


def test_v3_acks_drop_mqtt5_fields() -> None:
    assert encode(PubAck(7, ReasonCode.QUOTA_EXCEEDED), MQTT_3_1_1) == b"\x40\x02\x00\x07"
    assert encode(Disconnect(ReasonCode.SERVER_BUSY), MQTT_3_1_1) == b"\xe0\x00"
    assert encode(UnsubAck(7, (ReasonCode.SUCCESS,)), MQTT_3_1_1) == b"\xb0\x02\x00\x07"


def test_v3_connack_maps_reason_codes_to_return_codes() -> None:
    def code(reason: ReasonCode) -> int:
        return encode(ConnAck(False, reason), MQTT_3_1_1)[3]

    assert code(ReasonCode.SUCCESS) == 0
    assert code(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION) == 1
    assert code(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID) == 2
    assert code(ReasonCode.SERVER_UNAVAILABLE) == 3
    assert code(ReasonCode.SERVER_BUSY) == 3
    assert code(ReasonCode.BAD_USER_NAME_OR_PASSWORD) == 4
    assert code(ReasonCode.NOT_AUTHORIZED) == 5
    assert encode(ConnAck(True), MQTT_3_1_1) == b"\x20\x02\x01\x00"


def test_v3_suback_failure_is_0x80() -> None:
    wire = encode(SubAck(1, (ReasonCode.GRANTED_QOS_2, ReasonCode.NOT_AUTHORIZED)), MQTT_3_1_1)
    assert wire == b"\x90\x04\x00\x01\x02\x80"


def test_publish_wire_matches_the_spec_layout() -> None:
    # Fixed header 0x3B: PUBLISH, DUP, QoS 1, RETAIN; then topic, packet id, no properties.
    wire = encode_publish("a/b", b"hi", 1, True, True, 10, EMPTY_PROPERTIES, MQTT_5)
    assert wire == b"\x3b\x0a\x00\x03a/b\x00\x0a\x00hi"
    assert encode_publish("a/b", b"hi", version=MQTT_3_1_1) == b"\x30\x07\x00\x03a/bhi"


def test_publish_header_plus_payload_is_the_packet() -> None:
    payload = b"x" * 200
    props = Properties(content_type="text/plain", subscription_identifiers=(1, 300))
    header = encode_publish_header("t/1", len(payload), 1, False, False, 9, props, MQTT_5)
    packet = Publish("t/1", payload, 1, packet_id=9, properties=props)
    assert header + payload == encode(packet, MQTT_5)
    assert decode_all(header + payload, MQTT_5) == [packet]


def test_publish_needs_a_packet_id_above_qos_0() -> None:
    with pytest.raises(ValueError, match="packet identifier"):
        encode_publish("t", b"", qos=1)


def test_properties_encoding_is_cached_and_shared() -> None:
    props = Properties(user_properties=(("a", "b"),))
    first = encode(Publish("t", b"", properties=props), MQTT_5)
    assert props.wire_cache is not None
    assert encode(Publish("t", b"", properties=props), MQTT_5) == first
    # The cache takes no part in equality.
    assert props == Properties(user_properties=(("a", "b"),))


@pytest.mark.parametrize(
    ("remaining", "length_bytes"),
    [(3, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_151, 3), (2_097_152, 4)],
)
def test_remaining_length_boundaries(remaining: int, length_bytes: int) -> None:
    # Topic "t" takes 3 bytes of the remaining length; the payload takes the rest.
    packet = Publish("t", b"\xab" * (remaining - 3))
    wire = encode(packet, MQTT_3_1_1)
    assert len(wire) == 1 + length_bytes + remaining
    assert decode_all(wire, MQTT_3_1_1) == [packet]


def test_auth_cannot_be_encoded_before_mqtt5() -> None:
    with pytest.raises(ValueError, match="MQTT 5"):
        encode(Auth(), MQTT_3_1_1)
