"""`PacketDecoder.feed_qos0` and `MqttConnection.receive_qos0`: a read that is exactly one plain
QoS 0 PUBLISH skips the general decoder (issue 7, S6). What they accept must mean what
`feed_plain` / `receive_data` mean, and what they refuse must be left untouched for them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import MqttError, PacketDecoder, encode
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    Packet,
    PingReq,
    Properties,
    Publish,
)
from tests.unit.mqtt.connection_helpers import connect_packet
from tests.unit.mqtt.strategies import packets_of
from tests.unit.mqtt.test_plain_publish import as_packet, connected, plain

VERSIONS = (MQTT_3_1_1, MQTT_5)
READS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOPICS = ("single/a", "single/b/" + "x" * 200)  # the second needs a two-byte length


def seen(version: int, topic: str) -> None:
    """Put `topic` in the process-wide topic cache, as a first PUBLISH to it does."""
    PacketDecoder(protocol_level=version).feed_plain(encode(plain(topic, b""), version))


def outcome(decoder: PacketDecoder, data: bytes) -> tuple[object, ...]:
    """What `feed_plain` makes of `data`: the packets its items stand for (a topic name the
    cache learns meanwhile turns an object into a `Plain` item), or the error it raised."""
    try:
        items = decoder.feed_plain(data)
    except MqttError as exc:
        return ("raised", exc.reason_code)
    return ("decoded", [as_packet(i) for i in items], decoder.error and decoder.error.reason_code)


def reads(version: int) -> st.SearchStrategy[bytes]:
    """One plain QoS 0 PUBLISH (payload sizes around the one- and two-byte remaining lengths),
    damaged or not; other packets; and two packets in one read."""
    single = st.builds(
        lambda topic, size: encode(plain(topic, bytes(size)), version),
        st.sampled_from(TOPICS),
        st.sampled_from([0, 1, 64, 100, 125, 126, 127, 128, 300, 16_000, 16_500]),
    )

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        wire = bytearray(draw(single))
        at = draw(st.integers(0, min(len(wire) - 1, 40)))
        wire[at] = draw(st.integers(0, 255))
        return bytes(wire)

    others: st.SearchStrategy[Packet] = st.one_of(
        packets_of("Publish", version), packets_of("PubAck", version), st.just(PingReq())
    )
    return st.one_of(
        single,
        damaged(),
        single.map(lambda wire: wire[:-1]),  # cut short
        st.tuples(single, single).map(b"".join),  # pipelined
        others.map(lambda packet: encode(packet, version)),
    )


def draw_read(data: st.DataObject) -> tuple[int, bytes]:
    """A protocol level, with `TOPICS` in the topic cache, and one read for it (`reads`)."""
    version = data.draw(st.sampled_from(VERSIONS))
    for topic in TOPICS:
        seen(version, topic)
    return version, data.draw(reads(version))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("size", [0, 64, 127, 128, 16_000])
def test_one_plain_qos0_publish_alone_takes_the_fast_path(
    version: int, topic: str, size: int
) -> None:
    seen(version, topic)
    decoder = PacketDecoder(protocol_level=version)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert decoder.feed_qos0(encode(plain(topic, payload), version)) == (topic, payload)


@pytest.mark.parametrize("version", VERSIONS)
def test_what_feed_plain_would_not_make_plain_is_left_alone(version: int) -> None:
    seen(version, "single/a")
    refused = [
        Publish("single/a", b"x", 0, False, True, None, EMPTY_PROPERTIES),  # RETAIN
        Publish("single/a", b"x", 0, True, False, None, EMPTY_PROPERTIES),  # DUP
        plain("single/a", b"x", 5),  # QoS 1
        plain("single/never-seen", b"x"),  # a topic name not checked yet
    ]
    if version == MQTT_5:
        props = Properties(content_type="text/plain")
        refused.append(Publish("single/a", b"x", 0, False, False, None, props))
    for packet in refused:
        decoder = PacketDecoder(protocol_level=version)
        assert decoder.feed_qos0(encode(packet, version)) is None, packet
    # Before CONNECT (no version), split or broken decoders: nothing for the fast path.
    wire = encode(plain("single/a", b"x"), version)
    assert PacketDecoder().feed_qos0(wire) is None
    waiting = PacketDecoder(protocol_level=version)
    waiting.feed_plain(wire[:3])
    assert waiting.feed_qos0(wire) is None
    assert (
        PacketDecoder(protocol_level=version, max_packet_size=len(wire) - 1).feed_qos0(wire) is None
    )


@READS
@given(st.data())
def test_feed_qos0_means_what_feed_plain_means(data: st.DataObject) -> None:
    version, read = draw_read(data)
    limit = data.draw(st.sampled_from([1 << 20, 100]))
    decoder = PacketDecoder(protocol_level=version, max_packet_size=limit)
    oracle = PacketDecoder(protocol_level=version, max_packet_size=limit)
    found = decoder.feed_qos0(read)  # first: the oracle may teach the topic cache a name
    plain_items = oracle.feed_plain(read) if found is not None else None
    if plain_items is not None:
        # What the general loop makes of it is this one plain item too.
        assert plain_items == [found]
        assert oracle.all_plain
        assert oracle.error is None
    oracle = PacketDecoder(protocol_level=version, max_packet_size=limit)
    expected = outcome(oracle, read)
    if found is None:
        # Nothing consumed: the decoder still means what a fresh one means.
        assert outcome(decoder, read) == expected
    # Either way the next read decodes alike.
    follow = encode(plain("single/a", b"next"), version)
    assert outcome(decoder, follow) == outcome(oracle, follow)


@READS
@given(st.data())
def test_receive_qos0_means_what_receive_data_means(data: st.DataObject) -> None:
    version, read = draw_read(data)
    fast, oracle = connected(version), connected(version)
    found = fast.receive_qos0(read, 7.0)  # first: the oracle may teach the topic cache a name
    expected = [as_packet(e) for e in oracle.receive_data(read, 7.0)]
    if found is not None:
        assert expected == [as_packet(found)]
    else:
        assert [as_packet(e) for e in fast.receive_data(read, 7.0)] == expected
    assert fast.state == oracle.state
    assert fast.get_timer() == oracle.get_timer()  # the keep-alive counts the read alike
    assert fast.data_to_send() == oracle.data_to_send()


@pytest.mark.parametrize("version", VERSIONS)
def test_receive_qos0_is_for_connected_plain_publish_machines_only(version: int) -> None:
    seen(version, "single/a")
    wire = encode(plain("single/a", b"x"), version)
    before_connack = MqttConnection(max_packet_size=1 << 20)
    before_connack.plain_publish = True
    before_connack.receive_data(encode(connect_packet(version), version), 0.0)
    assert before_connack.receive_qos0(wire, 1.0) is None
    general = connected(version)
    general.plain_publish = False  # a handler that wants packet objects
    assert general.receive_qos0(wire, 1.0) is None
    conn = connected(version)
    assert conn.receive_qos0(wire, 1.0) == ("single/a", b"x")
    conn.close()
    assert conn.receive_qos0(wire, 2.0) is None
