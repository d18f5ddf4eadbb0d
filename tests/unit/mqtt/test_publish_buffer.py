"""`MqttConnection.publish_buffer`: the output list a batch sender appends PUBLISHes to itself,
given only where `send_encoded` would queue any PUBLISH as it is."""

from __future__ import annotations

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, Publish

from .connection_helpers import connect_packet, open_connection


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_appending_to_the_buffer_sends_what_send_encoded_sends(version: int) -> None:
    packets = [Publish("a/b", b"hi", retain=True), Publish("c", b""), Publish("d", b"x" * 300)]
    parts = [(encode(p, version)[: -len(p.payload) or None], p.payload) for p in packets]
    fast, _ = open_connection(version)
    general, _ = open_connection(version)
    for header, payload in parts:
        buffer = fast.publish_buffer()
        assert buffer is not None
        buffer.append(header)
        if payload:
            buffer.append(payload)
        # What `send_encoded` answers: the chunks now waiting.
        assert len(buffer) == general.send_encoded(header, payload) == fast.pending_chunks
    assert fast.data_to_send() == general.data_to_send()
    assert fast.publish_buffer() == []  # drained: the same list, empty


def test_no_buffer_before_connack_after_close_or_with_a_maximum_packet_size() -> None:
    conn = MqttConnection(max_packet_size=1024)
    conn.receive_data(encode(connect_packet(MQTT_5), MQTT_5), 0.0)
    assert conn.publish_buffer() is None  # not CONNECTED: send_encoded raises
    limited, _ = open_connection(MQTT_5, maximum_packet_size=100)
    assert limited.publish_buffer() is None  # each PUBLISH needs the size check
    closed, _ = open_connection(MQTT_3_1_1)
    assert closed.publish_buffer() is not None
    closed.close()
    assert closed.publish_buffer() is None  # send_encoded would not send
