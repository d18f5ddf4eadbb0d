"""MQTT 5 properties: where each may appear (spec table 2-4), duplicates, legal values."""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-2.1.3-1.

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.mqtt.codec import MalformedPacket, MqttError, PacketDecoder, ProtocolError
from gateway.mqtt.codec_primitives import encode_string, encode_vbi
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_5,
    Connect,
    Packet,
    Properties,
    PubAck,
    Publish,
    ReasonCode,
    Subscribe,
)
from gateway.mqtt.properties import (
    PROPERTY_TABLE,
    decode_properties,
    encode_properties,
    without_problem_information,
)
from tests.unit.mqtt.strategies import ALLOWED


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_vbi(len(body)) + body


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return encode_vbi(len(body)) + body


S = encode_string
U32 = b"\x00\x01\x00\x00"
# One packet per place a property list can sit, built around the list `p`.
PACKETS: dict[str, Callable[[bytes], bytes]] = {
    "CONNECT": lambda p: frame(0x10, b"\x00\x04MQTT\x05\x02\x00\x3c" + p + S("c")),
    "WILL": lambda p: frame(
        0x10, b"\x00\x04MQTT\x05\x06\x00\x3c\x00" + S("c") + p + S("w") + b"\x00\x00"
    ),
    "CONNACK": lambda p: frame(0x20, b"\x00\x00" + p),
    "PUBLISH": lambda p: frame(0x30, S("t") + p + b"payload"),
    "PUBACK": lambda p: frame(0x40, b"\x00\x01\x00" + p),
    "PUBREC": lambda p: frame(0x50, b"\x00\x01\x00" + p),
    "PUBREL": lambda p: frame(0x62, b"\x00\x01\x00" + p),
    "PUBCOMP": lambda p: frame(0x70, b"\x00\x01\x00" + p),
    "SUBSCRIBE": lambda p: frame(0x82, b"\x00\x01" + p + S("a") + b"\x00"),
    "SUBACK": lambda p: frame(0x90, b"\x00\x01" + p + b"\x00"),
    "UNSUBSCRIBE": lambda p: frame(0xA2, b"\x00\x01" + p + S("a")),
    "UNSUBACK": lambda p: frame(0xB0, b"\x00\x01" + p + b"\x00"),
    "DISCONNECT": lambda p: frame(0xE0, b"\x00" + p),
    "AUTH": lambda p: frame(0xF0, b"\x00" + p),
}
# A legal encoded value for every property, by name.
SAMPLES: dict[str, bytes] = {
    "payload_format_indicator": b"\x01\x01",
    "message_expiry_interval": b"\x02" + U32,
    "content_type": b"\x03" + S("text/plain"),
    "response_topic": b"\x08" + S("reply/here"),
    "correlation_data": b"\x09\x00\x02\xff\x00",
    "subscription_identifiers": b"\x0b\x85\x01",
    "session_expiry_interval": b"\x11" + U32,
    "assigned_client_identifier": b"\x12" + S("auto-1"),
    "server_keep_alive": b"\x13\x00\x0a",
    "authentication_method": b"\x15" + S("SCRAM"),
    "authentication_data": b"\x16\x00\x01\x07",
    "request_problem_information": b"\x17\x00",
    "will_delay_interval": b"\x18" + U32,
    "request_response_information": b"\x19\x01",
    "response_information": b"\x1a" + S("resp"),
    "server_reference": b"\x1c" + S("other:1883"),
    "reason_string": b"\x1f" + S("because"),
    "receive_maximum": b"\x21\x00\x0a",
    "topic_alias_maximum": b"\x22\x00\x00",
    "topic_alias": b"\x23\x00\x01",
    "maximum_qos": b"\x24\x01",
    "retain_available": b"\x25\x00",
    "user_properties": b"\x26" + S("k") + S("v"),
    "maximum_packet_size": b"\x27" + U32,
    "wildcard_subscription_available": b"\x28\x01",
    "subscription_identifier_available": b"\x29\x00",
    "shared_subscription_available": b"\x2a\x01",
}


def decode(data: bytes) -> Packet:
    # A CONNECT teaches the decoder the level; anything else is decoded as MQTT 5.
    level = None if data[0] >> 4 == 1 else MQTT_5
    (packet,) = PacketDecoder(protocol_level=level).feed(data)
    return packet


def properties_of(packet: Packet) -> Properties:
    if isinstance(packet, Connect) and packet.will is not None:
        return packet.will.properties
    found: Properties = getattr(packet, "properties")  # noqa: B009
    return found


def test_samples_cover_the_whole_table() -> None:
    assert set(SAMPLES) == {spec.name for spec in PROPERTY_TABLE}
    assert len(PROPERTY_TABLE) == 27


@pytest.mark.parametrize("place", sorted(PACKETS))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_property_allowed_only_where_table_2_4_says(place: str, name: str) -> None:
    data = PACKETS[place](props(SAMPLES[name]))
    if name == "user_properties" or name in ALLOWED[place]:
        value = getattr(properties_of(decode(data)), name)
        assert value not in (None, ())
    else:
        with pytest.raises(MalformedPacket) as info:
            decode(data)
        assert info.value.reason_code == ReasonCode.MALFORMED_PACKET


def _allowed_pairs() -> list[tuple[str, str]]:
    pairs = []
    for name in sorted(SAMPLES):
        if name in ("user_properties", "subscription_identifiers"):
            continue
        place = next(p for p in sorted(PACKETS) if name in ALLOWED[p])
        pairs.append((place, name))
    return pairs


@pytest.mark.parametrize(("place", "name"), _allowed_pairs())
def test_property_given_twice_is_a_protocol_error(place: str, name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(PACKETS[place](props(SAMPLES[name], SAMPLES[name])))
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR


def test_MQTT_3_3_4_3_publish_may_carry_several_subscription_identifiers() -> None:
    packet = decode(PACKETS["PUBLISH"](props(b"\x0b\x02", b"\x0b\x01", b"\x0b\x02")))
    assert isinstance(packet, Publish)
    assert packet.properties.subscription_identifiers == (2, 1, 2)


def test_subscribe_carries_one_subscription_identifier() -> None:
    with pytest.raises(ProtocolError):
        decode(PACKETS["SUBSCRIBE"](props(b"\x0b\x02", b"\x0b\x03")))
    packet = decode(PACKETS["SUBSCRIBE"](props(b"\x0b\x02")))
    assert isinstance(packet, Subscribe)
    assert packet.properties.subscription_identifiers == (2,)


def test_user_properties_keep_order_and_duplicates() -> None:
    pairs = [b"\x26" + S(k) + S(v) for k, v in [("b", "1"), ("a", "2"), ("b", "1"), ("b", "3")]]
    packet = decode(PACKETS["PUBACK"](props(*pairs)))
    assert isinstance(packet, PubAck)
    assert packet.properties.user_properties == (("b", "1"), ("a", "2"), ("b", "1"), ("b", "3"))


@pytest.mark.parametrize(
    ("place", "item"),
    [
        ("PUBLISH", b"\x01\x02"),  # payload format indicator 2
        ("CONNECT", b"\x17\x02"),  # request problem information 2
        ("CONNECT", b"\x19\x05"),  # request response information 5
        ("CONNACK", b"\x24\x02"),  # maximum QoS 2 is expressed by leaving it out
        ("CONNACK", b"\x25\x02"),  # retain available 2
        ("CONNACK", b"\x28\x02"),
        ("CONNACK", b"\x29\x02"),
        ("CONNACK", b"\x2a\xff"),
        ("CONNECT", b"\x21\x00\x00"),  # receive maximum 0
        ("CONNACK", b"\x27\x00\x00\x00\x00"),  # maximum packet size 0
        ("SUBSCRIBE", b"\x0b\x00"),  # subscription identifier 0
        ("PUBLISH", b"\x0b\x00"),
    ],
)
def test_illegal_property_values_are_protocol_errors(place: str, item: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(PACKETS[place](props(item)))
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "raw_props",
    [
        props(b"\x00"),  # identifier 0 is not defined
        props(b"\x7f\x00"),  # nor is 0x7F
        props(b"\x80\x01\x00"),  # a two-byte identifier
        b"\x05\x1f\x00",  # property length runs past the packet
        props(b"\x02\x00\x00"),  # four-byte integer cut short
        props(b"\x21\x00"),  # two-byte integer cut short
        props(b"\x0b\x80\x00"),  # subscription identifier over-long
        props(b"\x0b\x80\x80\x80\x80\x01"),  # subscription identifier of 5 bytes
        props(b"\x1f\x00\x09abc"),  # string runs past the property list
        props(b"\x01"),  # byte property with no byte
    ],
)
def test_malformed_property_lists(raw_props: bytes) -> None:
    with pytest.raises(MqttError) as info:
        decode(PACKETS["PUBLISH"](raw_props))
    assert info.value.reason_code == ReasonCode.MALFORMED_PACKET


def test_every_property_round_trips_in_one_list() -> None:
    everything = Properties(
        payload_format_indicator=1,
        message_expiry_interval=0xFFFF_FFFF,
        content_type="application/json",
        response_topic="reply/to",
        correlation_data=b"\x00\xff",
        subscription_identifiers=(268_435_455,),
        session_expiry_interval=3600,
        assigned_client_identifier="auto-7",
        server_keep_alive=0,
        authentication_method="SCRAM-SHA-256",
        authentication_data=b"nonce",
        request_problem_information=False,
        will_delay_interval=10,
        request_response_information=True,
        response_information="resp/",
        server_reference="other:1883",
        reason_string="fine",
        receive_maximum=65535,
        topic_alias_maximum=10,
        topic_alias=65535,
        maximum_qos=0,
        retain_available=False,
        user_properties=(("k", "v"), ("k", "v"), ("é", "")),
        maximum_packet_size=1,
        wildcard_subscription_available=True,
        subscription_identifier_available=False,
        shared_subscription_available=True,
    )
    assert all(getattr(everything, spec.name) not in (None, ()) for spec in PROPERTY_TABLE)
    wire = encode_properties(everything)
    anywhere = (1 << 14) - 1  # every CTX_* bit: no placement rule applies
    decoded, end = decode_properties(wire, 0, len(wire), anywhere)
    assert (decoded, end) == (everything, len(wire))
    # Written in identifier order.
    assert wire[1] == 0x01


def test_without_problem_information() -> None:
    full = Properties(reason_string="r", user_properties=(("a", "b"),), session_expiry_interval=5)
    assert without_problem_information(full) == Properties(session_expiry_interval=5)
    assert without_problem_information(Properties(reason_string="r")) is EMPTY_PROPERTIES
    kept = Properties(session_expiry_interval=5)
    assert without_problem_information(kept) is kept


def test_repr_shows_only_what_is_set() -> None:
    assert repr(Properties(topic_alias=3)) == "Properties(topic_alias=3)"
    assert repr(EMPTY_PROPERTIES) == "Properties()"
