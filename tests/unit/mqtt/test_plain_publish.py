"""`PacketDecoder.feed_plain` and `MqttConnection.plain_publish`: the ingest fast path yields
(topic, payload) for a plain QoS 0 PUBLISH and must otherwise mean exactly what `feed` does."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import MalformedPacket, PacketDecoder, PlainPublish, encode
from gateway.mqtt.connection import Event, MqttConnection
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Packet,
    Properties,
    Publish,
    ReasonCode,
)
from tests.unit.mqtt.connection_helpers import connect_packet
from tests.unit.mqtt.strategies import packets_of

VERSIONS = (MQTT_3_1_1, MQTT_5)
STREAMS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_publish(item: Packet | PlainPublish | Event) -> object:
    if isinstance(item, tuple):
        return Publish(item[0], item[1], 0, False, False, None, EMPTY_PROPERTIES)
    return item


def plain(topic: str, payload: bytes) -> Publish:
    return Publish(topic, payload, 0, False, False, None, EMPTY_PROPERTIES)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_repeated_plain_qos0_publish_comes_out_as_a_tuple(version: int) -> None:
    wire = encode(plain("plain/t1", b"one"), version) + encode(plain("plain/t1", b"two"), version)
    got = PacketDecoder(protocol_level=version).feed_plain(wire)
    # The first sight of a topic goes the full way (and checks it); the second is cached.
    assert got[1] == ("plain/t1", b"two")
    assert [as_publish(item) for item in got] == [
        plain("plain/t1", b"one"),
        plain("plain/t1", b"two"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_anything_but_a_plain_qos0_publish_stays_a_publish(version: int) -> None:
    others = [
        Publish("plain/t2", b"r", 0, True, False, None, EMPTY_PROPERTIES),
        Publish("plain/t2", b"q", 1, False, False, 7, EMPTY_PROPERTIES),
        Publish("plain/t2", b"d", 1, False, True, 8, EMPTY_PROPERTIES),
    ]
    if version == MQTT_5:
        others.append(
            Publish("plain/t2", b"p", 0, False, False, None, Properties(content_type="x"))
        )
    wire = encode(plain("plain/t2", b"warm"), version) + b"".join(
        encode(p, version) for p in others
    )
    got = PacketDecoder(protocol_level=version).feed_plain(wire)
    assert got[1:] == others


def test_a_bad_packet_after_a_cached_topic_is_still_refused() -> None:
    decoder = PacketDecoder(protocol_level=MQTT_3_1_1)
    assert decoder.feed_plain(encode(plain("plain/t3", b"x"), MQTT_3_1_1))
    # Topic length 0x0008 ("plain/t3") but the packet ends after 4 bytes of it.
    with pytest.raises(MalformedPacket):
        decoder.feed_plain(b"\x30\x06\x00\x08plai")


@STREAMS
@given(st.data())
def test_feed_plain_means_what_feed_means_however_the_bytes_are_split(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(VERSIONS))
    packets = data.draw(st.lists(packets_of("Publish", version), min_size=1, max_size=6))
    packets += packets  # every topic twice: the second sight can take the fast path
    wire = b"".join(encode(p, version) for p in packets)
    cut = data.draw(st.integers(0, len(wire)))
    decoder = PacketDecoder(protocol_level=version)
    got = decoder.feed_plain(wire[:cut]) + decoder.feed_plain(wire[cut:])
    assert [as_publish(item) for item in got] == packets


@pytest.mark.parametrize("version", VERSIONS)
def test_connection_yields_the_same_events_with_plain_publish_on(version: int) -> None:
    # CONNECT and a PUBLISH in one read: before CONNACK a tuple becomes a Publish again, so the
    # state table still judges it.
    wire = encode(connect_packet(version), version) + encode(plain("plain/t4", b"a"), version)
    seen = []
    for fast in (False, True):
        conn = MqttConnection(max_packet_size=1 << 20)
        conn.plain_publish = fast
        seen.append(([as_publish(e) for e in conn.receive_data(wire, 0.0)], conn.state))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_once_connected_a_plain_publish_is_a_tuple_event(version: int) -> None:
    conn = MqttConnection(max_packet_size=1 << 20)
    conn.plain_publish = True
    conn.receive_data(encode(connect_packet(version), version), 0.0)
    conn.send(ConnAck(False, ReasonCode.SUCCESS))
    topic = f"plain/t5/{version}"  # the topic cache is process-wide: a topic new here
    later = encode(plain(topic, b"b"), version) + encode(plain(topic, b"c"), version)
    assert conn.receive_data(later, 1.0) == [plain(topic, b"b"), (topic, b"c")]
