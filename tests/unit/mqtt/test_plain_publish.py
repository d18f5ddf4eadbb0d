"""`PacketDecoder.feed_plain` and `MqttConnection.plain_publish`: the fast paths yield `Plain`
items (a QoS 0 PUBLISH as (topic, payload), a QoS 1 one as (topic, payload, packet id), a
PUBACK as its packet id) and must otherwise mean exactly what `feed`, the full codec, means."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import (
    MalformedPacket,
    MqttError,
    PacketDecoder,
    ProtocolError,
    encode,
)
from gateway.mqtt.connection import MqttConnection, ProtocolViolation
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Packet,
    PingReq,
    Properties,
    PubAck,
    Publish,
    PubRec,
    ReasonCode,
)
from tests.unit.mqtt.connection_helpers import connect_packet
from tests.unit.mqtt.strategies import packets_of

VERSIONS = (MQTT_3_1_1, MQTT_5)
STREAMS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_packet(item: object) -> object:
    """The packet a `Plain` item stands for (anything else as it is)."""
    if isinstance(item, int):
        return PubAck(item)
    if isinstance(item, tuple):
        if len(item) == 2:
            return Publish(item[0], item[1], 0, False, False, None, EMPTY_PROPERTIES)
        return Publish(item[0], item[1], 1, False, False, item[2], EMPTY_PROPERTIES)
    return item


def is_plain(item: object) -> bool:
    return isinstance(item, int | tuple)


def plain(topic: str, payload: bytes, packet_id: int | None = None) -> Publish:
    qos = 0 if packet_id is None else 1
    return Publish(topic, payload, qos, False, False, packet_id, EMPTY_PROPERTIES)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_repeated_plain_publish_comes_out_as_a_tuple(version: int) -> None:
    topic = f"plain/t1/{version}"  # the topic cache is process-wide: a topic new here
    last = encode(plain(topic, b"three", 7), version)
    wire = encode(plain(topic, b"one"), version) + encode(plain(topic, b"two"), version) + last
    decoder = PacketDecoder(protocol_level=version)
    got = decoder.feed_plain(wire)
    # The first sight of a topic goes the full way (and checks it); later ones are cached.
    assert got == [plain(topic, b"one"), (topic, b"two"), (topic, b"three", 7)]
    assert decoder.all_plain is False  # the first one is a Publish
    assert decoder.feed_plain(last) == [(topic, b"three", 7)]
    assert decoder.all_plain is True


@pytest.mark.parametrize("version", VERSIONS)
def test_a_puback_saying_success_comes_out_as_its_packet_id(version: int) -> None:
    decoder = PacketDecoder(protocol_level=version)
    assert decoder.feed_plain(encode(PubAck(513), version)) == [513]
    assert decoder.all_plain is True


def test_an_mqtt5_puback_with_an_explicit_success_code_is_the_same_puback() -> None:
    decoder = PacketDecoder(protocol_level=MQTT_5)
    assert decoder.feed_plain(b"\x40\x03\x00\x07\x00") == [7]
    assert PacketDecoder(protocol_level=MQTT_5).feed(b"\x40\x03\x00\x07\x00") == [PubAck(7)]


def test_a_311_puback_with_a_reason_code_byte_is_still_malformed() -> None:
    with pytest.raises(MalformedPacket):
        PacketDecoder(protocol_level=MQTT_3_1_1).feed_plain(b"\x40\x03\x00\x07\x00")


@pytest.mark.parametrize("version", VERSIONS)
def test_anything_but_a_plain_packet_stays_a_packet(version: int) -> None:
    others: list[Packet] = [
        Publish("plain/t2", b"r", 0, True, False, None, EMPTY_PROPERTIES),
        Publish("plain/t2", b"r", 1, True, False, 6, EMPTY_PROPERTIES),
        Publish("plain/t2", b"d", 1, False, True, 8, EMPTY_PROPERTIES),
        Publish("plain/t2", b"q", 2, False, False, 9, EMPTY_PROPERTIES),
        PubRec(10),
        PingReq(),
    ]
    if version == MQTT_5:
        others += [
            Publish("plain/t2", b"p", 0, False, False, None, Properties(content_type="x")),
            Publish("plain/t2", b"p", 1, False, False, 3, Properties(content_type="x")),
            PubAck(4, ReasonCode.NO_MATCHING_SUBSCRIBERS),
            PubAck(5, ReasonCode.SUCCESS, Properties(reason_string="fine")),
        ]
    wire = encode(plain("plain/t2", b"warm"), version) + b"".join(
        encode(p, version) for p in others
    )
    got = PacketDecoder(protocol_level=version).feed_plain(wire)
    assert got[1:] == others


@pytest.mark.parametrize("version", VERSIONS)
def test_packet_id_zero_is_refused_on_the_fast_paths_too(version: int) -> None:
    topic = f"plain/t6/{version}"
    decoder = PacketDecoder(protocol_level=version)
    decoder.feed_plain(encode(plain(topic, b"x"), version))  # the topic is cached now
    with pytest.raises(ProtocolError):
        decoder.feed_plain(b"\x40\x02\x00\x00")
    publish = bytearray(encode(plain(topic, b"x", 1), version))
    at = 4 + len(topic)  # after 0x32, the length, the u16 topic size and the topic
    assert publish[at : at + 2] == b"\x00\x01"
    publish[at : at + 2] = b"\x00\x00"
    with pytest.raises(ProtocolError):
        PacketDecoder(protocol_level=version).feed_plain(bytes(publish))


def test_a_bad_packet_after_a_cached_topic_is_still_refused() -> None:
    decoder = PacketDecoder(protocol_level=MQTT_3_1_1)
    assert decoder.feed_plain(encode(plain("plain/t3", b"x"), MQTT_3_1_1))
    # Topic length 0x0008 ("plain/t3") but the packet ends after 4 bytes of it.
    with pytest.raises(MalformedPacket):
        decoder.feed_plain(b"\x30\x06\x00\x08plai")
    decoder = PacketDecoder(protocol_level=MQTT_3_1_1)
    # QoS 1: the topic fits but the packet ends before its packet id.
    with pytest.raises(MalformedPacket):
        decoder.feed_plain(b"\x32\x0a\x00\x08plain/t3")


def plain_or_not(version: int) -> st.SearchStrategy[Packet]:
    return st.one_of(
        packets_of("Publish", version),
        packets_of("PubAck", version),
        packets_of("PubRec", version),
        st.just(PingReq()),
    )


@STREAMS
@given(st.data())
def test_feed_plain_means_what_feed_means_however_the_bytes_are_split(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(VERSIONS))
    packets = data.draw(st.lists(plain_or_not(version), min_size=1, max_size=6))
    packets += packets  # every topic twice: the second sight can take the fast path
    wire = b"".join(encode(p, version) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=3)))
    decoder = PacketDecoder(protocol_level=version)
    oracle = PacketDecoder(protocol_level=version)
    got: list[object] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        items = decoder.feed_plain(wire[start:cut])
        if items:
            assert decoder.all_plain == all(is_plain(item) for item in items)
        assert [as_packet(i) for i in items] == oracle.feed(wire[start:cut])
        got += items
        start = cut
    assert [as_packet(item) for item in got] == packets


@STREAMS
@given(st.data())
def test_feed_plain_refuses_what_feed_refuses(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(VERSIONS))
    packets = data.draw(st.lists(plain_or_not(version), min_size=1, max_size=4))
    wire = bytearray(b"".join(encode(p, version) for p in packets + packets))
    # Damage one byte: whatever the full decoder makes of it, the fast one must agree.
    at = data.draw(st.integers(0, len(wire) - 1))
    wire[at] = data.draw(st.integers(0, 255))
    outcomes: list[tuple[object, ...]] = []
    for feed in (PacketDecoder.feed, PacketDecoder.feed_plain):
        decoder = PacketDecoder(protocol_level=version)
        try:
            items = [as_packet(i) for i in feed(decoder, bytes(wire))]
        except MqttError as exc:
            outcomes.append(("raised", exc.reason_code))
            continue
        outcomes.append(("decoded", items, decoder.error and decoder.error.reason_code))
    assert outcomes[0] == outcomes[1]


def same_shape_run(version: int) -> st.SearchStrategy[list[Publish]]:
    """Publishes to one of two topics with one payload size: the decoder's repeated-head path
    (anything else in the run is there to break it: DUP, RETAIN, properties)."""
    one = st.builds(
        Publish,
        st.sampled_from(["plain/run/a", "plain/run/b"]),
        st.sampled_from([b"12345678", b"abcdefgh", b"1234567"]),
        st.sampled_from([0, 1, 1, 1, 2]),
        st.sampled_from([False, False, False, True]),
        st.just(False),
        st.integers(1, 3),
        st.sampled_from(
            [EMPTY_PROPERTIES] * 4
            + ([Properties(content_type="x")] if version == MQTT_5 else [])
        ),
    ).map(lambda p: p if p.qos else Publish(p.topic, p.payload, 0, p.retain, False, None,
                                            p.properties))  # fmt: skip
    return st.lists(one, min_size=1, max_size=12)


@STREAMS
@given(st.data())
def test_a_run_of_same_shape_publishes_means_what_feed_means(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(VERSIONS))
    packets = data.draw(same_shape_run(version))
    wire = bytearray(b"".join(encode(p, version) for p in packets))
    if data.draw(st.booleans()):
        # A damaged byte (a packet id of 0, a changed length...): both decoders must agree.
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=2)))
    outcomes: list[tuple[object, ...]] = []
    for feed in (PacketDecoder.feed, PacketDecoder.feed_plain):
        decoder = PacketDecoder(protocol_level=version)
        items: list[object] = []
        start = 0
        try:
            for cut in [*cuts, len(wire)]:
                items += [as_packet(i) for i in feed(decoder, bytes(wire[start:cut]))]
                start = cut
        except MqttError as exc:
            outcomes.append(("raised", items, exc.reason_code))
            continue
        outcomes.append(("decoded", items, decoder.error and decoder.error.reason_code))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_repeated_head_with_packet_id_zero_is_refused(version: int) -> None:
    topic = f"plain/t7/{version}"
    decoder = PacketDecoder(protocol_level=version)
    decoder.feed_plain(encode(plain(topic, b"x", 1), version))  # the topic is cached now
    good = encode(plain(topic, b"x", 2), version)
    bad = bytearray(good)
    at = 4 + len(topic)
    bad[at : at + 2] = b"\x00\x00"
    assert decoder.feed_plain(good + good) == [(topic, b"x", 2), (topic, b"x", 2)]
    decoder = PacketDecoder(protocol_level=version)
    got = decoder.feed_plain(good + bytes(bad) + good)
    assert got == [(topic, b"x", 2)]  # the good one, the error kept for the next feed
    assert isinstance(decoder.error, ProtocolError)
    with pytest.raises(ProtocolError):
        decoder.feed_plain(good)


@pytest.mark.parametrize("version", VERSIONS)
def test_connection_yields_the_same_events_with_plain_publish_on(version: int) -> None:
    # CONNECT and plain packets in one read: before CONNACK a plain item becomes its packet
    # again, so the state table still judges it.
    topic = f"plain/t4/{version}"
    wire = encode(connect_packet(version), version) + b"".join(
        encode(p, version)
        for p in (plain(topic, b"a"), plain(topic, b"b"), plain(topic, b"c", 3), PubAck(4))
    )
    seen = []
    for fast in (False, True):
        conn = MqttConnection(max_packet_size=1 << 20)
        conn.plain_publish = fast
        events = conn.receive_data(wire, 0.0)
        assert not any(is_plain(e) for e in events)
        seen.append((events, conn.state))
    assert seen[0] == seen[1]


def connected(version: int, maximum_qos: int | None = None) -> MqttConnection:
    conn = MqttConnection(max_packet_size=1 << 20)
    conn.plain_publish = True
    conn.receive_data(encode(connect_packet(version), version), 0.0)
    props = Properties(maximum_qos=maximum_qos) if maximum_qos is not None else Properties()
    conn.send(ConnAck(False, ReasonCode.SUCCESS, props))
    conn.data_to_send()
    return conn


@pytest.mark.parametrize("version", VERSIONS)
def test_once_connected_plain_items_are_events(version: int) -> None:
    conn = connected(version)
    topic = f"plain/t5/{version}"  # the topic cache is process-wide: a topic new here
    later = b"".join(
        encode(p, version)
        for p in (plain(topic, b"b"), plain(topic, b"c"), plain(topic, b"d", 9), PubAck(2))
    )
    assert conn.receive_data(later, 1.0) == [
        plain(topic, b"b"),
        (topic, b"c"),
        (topic, b"d", 9),
        2,
    ]
    # A batch of plain items only is handed over as the decoder made it.
    assert conn.receive_data(encode(plain(topic, b"e", 10), version), 2.0) == [(topic, b"e", 10)]


def test_a_plain_qos1_publish_above_an_advertised_maximum_qos_0_is_refused() -> None:
    conn = connected(MQTT_5, maximum_qos=0)
    topic = "plain/t7"
    wire = encode(plain(topic, b"a"), MQTT_5) + encode(plain(topic, b"b", 5), MQTT_5)
    events = conn.receive_data(wire, 1.0)
    assert events[0] == plain(topic, b"a")
    assert isinstance(events[1], ProtocolViolation)
    assert events[1].reason_code == ReasonCode.QOS_NOT_SUPPORTED
    assert conn.closed


@pytest.mark.parametrize("version", VERSIONS)
def test_send_puback_writes_what_send_writes(version: int) -> None:
    for code in (ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS):
        fast, full = connected(version), connected(version)
        assert fast.send_puback(300, code)
        assert full.send(PubAck(300, code))
        assert fast.data_to_send() == full.data_to_send()


@STREAMS
@given(st.data())
def test_a_protocol_violation_is_only_ever_the_last_event_of_a_read(data: st.DataObject) -> None:
    # The listener logs a violation by looking at the last event of a read only.
    version = data.draw(st.sampled_from(VERSIONS))
    packets = data.draw(st.lists(plain_or_not(version), min_size=1, max_size=6))
    wire = bytearray(b"".join(encode(p, version) for p in packets + packets))
    for _ in range(data.draw(st.integers(0, 2))):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    conn = connected(version)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=2)))
    start = 0
    for cut in [*cuts, len(wire)]:
        events = conn.receive_data(bytes(wire[start:cut]), 1.0)
        start = cut
        violations = [i for i, e in enumerate(events) if isinstance(e, ProtocolViolation)]
        assert violations in ([], [len(events) - 1])
