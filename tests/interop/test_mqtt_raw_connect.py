"""Exact wire behaviour at the edges of a connection, with a raw client: CONNACK codes in both
versions, SUBACK failure codes for filters client libraries refuse to send, keep-alive, and
protocol errors."""

from __future__ import annotations

import socket
import uuid

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    Properties,
    Publish,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    Will,
)
from tests.gateway_runner import RunningGateway

from .mqtt_raw import (
    RawClient,
    close_raw_clients,  # noqa: F401  (autouse: closes every client)
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(MQTT_3_1_1, id="v311"), pytest.param(MQTT_5, id="v5")]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def raw_connack(gateway: RunningGateway, connect: Connect) -> bytes:
    """The CONNACK bytes exactly as the gateway wrote them, and the connection must close."""
    with socket.create_connection(("127.0.0.1", gateway.mqtt_port), timeout=5) as sock:
        sock.sendall(encode(connect, connect.protocol_level))
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
    return data


def test_MQTT_3_1_3_8_v311_empty_client_id_without_clean_session_is_refused(
    gateway: RunningGateway,
) -> None:
    wire = raw_connack(gateway, Connect("", protocol_level=MQTT_3_1_1, clean_start=False))
    assert wire == b"\x20\x02\x00\x02"  # return code 2: identifier rejected, then closed


@pytest.mark.parametrize(
    ("level", "expected"),
    [(MQTT_3_1_1, b"\x20\x02\x00\x04"), (MQTT_5, b"\x20\x03\x00\x86\x00")],
)
def test_bad_password_connack_on_the_wire(
    gateway: RunningGateway, level: int, expected: bytes
) -> None:
    connect = Connect(uid("bad"), protocol_level=level, username="guest", password=b"nope")
    assert raw_connack(gateway, connect) == expected


def test_unsupported_protocol_level_gets_return_code_1(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.mqtt_port), timeout=5) as sock:
        # CONNECT "MQTT" level 6.
        sock.sendall(b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x00\x00\x01x")
        assert sock.recv(16) == b"\x20\x02\x00\x01"
        assert sock.recv(16) == b""


MISPLACED = ["a/#/b", "a/b#", "a+/b", "#/x", "$share/g+/a", "$share/g/a/#/b"]


@pytest.mark.parametrize(
    ("level", "failure"), [(MQTT_3_1_1, ReasonCode(0x80)), (MQTT_5, ReasonCode(0x8F))]
)
def test_MQTT_3_8_3_suback_failure_for_misplaced_wildcards(
    gateway: RunningGateway, level: int, failure: ReasonCode
) -> None:
    client = RawClient(gateway.mqtt_port, level)
    client.connect(uid("badfilter"))
    entries = tuple((f, SubscriptionOptions(1)) for f in ["ok/+", *MISPLACED])
    client.send(Subscribe(5, entries))
    ack = client.expect(SubAck)
    assert ack.packet_id == 5
    assert ack.reason_codes == (ReasonCode(1), *([failure] * len(MISPLACED)))
    client.close()


@pytest.mark.parametrize("level", VERSIONS)
def test_MQTT_3_1_2_22_keep_alive_timeout_closes_and_sends_the_will(
    gateway: RunningGateway, level: int
) -> None:
    topic = uid("ka")
    watcher = RawClient(gateway.mqtt_port)
    watcher.connect(uid("watch"))
    watcher.subscribe(topic, 0)
    silent = RawClient(gateway.mqtt_port, level)
    silent.connect(uid("silent"), keep_alive=1, will=Will(topic, b"timed out"))
    # Nothing sent for 1.5 x keep-alive: v5 gets DISCONNECT 0x8D, 3.1.1 just a close.
    got = silent.expect_closed(timeout=4)
    if level == MQTT_5:
        assert got == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)]
    else:
        assert got == []
    assert watcher.expect(Publish).payload == b"timed out"
    watcher.close()


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x41\x02\x00\x01", id="puback-reserved-flags"),
        pytest.param(b"\x30\x05\x00\x09abc", id="topic-runs-past-packet"),
        pytest.param(b"\x82\x04\x00\x01\x00\x00", id="subscribe-without-filters"),
    ],
)
def test_malformed_packet_gets_0x81_and_costs_only_that_connection(
    gateway: RunningGateway, garbage: bytes
) -> None:
    topic = uid("survivor")
    other = RawClient(gateway.mqtt_port)
    other.connect(uid("other"))
    bad = RawClient(gateway.mqtt_port)
    bad.connect(uid("bad"))
    bad.send_bytes(garbage)
    (disconnect,) = bad.expect_closed()
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code in (ReasonCode.MALFORMED_PACKET, ReasonCode.PROTOCOL_ERROR)
    other.subscribe(topic, 0)
    other.publish(topic, b"alive")
    assert other.expect(Publish).payload == b"alive"
    other.close()


def test_second_connect_is_a_protocol_error(gateway: RunningGateway) -> None:
    client = RawClient(gateway.mqtt_port)
    client.connect(uid("twice"))
    client.send(Connect(uid("twice")))
    (disconnect,) = client.expect_closed()
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.PROTOCOL_ERROR


def test_v311_subscriber_gets_a_v5_message_without_properties(gateway: RunningGateway) -> None:
    topic = uid("v311props")
    sub = RawClient(gateway.mqtt_port, MQTT_3_1_1)
    sub.connect(uid("sub311"))
    sub.subscribe(topic, 0)
    pub = RawClient(gateway.mqtt_port)
    pub.connect(uid("pub5"))
    rich = Properties(content_type="x", user_properties=(("a", "b"),), message_expiry_interval=9)
    pub.publish(topic, b"p", 0, properties=rich)
    got = sub.expect(Publish)  # decoded as 3.1.1: a property section would break the payload
    assert (got.topic, got.payload) == (topic, b"p")
    sub.close()
    pub.close()


def test_connack_answers_pipelined_packets_in_order(gateway: RunningGateway) -> None:
    topic = uid("pipeline")
    client = RawClient(gateway.mqtt_port)
    client.send(
        Connect(uid("pipe"), protocol_level=MQTT_5),
        Subscribe(1, ((topic, SubscriptionOptions(0)),)),
        Publish(topic, b"me"),
    )
    assert isinstance(client.recv(), ConnAck)
    assert isinstance(client.recv(), SubAck)
    assert client.expect(Publish).payload == b"me"
    client.close()
