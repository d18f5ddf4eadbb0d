"""The server protocol machine: handshake, violations, close, sending, the transition table.

Driven by bytes from a client built on our codec; the clock is a plain float.
"""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-3.1.2-24.

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import encode
from gateway.mqtt.connection import (
    RECEIVE_TRANSITIONS,
    SEND_TRANSITIONS,
    ConnectionState,
    Event,
    LocalProtocolError,
    MqttConnection,
    ProtocolViolation,
)
from gateway.mqtt.packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
)
from tests.unit.mqtt.connection_helpers import (
    Client,
    closed,
    connect_packet,
    open_connection,
    state,
)

R = ReasonCode
S = ConnectionState


@pytest.mark.parametrize("version", [MQTT_3_1, MQTT_3_1_1, MQTT_5])
def test_connect_handshake(version: int) -> None:
    conn = MqttConnection(max_packet_size=1024)
    assert state(conn) is S.AWAIT_CONNECT
    assert (conn.protocol_level, conn.connect) == (None, None)
    client = Client(version)
    connect = connect_packet(version, keep_alive=30)
    assert conn.receive_data(client.wire(connect), now=1.0) == [connect]
    assert conn.connect == connect
    assert conn.protocol_level == version
    assert conn.keep_alive == 30
    assert conn.data_to_send() == b""  # nothing goes out before the session answers
    conn.send(ConnAck(session_present=True))
    assert client.read(conn) == [ConnAck(session_present=True)]
    assert state(conn) is S.CONNECTED
    assert not closed(conn)
    assert conn.connect is None  # not kept once answered (issue 7, S7: idle connections)


def test_connect_split_across_reads() -> None:
    conn = MqttConnection(max_packet_size=1024)
    wire = encode(connect_packet(MQTT_5), MQTT_5)
    events: list[Event] = []
    for index in range(len(wire)):
        events += conn.receive_data(wire[index : index + 1], now=0.0)
    assert events == [connect_packet(MQTT_5)]


def test_client_limits_default_when_absent() -> None:
    conn, _ = open_connection(MQTT_3_1_1)
    assert conn.client_receive_maximum == 65535
    assert conn.client_maximum_packet_size is None
    assert conn.client_topic_alias_maximum == 0
    assert conn.request_problem_information is True


def test_refused_connack_closes() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    conn.receive_data(client.wire(connect_packet(MQTT_5)), now=0.0)
    conn.send(ConnAck(reason_code=R.NOT_AUTHORIZED))
    assert closed(conn)
    assert client.read(conn) == [ConnAck(reason_code=R.NOT_AUTHORIZED)]


def test_pipelined_packets_after_connect_come_out_in_order() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_3_1_1)
    sub = Subscribe(1, (("a/#", SubscriptionOptions(1)),))
    pub = Publish("a/b", b"x", 1, packet_id=2)
    events = conn.receive_data(client.wire(connect_packet(MQTT_3_1_1), sub, pub), now=0.0)
    assert events == [connect_packet(MQTT_3_1_1), sub, pub]


def test_MQTT_3_1_2_2_unsupported_level_gets_a_v311_connack_1() -> None:
    conn = MqttConnection(max_packet_size=1024)
    wire = bytearray(encode(connect_packet(MQTT_3_1_1), MQTT_3_1_1))
    wire[8] = 9  # protocol level
    (event,) = conn.receive_data(bytes(wire), now=0.0)
    assert event == ProtocolViolation(R.UNSUPPORTED_PROTOCOL_VERSION, event.text)  # type: ignore[union-attr]
    assert conn.data_to_send() == b"\x20\x02\x00\x01"
    assert closed(conn)


def test_packet_before_connect_is_rejected() -> None:
    conn = MqttConnection(max_packet_size=1024)
    (event,) = conn.receive_data(b"\xc0\x00", now=0.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR
    assert closed(conn)
    assert conn.data_to_send() == b""  # no version yet: nothing to say it in


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_MQTT_3_1_0_2_second_connect_is_rejected(version: int) -> None:
    conn, client = open_connection(version)
    (event,) = conn.receive_data(client.wire(connect_packet(version)), now=1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR
    assert closed(conn)
    sent = client.read(conn)
    if version == MQTT_5:
        assert [type(p) for p in sent] == [Disconnect]
        assert sent[0].reason_code == R.PROTOCOL_ERROR  # type: ignore[union-attr]
    else:
        assert sent == []


def test_second_connect_before_connack_is_rejected_with_a_connack() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    events = conn.receive_data(client.wire(connect_packet(MQTT_5), connect_packet(MQTT_5)), 0.0)
    assert [type(e) for e in events] == [Connect, ProtocolViolation]
    # No DISCONNECT before a successful CONNACK [MQTT-3.14.0-1]: a refusing CONNACK instead.
    assert client.read(conn) == [ConnAck(reason_code=R.PROTOCOL_ERROR)]


@pytest.mark.parametrize("packet", [ConnAck(), SubAck(1, (R.GRANTED_QOS_0,)), PingResp()])
def test_server_only_packets_from_the_client_are_rejected(packet: Packet) -> None:
    conn, client = open_connection(MQTT_5)
    (event,) = conn.receive_data(client.wire(packet), now=1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR


def test_malformed_packet_in_mqtt5_gets_disconnect_0x81() -> None:
    conn, client = open_connection(MQTT_5)
    (event,) = conn.receive_data(b"\x36\x04\x00\x01t\x00", now=1.0)  # QoS 3
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.MALFORMED_PACKET
    (disconnect,) = client.read(conn)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == R.MALFORMED_PACKET
    assert disconnect.properties.reason_string == event.text


def test_packet_too_large_gets_disconnect_0x95() -> None:
    conn, client = open_connection(MQTT_5)
    (event,) = conn.receive_data(b"\x30\xff\xff\x03", now=1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PACKET_TOO_LARGE
    assert client.read(conn)[0] == Disconnect(
        R.PACKET_TOO_LARGE, Properties(reason_string=event.text)
    )


def test_good_packet_then_bad_bytes_in_one_read() -> None:
    conn, client = open_connection(MQTT_5)
    pub = Publish("a", b"1", 1, packet_id=1)
    events = conn.receive_data(client.wire(pub) + b"\x00\x00", now=1.0)
    assert events[0] == pub
    assert isinstance(events[1], ProtocolViolation)
    assert closed(conn)


def test_nothing_is_received_after_close() -> None:
    conn, client = open_connection(MQTT_5)
    conn.close()
    assert conn.receive_data(client.wire(PingReq()), now=1.0) == []
    assert conn.handle_timer(1e9) == []
    assert conn.get_timer() is None


def test_close_queues_disconnect_with_the_code_in_mqtt5() -> None:
    conn, client = open_connection(MQTT_5)
    conn.close(R.SERVER_SHUTTING_DOWN)
    assert closed(conn)
    assert client.read(conn) == [Disconnect(R.SERVER_SHUTTING_DOWN)]
    conn.close(R.SERVER_SHUTTING_DOWN)  # idempotent
    assert conn.data_to_send() == b""


def test_close_with_a_code_disconnect_cannot_carry() -> None:
    conn, client = open_connection(MQTT_5)
    conn.close(R.BAD_USER_NAME_OR_PASSWORD)
    assert client.read(conn) == [Disconnect(R.UNSPECIFIED_ERROR)]


def test_close_sends_nothing_in_v311() -> None:
    conn, _ = open_connection(MQTT_3_1_1)
    conn.close(R.SERVER_SHUTTING_DOWN)
    assert closed(conn)
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (MQTT_5, ConnAck(reason_code=R.SERVER_UNAVAILABLE)),
        (MQTT_3_1_1, ConnAck(reason_code=R.SERVER_UNAVAILABLE)),
    ],
)
def test_close_before_connack_refuses_the_connect(version: int, expected: ConnAck) -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(version)
    conn.receive_data(client.wire(connect_packet(version)), now=0.0)
    conn.close(R.SERVER_SHUTTING_DOWN)  # not a CONNACK code: the nearest one is used
    assert client.read(conn) == [expected]


def test_close_before_connect_sends_nothing() -> None:
    conn = MqttConnection(max_packet_size=1024)
    conn.close(R.SERVER_SHUTTING_DOWN)
    assert closed(conn)
    assert conn.data_to_send() == b""


def test_client_disconnect_closes() -> None:
    conn, client = open_connection(MQTT_5)
    events = conn.receive_data(client.wire(Disconnect(R.DISCONNECT_WITH_WILL_MESSAGE)), 1.0)
    assert events == [Disconnect(R.DISCONNECT_WITH_WILL_MESSAGE)]
    assert closed(conn)
    assert conn.send(PubAck(1)) is False  # late sends are dropped, not errors


def test_disconnect_cannot_add_session_expiry() -> None:
    conn, client = open_connection(MQTT_5)  # CONNECT had no Session Expiry: 0
    wire = client.wire(Disconnect(properties=Properties(session_expiry_interval=60)))
    (event,) = conn.receive_data(wire, now=1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason_code == R.PROTOCOL_ERROR


def test_disconnect_may_change_a_nonzero_session_expiry() -> None:
    conn, client = open_connection(MQTT_5, session_expiry_interval=10)
    wire = client.wire(Disconnect(properties=Properties(session_expiry_interval=60)))
    (event,) = conn.receive_data(wire, now=1.0)
    assert isinstance(event, Disconnect)


def test_send_before_connack_is_a_local_error() -> None:
    conn = MqttConnection(max_packet_size=1024)
    conn.receive_data(encode(connect_packet(MQTT_5), MQTT_5), now=0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(Publish("t", b""))
    with pytest.raises(LocalProtocolError):
        conn.send(PubAck(1))
    with pytest.raises(LocalProtocolError):
        conn.send(Disconnect())  # [MQTT-3.14.0-1]
    assert conn.send(Auth(R.CONTINUE_AUTHENTICATION)) is True


def test_send_before_connect_is_a_local_error() -> None:
    conn = MqttConnection(max_packet_size=1024)
    with pytest.raises(LocalProtocolError):
        conn.send(ConnAck())


def test_auth_cannot_be_sent_in_v311() -> None:
    conn, _ = open_connection(MQTT_3_1_1)
    with pytest.raises(LocalProtocolError):
        conn.send(Auth())


def test_send_disconnect_in_v311_only_closes() -> None:
    conn, _ = open_connection(MQTT_3_1_1)
    assert conn.send(Disconnect(R.SERVER_SHUTTING_DOWN)) is True
    assert closed(conn)
    assert conn.data_to_send() == b""


def test_send_publish_queues_header_and_payload() -> None:
    conn, client = open_connection(MQTT_5)
    payload = b"p" * 1000
    assert conn.send_publish("a/b", payload, qos=1, packet_id=3, dup=True) is True
    assert conn.send(Publish("c", b"", retain=True)) is True
    assert client.read(conn) == [
        Publish("a/b", payload, 1, dup=True, packet_id=3),
        Publish("c", b"", retain=True),
    ]


def test_send_after_close_returns_false() -> None:
    conn, _ = open_connection(MQTT_5)
    conn.close()
    conn.data_to_send()
    assert conn.send(Publish("t", b"x")) is False
    assert conn.send_publish("t", b"x") is False
    assert conn.send_encoded(b"\x30\x04\x00\x01tx", b"x") == 0  # not sent
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_send_encoded_queues_the_header_and_payload_as_given(version: int) -> None:
    conn, client = open_connection(version)
    header = encode(Publish("a/b", b"hi", retain=True), version)[:-2]
    # The answer is how many chunks now wait: what tells a caller it queued the first.
    assert conn.send_encoded(header, b"hi") == conn.pending_chunks == 2
    # A PUBLISH with an empty payload is all header; it adds no payload chunk.
    assert conn.send_encoded(encode(Publish("c", b""), version), b"") == 3
    assert conn.pending_chunks == 3
    assert client.read(conn) == [Publish("a/b", b"hi", retain=True), Publish("c", b"")]


def test_send_encoded_before_connack_is_a_local_error() -> None:
    conn = MqttConnection(max_packet_size=1024)
    conn.receive_data(encode(connect_packet(MQTT_5), MQTT_5), 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send_encoded(b"\x30\x04\x00\x01tx", b"")


def test_send_encoded_respects_the_client_maximum_packet_size() -> None:
    """[MQTT-3.1.2-25]: header and payload together must fit."""
    conn, _ = open_connection(MQTT_5, maximum_packet_size=8)
    header = b"\x30\x05\x00\x01t\x00"  # QoS 0 "t", empty properties: 6 bytes
    assert conn.send_encoded(header, b"xyz") == 0  # 9 bytes: not sent
    assert conn.send_encoded(header, b"xy") == 2  # 8 bytes
    assert conn.data_to_send() == header + b"xy"


_CLIENT_KINDS: list[Packet] = [
    PingReq(),
    PubAck(1),
    Subscribe(1, (("a", SubscriptionOptions()),)),
    Unsubscribe(1, ("a",)),
    Publish("a", b""),
]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(_CLIENT_KINDS), max_size=8))
def test_any_sequence_of_client_packets_after_connack_is_accepted(seq: list[Packet]) -> None:
    conn, client = open_connection(MQTT_3_1_1)
    events = conn.receive_data(client.wire(*seq), 1.0)
    assert events == [p for p in seq if not isinstance(p, PingReq)]
    assert state(conn) is S.CONNECTED


def test_acks_fast_path_agrees_with_the_send_table() -> None:
    for kind in (PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck):
        assert SEND_TRANSITIONS[(S.CONNECTED, kind)] is S.CONNECTED
        assert (S.AWAIT_CONNACK, kind) not in SEND_TRANSITIONS


def test_transition_table_never_leaves_closed() -> None:
    assert all(state is not S.CLOSED for state, _ in RECEIVE_TRANSITIONS)
    assert (S.AWAIT_CONNECT, Connect) in RECEIVE_TRANSITIONS
    assert all(kind is Connect for state, kind in RECEIVE_TRANSITIONS if state is S.AWAIT_CONNECT)


def test_v311_violation_before_connack_sends_nothing() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_3_1_1)
    wire = client.wire(connect_packet(MQTT_3_1_1), connect_packet(MQTT_3_1_1))
    assert isinstance(conn.receive_data(wire, 0.0)[1], ProtocolViolation)
    assert conn.data_to_send() == b""


def test_close_before_connack_with_a_code_connack_cannot_carry() -> None:
    conn = MqttConnection(max_packet_size=1024)
    client = Client(MQTT_5)
    conn.receive_data(client.wire(connect_packet(MQTT_5)), now=0.0)
    conn.close(R.SESSION_TAKEN_OVER)
    assert client.read(conn) == [ConnAck(reason_code=R.UNSPECIFIED_ERROR)]
