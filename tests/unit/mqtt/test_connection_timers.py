"""Keep-alive, PINGREQ and the connect timeout, on a fake clock (plain floats)."""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-3.1.2-24.

from __future__ import annotations

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.connection import (
    ConnectTimedOut,
    KeepaliveExpired,
    MqttConnection,
)
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Disconnect,
    PingReq,
    PingResp,
    Properties,
    Publish,
    ReasonCode,
)
from tests.unit.mqtt.connection_helpers import (
    Client,
    closed,
    connect_packet,
    open_connection,
)

R = ReasonCode


def test_MQTT_3_12_4_1_pingreq_is_answered_by_the_machine() -> None:
    conn, client = open_connection(MQTT_3_1_1)
    assert conn.receive_data(client.wire(PingReq()), now=1.0) == []
    assert client.read(conn) == [PingResp()]


def test_MQTT_3_2_0_1_pingreq_before_connack_is_answered_after_it() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    events = conn.receive_data(client.wire(connect_packet(MQTT_5), PingReq()), now=0.0)
    assert events == [connect_packet(MQTT_5)]
    assert conn.data_to_send() == b""
    conn.send(ConnAck())
    assert client.read(conn) == [ConnAck(), PingResp()]


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_3_1_2_24_keepalive_expires_after_one_and_a_half_periods(version: int) -> None:
    conn, client = open_connection(version, keep_alive=10)
    assert conn.get_timer() == 15.0
    assert conn.handle_timer(14.999) == []
    assert not closed(conn)
    assert conn.handle_timer(15.0) == [KeepaliveExpired(10)]
    assert closed(conn)
    expected = [Disconnect(R.KEEP_ALIVE_TIMEOUT)] if version == MQTT_5 else []
    assert client.read(conn) == expected


def test_keepalive_not_expired_while_packets_arrive() -> None:
    conn, client = open_connection(MQTT_3_1_1, keep_alive=10)
    for now in (10.0, 20.0, 30.0, 40.0):
        assert conn.handle_timer(now) == []
        conn.receive_data(client.wire(PingReq()), now=now)
    assert conn.get_timer() == 55.0
    assert conn.handle_timer(54.0) == []
    assert conn.handle_timer(55.0) == [KeepaliveExpired(10)]


def test_keepalive_counts_packets_not_bytes() -> None:
    conn, client = open_connection(MQTT_3_1_1, keep_alive=10)
    wire = client.wire(Publish("t", b"x" * 50))
    conn.receive_data(wire[:10], now=14.0)  # a fragment does not count
    assert conn.get_timer() == 15.0
    conn.receive_data(wire[10:], now=14.5)
    assert conn.get_timer() == 29.5


def test_keepalive_zero_means_no_timer() -> None:
    conn, _ = open_connection(MQTT_3_1_1, keep_alive=0)
    assert conn.get_timer() is None
    assert conn.handle_timer(1e9) == []


@pytest.mark.parametrize("client_keep_alive", [0, 600])
def test_MQTT_3_2_2_21_server_keep_alive_is_sent_and_enforced(client_keep_alive: int) -> None:
    conn = MqttConnection(max_packet_size=1024, server_keep_alive=20)
    client = Client(MQTT_5)
    conn.receive_data(client.wire(connect_packet(MQTT_5, keep_alive=client_keep_alive)), 0.0)
    conn.send(ConnAck())
    assert client.read(conn) == [ConnAck(properties=Properties(server_keep_alive=20))]
    assert conn.keep_alive == 20
    assert conn.get_timer() == 30.0
    assert conn.handle_timer(30.0) == [KeepaliveExpired(20)]


def test_server_keep_alive_set_by_the_session_wins() -> None:
    connack = ConnAck(properties=Properties(server_keep_alive=5))
    conn, _ = open_connection(MQTT_5, keep_alive=60, server_keep_alive=20, connack=connack)
    assert conn.keep_alive == 5


def test_server_keep_alive_does_not_apply_to_v311() -> None:
    conn, _ = open_connection(MQTT_3_1_1, keep_alive=60, server_keep_alive=20)
    assert conn.keep_alive == 60


def test_connect_timeout() -> None:
    conn = MqttConnection(max_packet_size=1024, connect_timeout=5.0, now=100.0)
    assert conn.get_timer() == 105.0
    assert conn.handle_timer(104.0) == []
    assert conn.handle_timer(105.0) == [ConnectTimedOut()]
    assert closed(conn)
    assert conn.data_to_send() == b""


def test_connect_stops_the_connect_timeout() -> None:
    conn = MqttConnection(max_packet_size=1024, connect_timeout=5.0, now=0.0)
    conn.receive_data(encode(connect_packet(MQTT_3_1_1), MQTT_3_1_1), now=1.0)
    assert conn.get_timer() is None
