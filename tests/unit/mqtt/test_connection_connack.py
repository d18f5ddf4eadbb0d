"""`MqttConnection.send_connack`, the successful CONNACK every connection sends: the same bytes
and the same state rules as `send(ConnAck(...))`, without building the packet for 3.1 / 3.1.1."""

from __future__ import annotations

import pytest

from gateway.mqtt.connection import (
    ConnectionState,
    LocalProtocolError,
    MqttConnection,
    ProtocolViolation,
)
from gateway.mqtt.packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    PingReq,
    PingResp,
    Properties,
    Publish,
    ReasonCode,
)
from tests.unit.mqtt.connection_helpers import Client, connect_packet, state

S = ConnectionState


def awaiting_connack(version: int) -> tuple[MqttConnection, Client]:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(version)
    conn.receive_data(client.wire(connect_packet(version)), now=0.0)
    assert state(conn) is S.AWAIT_CONNACK
    return conn, client


@pytest.mark.parametrize("version", [MQTT_3_1, MQTT_3_1_1, MQTT_5])
@pytest.mark.parametrize("session_present", [False, True])
def test_same_bytes_and_state_as_send(version: int, session_present: bool) -> None:
    fast, client = awaiting_connack(version)
    generic, _ = awaiting_connack(version)
    assert fast.send_connack(session_present)
    assert generic.send(ConnAck(session_present, ReasonCode.SUCCESS))
    assert generic.data_to_send() == client.wire(ConnAck(session_present, ReasonCode.SUCCESS))
    assert client.read(fast) == [ConnAck(session_present, ReasonCode.SUCCESS)]
    assert state(fast) is state(generic) is S.CONNECTED
    assert fast.connect is None


def test_v5_properties_go_through_the_generic_path() -> None:
    conn, client = awaiting_connack(MQTT_5)
    props = Properties(receive_maximum=10, topic_alias_maximum=5, retain_available=False)
    assert conn.send_connack(False, props)
    assert client.read(conn) == [ConnAck(False, ReasonCode.SUCCESS, props)]
    # What the CONNACK advertised now binds the client (as `send` records it).
    (event,) = conn.receive_data(client.wire(Publish("t", b"x", retain=True)), now=1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == ReasonCode.RETAIN_NOT_SUPPORTED


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_a_pingreq_before_connack_is_answered_after_it(version: int) -> None:
    conn, client = awaiting_connack(version)
    assert conn.receive_data(client.wire(PingReq()), now=1.0) == []
    assert conn.data_to_send() == b""  # nothing before CONNACK [MQTT-3.2.0-1]
    conn.send_connack(False)
    assert client.read(conn) == [ConnAck(False), PingResp()]


def test_refused_before_connect_and_ignored_once_closed() -> None:
    conn = MqttConnection(max_packet_size=1024)
    with pytest.raises(LocalProtocolError):
        conn.send_connack(False)  # no CONNECT yet
    closing, _ = awaiting_connack(MQTT_3_1_1)
    closing.close(ReasonCode.NOT_AUTHORIZED)
    closing.data_to_send()
    assert not closing.send_connack(False)
    assert closing.data_to_send() == b""


def test_only_once() -> None:
    conn, _ = awaiting_connack(MQTT_3_1_1)
    conn.send_connack(False)
    with pytest.raises(LocalProtocolError):
        conn.send_connack(False)
