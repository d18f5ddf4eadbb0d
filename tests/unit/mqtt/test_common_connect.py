"""The CONNECT fast path (issue 7, S7). `decode_common_connect` against `decode_connect_full`
as the oracle: whenever the fast path returns a packet it is the one the full decoder returns,
it takes every common shape, and it never accepts bytes the full decoder refuses. Then the
first read that uses it (`PacketDecoder.feed_connect`, `MqttConnection.receive_connect`)
against `feed` / `receive_data`."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import PacketDecoder, PacketTooLarge, encode
from gateway.mqtt.codec_decode import decode_common_connect, decode_connect_full
from gateway.mqtt.codec_errors import MqttError
from gateway.mqtt.connection import MqttConnection, ProtocolViolation
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Connect,
    PingReq,
    Will,
)
from tests.unit.mqtt.strategies import connects

CHECKS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def body(connect: Connect) -> tuple[bytes, int]:
    """The encoded CONNECT and where its variable header starts (after the fixed header)."""
    wire = encode(connect, connect.protocol_level)
    cursor = 1
    while wire[cursor] & 0x80:
        cursor += 1
    return wire, cursor + 1


def full_or_error(data: bytes, pos: int, end: int) -> Connect | MqttError:
    try:
        return decode_connect_full(data, pos, end)
    except MqttError as exc:
        return exc


@st.composite
def common_connects(draw: st.DrawFn) -> Connect:
    """`connects` without a will or properties: the shape the fast path decodes."""
    version = draw(st.sampled_from([MQTT_3_1_1, MQTT_5]))
    return replace(draw(connects(version)), will=None, properties=EMPTY_PROPERTIES)


@given(common_connects())
def test_every_common_connect_takes_the_fast_path_and_means_the_same(connect: Connect) -> None:
    wire, pos = body(connect)
    got = decode_common_connect(wire, pos, len(wire))
    assert got == connect == decode_connect_full(wire, pos, len(wire))
    assert got is not None
    assert got.properties is EMPTY_PROPERTIES
    assert got.will is None


@CHECKS
@given(st.sampled_from([MQTT_3_1, MQTT_3_1_1, MQTT_5]).flatmap(connects))
def test_any_connect_is_either_left_to_the_full_decoder_or_decoded_alike(connect: Connect) -> None:
    wire, pos = body(connect)
    got = decode_common_connect(wire, pos, len(wire))
    if got is not None:
        assert got == decode_connect_full(wire, pos, len(wire))
    elif connect.protocol_level != MQTT_3_1:
        # Only a will or MQTT 5 properties make a valid 3.1.1 / 5 CONNECT uncommon.
        assert connect.will is not None or connect.properties != EMPTY_PROPERTIES


@CHECKS
@given(common_connects(), st.data())
def test_damaged_bytes_are_never_accepted_where_the_full_decoder_refuses(
    connect: Connect, data: st.DataObject
) -> None:
    wire, pos = body(connect)
    damaged = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(pos, len(wire) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    raw = bytes(damaged)
    end = data.draw(st.integers(pos, len(raw)))  # a packet cut short, or whole
    got = decode_common_connect(raw, pos, end)
    if got is not None:
        assert got == full_or_error(raw, pos, end)


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_every_cut_of_a_common_connect_is_left_to_the_full_decoder(version: int) -> None:
    wire, pos = body(Connect("dev-1", version, True, 60, "user", b"secret"))
    for end in range(pos, len(wire)):
        assert decode_common_connect(wire, pos, end) is None
        assert isinstance(full_or_error(wire, pos, end), MqttError)


def test_the_fast_path_reads_only_its_own_packet() -> None:
    wire, pos = body(Connect("dev-1", MQTT_3_1_1, True, 60))
    trailing = wire + b"\xc0\x00"  # a PINGREQ pipelined after the CONNECT
    assert decode_common_connect(trailing, pos, len(wire)) == Connect("dev-1", MQTT_3_1_1, True, 60)
    assert decode_common_connect(trailing, pos, len(trailing)) is None


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x02a\x00",  # U+0000 in the client id
        b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01\xff",  # not UTF-8
        b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x01a\x00\x01p",  # 3.1.1 password without a user name
        b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01a",  # reserved flag
        b"\x00\x04MQTT\x04\x12\x00\x3c\x00\x01a",  # Will QoS without a will
        b"\x00\x04MQTT\x05\x02\x00\x3c\x01\x00\x01a",  # property length past the packet
    ],
)
def test_malformed_connects_are_left_to_the_full_decoder(bad: bytes) -> None:
    assert decode_common_connect(bad, 0, len(bad)) is None
    with pytest.raises(MqttError):
        decode_connect_full(bad, 0, len(bad))


# -- PacketDecoder.feed_connect and MqttConnection.receive_connect: the first read ------------


def whole(connect: Connect) -> bytes:
    return encode(connect, connect.protocol_level)


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_a_common_connect_alone_in_a_read_is_decoded_without_the_generic_path(
    version: int,
) -> None:
    connect = Connect("dev-1", version, True, 60, "user", b"secret")
    decoder = PacketDecoder(max_packet_size=1 << 10)
    assert decoder.feed_connect(whole(connect)) == connect
    # The decoder goes on at the CONNECT's level, as after `feed`.
    assert decoder.protocol_level == version
    assert decoder.feed(encode(PingReq(), version)) == [PingReq()]


@pytest.mark.parametrize(
    "data",
    [
        whole(Connect("d", MQTT_3_1_1)) + encode(PingReq(), MQTT_3_1_1),  # more than the CONNECT
        whole(Connect("d", MQTT_3_1_1))[:-1],  # less
        whole(Connect("d", MQTT_3_1_1, will=Will("w", b"x", 1, False))),  # not a common one
        whole(Connect("d", MQTT_3_1)),
        whole(Connect("d" * 200, MQTT_3_1_1)),  # a two-byte Remaining Length
        encode(PingReq(), MQTT_3_1_1),  # not a CONNECT at all
    ],
)
def test_anything_else_is_left_to_feed_with_nothing_consumed(data: bytes) -> None:
    decoder = PacketDecoder()
    assert decoder.feed_connect(data) is None
    assert decoder.protocol_level is None
    assert_same_outcome(decoder, PacketDecoder(), data)


def assert_same_outcome(tried: PacketDecoder, fresh: PacketDecoder, data: bytes) -> None:
    try:
        expected: object = fresh.feed(data)
    except MqttError as exc:
        expected = type(exc)
    try:
        got: object = tried.feed(data)
    except MqttError as exc:
        got = type(exc)
    assert got == expected
    assert tried.protocol_level == fresh.protocol_level


def test_a_connect_over_the_maximum_packet_size_is_left_to_feed_which_refuses_it() -> None:
    data = whole(Connect("dev-1", MQTT_3_1_1))
    decoder = PacketDecoder(max_packet_size=len(data) - 1)
    assert decoder.feed_connect(data) is None
    with pytest.raises(PacketTooLarge):
        decoder.feed(data)


def test_only_a_fresh_decoder_takes_the_fast_path() -> None:
    data = whole(Connect("dev-1", MQTT_3_1_1))
    split = PacketDecoder()
    assert split.feed(data[:3]) == []  # a CONNECT arriving in pieces
    assert split.feed_connect(data) is None  # would misread the buffered head
    connected = PacketDecoder()
    assert connected.feed(data) == [Connect("dev-1", MQTT_3_1_1)]
    assert connected.feed_connect(data) is None  # a second CONNECT is the full path's error
    assert PacketDecoder().feed_connect(bytearray(data)) is None  # bytes only


@CHECKS
@given(st.sampled_from([MQTT_3_1, MQTT_3_1_1, MQTT_5]).flatmap(connects), st.data())
def test_the_first_read_means_the_same_through_receive_connect(
    connect: Connect, data: st.DataObject
) -> None:
    """Twin machines, one read through `receive_connect`, the other through `receive_data`:
    the same events, state, timer and output, for every cut of CONNECT + PINGREQ."""
    head = whole(connect)
    wire = head + encode(PingReq(), connect.protocol_level)
    # The CONNECT alone in the first read (the fast path's case) half of the time.
    cut = data.draw(st.just(len(head)) | st.integers(1, len(wire)))
    fast = MqttConnection(max_packet_size=1 << 16, connect_timeout=10.0, now=1.0)
    full = MqttConnection(max_packet_size=1 << 16, connect_timeout=10.0, now=1.0)
    for chunk in (wire[:cut], wire[cut:]):
        if not chunk:
            continue
        if fast.protocol_level is None:
            got = fast.receive_connect(chunk, 2.0)
        else:
            got = fast.receive_data(chunk, 2.0)
        assert got == full.receive_data(chunk, 2.0)
        assert fast.state is full.state
        assert fast.get_timer() == full.get_timer()
        assert fast.keep_alive == full.keep_alive
        assert fast.connect == full.connect
        assert fast.data_to_send() == full.data_to_send()


def test_receive_connect_after_the_connect_is_receive_data() -> None:
    conn = MqttConnection(max_packet_size=1 << 16)
    assert conn.receive_connect(whole(Connect("d", MQTT_3_1_1)), 1.0) == [Connect("d", MQTT_3_1_1)]
    events = conn.receive_connect(whole(Connect("d", MQTT_3_1_1)), 2.0)
    assert [type(event) for event in events] == [ProtocolViolation]  # [MQTT-3.1.0-2]
    assert conn.closed
