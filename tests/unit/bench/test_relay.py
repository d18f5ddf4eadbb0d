"""bench/relay.py: the bare relay answers and forwards exactly, however the stream is cut."""

from __future__ import annotations

import asyncio
import itertools
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.relay import CONNACK, PINGRESP, RelayProtocol
from bench.wire import mqtt_connect_packet, mqtt_publish
from gateway.mqtt.codec import encode
from gateway.mqtt.packets import MQTT_3_1_1, PingReq, Subscribe, SubscriptionOptions


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def _connected() -> tuple[RelayProtocol, FakeTransport]:
    protocol = RelayProtocol()
    transport = FakeTransport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    return protocol, transport


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None)
@given(
    payload_sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_publishes_reach_each_subscriber_byte_for_byte(
    payload_sizes: list[int], cuts: list[int]
) -> None:
    RelayProtocol.subscribers = set()
    subscriber, sub_transport = _connected()
    subscribe = encode(
        Subscribe(7, (("bench/#", SubscriptionOptions()), ("x", SubscriptionOptions()))),
        MQTT_3_1_1,
    )
    subscriber.data_received(mqtt_connect_packet("sub") + subscribe)
    # CONNACK, then SUBACK for packet id 7 granting QoS 0 to both filters.
    assert sub_transport.written == [CONNACK, b"\x90\x04\x00\x07\x00\x00"]
    sub_transport.written.clear()

    publisher, pub_transport = _connected()
    publishes = b"".join(mqtt_publish("bench/0", bytes([n % 256]) * n) for n in payload_sizes)
    stream = mqtt_connect_packet("pub") + publishes + encode(PingReq(), MQTT_3_1_1)
    for piece in _cut(stream, cuts):
        publisher.data_received(piece)

    assert b"".join(sub_transport.written) == publishes
    assert pub_transport.written == [CONNACK, PINGRESP]
    assert publisher.buffer == b""


def test_a_closed_subscriber_gets_nothing_more() -> None:
    RelayProtocol.subscribers = set()
    subscriber, sub_transport = _connected()
    subscriber.data_received(encode(Subscribe(1, (("#", SubscriptionOptions()),)), MQTT_3_1_1))
    subscriber.connection_lost(None)
    publisher, _ = _connected()
    publisher.data_received(mqtt_publish("a", b"x"))
    assert sub_transport.written == [b"\x90\x03\x00\x01\x00"]
