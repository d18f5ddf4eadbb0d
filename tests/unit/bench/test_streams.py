"""The generators' receive-side counters: exact counts however the stream is cut."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.streams import (
    STAMP,
    AmqpConfirmCounter,
    AmqpDeliveryCounter,
    MqttCounter,
    PubackCounter,
)
from bench.wire import amqp_publish, mqtt_publish
from gateway.amqp.fastpath import encode_basic_ack

PAYLOAD = STAMP.pack(1_000) + bytes(56)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _deliver(tag: int, size: int = len(PAYLOAD)) -> bytes:
    """basic.deliver + header + body as a broker sends them (consumer tag "bench")."""
    method = (
        b"\x00\x3c\x00\x3c"
        + b"\x05bench"
        + tag.to_bytes(8, "big")
        + b"\x00"
        + b"\x09amq.topic"
        + b"\x07bench.0"
    )
    header = b"\x00\x3c\x00\x00" + size.to_bytes(8, "big") + b"\x10\x00\x01"

    def frame(kind: int, payload: bytes) -> bytes:
        return bytes((kind,)) + b"\x00\x01" + len(payload).to_bytes(4, "big") + payload + b"\xce"

    return frame(1, method) + frame(2, header) + frame(3, PAYLOAD[:size])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_mqtt_qos0_count_is_exact_for_any_cut(n: int, cuts: list[int]) -> None:
    stream = mqtt_publish("bench/0", PAYLOAD) * n
    counter = MqttCounter()
    for part in _cut(stream, cuts):
        assert counter.feed(part) == b""
    assert counter.count == n


@settings(max_examples=200, deadline=None)
@given(
    pids=st.lists(st.integers(1, 0xFFFF), min_size=1, max_size=200),
    cuts=st.lists(st.integers(0, 10**6), max_size=20),
)
def test_mqtt_qos1_acks_every_packet_id_in_order(pids: list[int], cuts: list[int]) -> None:
    stream = b"".join(mqtt_publish("bench/1", PAYLOAD, qos=1, packet_id=p) for p in pids)
    counter = MqttCounter()
    acks = b"".join(counter.feed(part) for part in _cut(stream, cuts))
    assert counter.count == len(pids)
    assert acks == b"".join(b"\x40\x02" + p.to_bytes(2, "big") for p in pids)


def test_mqtt_mixed_sizes_and_other_packets_fall_back_to_the_walk() -> None:
    stream = (
        mqtt_publish("bench/0", PAYLOAD) * 3
        + b"\xd0\x00"  # PINGRESP
        + mqtt_publish("bench/longer/topic", PAYLOAD) * 2
        + mqtt_publish("bench/0", PAYLOAD) * 4
    )
    counter = MqttCounter()
    counter.feed(stream[:200])
    counter.feed(stream[200:])
    assert (counter.count, counter.others) == (9, 1)


def test_mqtt_latency_samples_the_stamp_of_the_last_delivery_per_read() -> None:
    counter = MqttCounter(latency=True)
    counter.feed(mqtt_publish("bench/0", PAYLOAD) * 2, now_ns=1_500)
    counter.feed(mqtt_publish("bench/0", PAYLOAD) * 2, now_ns=2_000)
    assert counter.latencies_ns == [500, 1_000]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_amqp_deliveries_are_counted_for_any_cut(n: int, cuts: list[int]) -> None:
    stream = b"".join(_deliver(tag) for tag in range(1, n + 1))
    counter = AmqpDeliveryCounter()
    for part in _cut(stream, cuts):
        counter.feed(part)
    assert counter.count == n
    assert counter.controls == []


def test_amqp_control_frames_are_kept_and_empty_bodies_count() -> None:
    channel_close = b"\x01\x00\x01\x00\x00\x00\x0a\x00\x14\x00\x28\x01\x94\x00\x00\x00\x00\xce"
    stream = _deliver(1) + _deliver(2, size=0) + channel_close + _deliver(3)
    counter = AmqpDeliveryCounter(latency=True)
    counter.feed(stream, now_ns=3_000)
    assert counter.count == 3
    assert counter.controls == [channel_close]
    assert counter.latencies_ns == [2_000, 2_000]


def test_amqp_publish_frames_are_not_deliveries() -> None:
    counter = AmqpDeliveryCounter()
    counter.feed(amqp_publish("amq.topic", "bench.0", PAYLOAD))
    assert counter.count == 0
    assert len(counter.controls) == 1  # the basic.publish method frame


@settings(max_examples=200, deadline=None)
@given(
    tags=st.lists(st.integers(1, 10**6), min_size=1, max_size=100),
    cuts=st.lists(st.integers(0, 10**5), max_size=10),
)
def test_confirms_track_the_highest_acked_tag(tags: list[int], cuts: list[int]) -> None:
    stream = b"".join(encode_basic_ack(1, t, multiple=True) for t in tags)
    counter = AmqpConfirmCounter()
    for part in _cut(stream, cuts):
        counter.feed(part)
    assert counter.confirmed == max(tags)
    assert counter.nacked == 0


def test_a_nack_is_counted() -> None:
    nack = bytearray(encode_basic_ack(1, 5, multiple=False))
    nack[10] = 0x78  # basic.nack
    counter = AmqpConfirmCounter()
    counter.feed(encode_basic_ack(1, 4, multiple=True) + bytes(nack))
    assert (counter.confirmed, counter.nacked) == (5, 1)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 500), cuts=st.lists(st.integers(0, 10**4), max_size=10))
def test_pubacks_are_counted_for_any_cut(n: int, cuts: list[int]) -> None:
    stream = b"".join(b"\x40\x02" + (i % 0xFFFF + 1).to_bytes(2, "big") for i in range(n))
    counter = PubackCounter()
    for part in _cut(stream, cuts):
        counter.feed(part)
    assert counter.count == n
