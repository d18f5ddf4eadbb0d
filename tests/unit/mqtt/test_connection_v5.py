"""MQTT 5 rules the machine enforces: Topic Aliases, what the CONNACK advertised, enhanced
authentication, and what the client's CONNECT limits on output.
"""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-3.1.2-24.

from __future__ import annotations

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.connection import (
    MqttConnection,
    ProtocolViolation,
)
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    ConnAck,
    Disconnect,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    Publish,
    PubRec,
    ReasonCode,
    SubAck,
)
from tests.unit.mqtt.connection_helpers import (
    Client,
    closed,
    connect_packet,
    open_connection,
)

R = ReasonCode


def alias_connection() -> tuple[MqttConnection, Client]:
    return open_connection(MQTT_5, connack=ConnAck(properties=Properties(topic_alias_maximum=10)))


def test_topic_alias_is_resolved() -> None:
    conn, client = alias_connection()
    first = Publish("plant/7/temp", b"1", properties=Properties(topic_alias=3))
    again = Publish("", b"2", properties=Properties(topic_alias=3))
    events = conn.receive_data(client.wire(first, again), now=1.0)
    assert events == [first, Publish("plant/7/temp", b"2", properties=Properties(topic_alias=3))]


def test_topic_alias_can_be_remapped() -> None:
    conn, client = alias_connection()
    wire = client.wire(
        Publish("a", b"", properties=Properties(topic_alias=1)),
        Publish("b", b"", properties=Properties(topic_alias=1)),
        Publish("", b"", properties=Properties(topic_alias=1)),
    )
    assert [e.topic for e in conn.receive_data(wire, now=1.0)] == ["a", "b", "b"]  # type: ignore[union-attr]


@pytest.mark.parametrize("alias", [0, 11])
def test_MQTT_3_3_2_8_and_9_topic_alias_out_of_range(alias: int) -> None:
    conn, client = alias_connection()
    (event,) = conn.receive_data(
        client.wire(Publish("t", b"", properties=Properties(topic_alias=alias))), 1.0
    )
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.TOPIC_ALIAS_INVALID
    assert client.read(conn)[0].reason_code == R.TOPIC_ALIAS_INVALID  # type: ignore[union-attr]


def test_topic_alias_without_advertised_maximum() -> None:
    conn, client = open_connection(MQTT_5)
    (event,) = conn.receive_data(
        client.wire(Publish("t", b"", properties=Properties(topic_alias=1))), 1.0
    )
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.TOPIC_ALIAS_INVALID


def test_unmapped_topic_alias_is_a_protocol_error() -> None:
    conn, client = alias_connection()
    (event,) = conn.receive_data(
        client.wire(Publish("", b"", properties=Properties(topic_alias=2))), 1.0
    )
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR


def test_qos_above_advertised_maximum() -> None:
    conn, client = open_connection(MQTT_5, connack=ConnAck(properties=Properties(maximum_qos=1)))
    ok = Publish("t", b"", 1, packet_id=1)
    assert conn.receive_data(client.wire(ok), 1.0) == [ok]
    (event,) = conn.receive_data(client.wire(Publish("t", b"", 2, packet_id=2)), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.QOS_NOT_SUPPORTED


def test_retain_when_not_available() -> None:
    conn, client = open_connection(
        MQTT_5, connack=ConnAck(properties=Properties(retain_available=False))
    )
    (event,) = conn.receive_data(client.wire(Publish("t", b"", retain=True)), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.RETAIN_NOT_SUPPORTED


def test_v311_has_no_advertised_limits() -> None:
    connack = ConnAck(properties=Properties(maximum_qos=0, retain_available=False))
    conn, client = open_connection(MQTT_3_1_1, connack=connack)
    pub = Publish("t", b"", 2, retain=True, packet_id=1)
    assert conn.receive_data(client.wire(pub), 1.0) == [pub]


def test_MQTT_4_12_0_7_auth_needs_an_authentication_method() -> None:
    conn, client = open_connection(MQTT_5)
    (event,) = conn.receive_data(client.wire(Auth(R.RE_AUTHENTICATE)), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR


def test_enhanced_authentication_exchange() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    connect = connect_packet(MQTT_5, authentication_method="SCRAM-SHA-1")
    conn.receive_data(client.wire(connect), 0.0)
    challenge = Auth(R.CONTINUE_AUTHENTICATION, Properties(authentication_method="SCRAM-SHA-1"))
    conn.send(challenge)
    assert conn.receive_data(client.wire(challenge), 1.0) == [challenge]
    conn.send(ConnAck())
    assert client.read(conn) == [challenge, ConnAck()]


def test_mqtt5_publish_before_connack_is_checked_with_the_defaults() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    user = Publish("t", b"", properties=Properties(user_properties=(("k", "v"),)))
    aliased = Publish("t", b"", properties=Properties(topic_alias=1))
    events = conn.receive_data(client.wire(connect_packet(MQTT_5), user, aliased), 0.0)
    # Topic Alias Maximum defaults to 0 until the CONNACK says otherwise.
    assert events[:2] == [connect_packet(MQTT_5), user]
    assert isinstance(events[2], ProtocolViolation)
    assert events[2].reason_code == R.TOPIC_ALIAS_INVALID
    # No DISCONNECT before CONNACK; 0x94 is not a CONNACK code, so Protocol Error it is.
    assert client.read(conn) == [ConnAck(reason_code=R.PROTOCOL_ERROR)]


def test_publish_with_properties_but_no_alias_passes() -> None:
    conn, client = open_connection(MQTT_5)
    pub = Publish("t", b"", properties=Properties(content_type="text/plain"))
    assert conn.receive_data(client.wire(pub), 1.0) == [pub]


def test_MQTT_3_3_4_6_client_publish_cannot_carry_subscription_identifiers() -> None:
    conn, client = open_connection(MQTT_5)
    pub = Publish("t", b"", properties=Properties(subscription_identifiers=(1,)))
    (event,) = conn.receive_data(client.wire(pub), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR


def test_MQTT_3_1_2_33_only_auth_or_disconnect_during_enhanced_authentication() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    connect = connect_packet(MQTT_5, authentication_method="SCRAM-SHA-1")
    events = conn.receive_data(client.wire(connect, Publish("t", b"")), 0.0)
    assert events[0] == connect
    assert isinstance(events[1], ProtocolViolation)
    assert events[1].reason_code == R.PROTOCOL_ERROR


def test_MQTT_3_1_2_28_publish_over_client_maximum_packet_size_is_dropped() -> None:
    conn, client = open_connection(MQTT_5, maximum_packet_size=100)
    assert conn.send_publish("t", b"x" * 200) is False
    assert conn.send_publish("t", b"x" * 10) is True
    assert client.read(conn) == [Publish("t", b"x" * 10)]


def test_reason_string_dropped_to_fit_client_maximum_packet_size() -> None:
    conn, client = open_connection(MQTT_5, maximum_packet_size=40)
    long = Properties(reason_string="r" * 100, user_properties=(("k", "v"),))
    assert conn.send(PubAck(1, R.NO_MATCHING_SUBSCRIBERS, long)) is True
    assert client.read(conn) == [PubAck(1, R.NO_MATCHING_SUBSCRIBERS)]


def test_MQTT_3_1_2_32_no_problem_information_when_not_requested() -> None:
    conn, client = open_connection(MQTT_5, request_problem_information=False)
    props = Properties(reason_string="why", user_properties=(("k", "v"),))
    user = Properties(user_properties=(("k", "v"),))
    conn.send(PubRec(1, R.QUOTA_EXCEEDED, props))
    conn.send(Publish("t", b"", properties=user))  # PUBLISH keeps them
    conn.close(R.SERVER_BUSY, props)  # so does DISCONNECT
    assert client.read(conn) == [
        PubRec(1, R.QUOTA_EXCEEDED),
        Publish("t", b"", properties=user),
        Disconnect(R.SERVER_BUSY, props),
    ]


def test_packets_that_cannot_shrink_to_fit_are_not_sent() -> None:
    conn, client = open_connection(MQTT_5, maximum_packet_size=5)  # CONNACK is 5 bytes
    conn.receive_data(client.wire(PingReq()), 1.0)
    assert conn.send(SubAck(1, (R.GRANTED_QOS_0,) * 5)) is False  # 10 bytes, nothing to drop
    assert conn.send(PubAck(1, R.QUOTA_EXCEEDED, Properties(reason_string="full"))) is True
    assert client.read(conn) == [PingResp(), PubAck(1, R.QUOTA_EXCEEDED)]


def test_connack_that_does_not_fit_closes() -> None:
    conn = MqttConnection(max_packet_size=1024)
    connect = connect_packet(MQTT_5, maximum_packet_size=4)
    conn.receive_data(encode(connect, MQTT_5), now=0.0)
    assert conn.send(ConnAck()) is False
    assert closed(conn)
    assert conn.data_to_send() == b""


def test_packets_without_problem_information_are_sent_unchanged() -> None:
    conn, client = open_connection(MQTT_5, request_problem_information=False)
    assert conn.send(PubAck(1, properties=Properties(user_properties=()))) is True
    assert conn.send(SubAck(2, (R.GRANTED_QOS_1,))) is True
    assert client.read(conn) == [PubAck(1), SubAck(2, (R.GRANTED_QOS_1,))]


def test_MQTT_3_14_2_2_server_disconnect_never_carries_session_expiry() -> None:
    conn, client = open_connection(MQTT_5)
    conn.close(R.SERVER_SHUTTING_DOWN, Properties(session_expiry_interval=5, reason_string="bye"))
    assert client.read(conn) == [
        Disconnect(R.SERVER_SHUTTING_DOWN, Properties(reason_string="bye"))
    ]
    conn, client = open_connection(MQTT_5)
    conn.send(Disconnect(R.SERVER_BUSY, Properties(session_expiry_interval=5)))
    assert client.read(conn) == [Disconnect(R.SERVER_BUSY)]


def test_client_limits_from_connect_are_exposed() -> None:
    conn, _ = open_connection(
        MQTT_5,
        receive_maximum=10,
        maximum_packet_size=500,
        topic_alias_maximum=4,
        request_problem_information=False,
    )
    assert conn.client_receive_maximum == 10
    assert conn.client_maximum_packet_size == 500
    assert conn.client_topic_alias_maximum == 4
    assert conn.request_problem_information is False
