"""paho-mqtt against configured limits and users: maximum packet size, malformed input costs one
connection only, maximum connections, credentials, shutdown DISCONNECT 0x8B."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.core.users import hash_password
from tests.gateway_runner import RunningGateway, running_gateway

from .mqtt_helpers import (
    HOST,
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    uid,
    wait_until,
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningGateway]:
    users = [
        # A cheap scrypt cost keeps the test fast; the format is what `gateway passwd` prints.
        {"name": "alice", "password_hash": hash_password("wonderland", n=16)},
    ]
    overrides = {"max_packet_size": 1024, "max_connections": 3}
    with running_gateway(mqtt=overrides, users=users) as running:
        yield running


def connections(gateway: RunningGateway) -> int:
    return gateway.call(lambda: gateway.gateway.mqtt.connections)


def test_packet_larger_than_max_packet_size_is_0x95(limited: RunningGateway) -> None:
    client = Paho(limited.mqtt_port)
    assert client.connack is not None
    assert client.connack.properties is not None
    assert client.connack.properties.MaximumPacketSize == 1024
    topic = uid("big")
    client.subscribe(topic, 1)
    client.publish(topic, b"x" * 900, qos=1)
    assert len(client.next().payload) == 900
    client.client.publish(topic, b"x" * 1100, qos=1)
    assert client.next_disconnect().reason_code == 0x95  # Packet too large
    wait_until(lambda: connections(limited) == 0)


def test_malformed_packet_closes_only_that_connection(limited: RunningGateway) -> None:
    topic = uid("malformed")
    healthy = Paho(limited.mqtt_port)
    healthy.subscribe(topic, 1)
    for garbage in (
        b"\x10\x04\x00\x04MQ",  # CONNECT cut short and then the peer goes on with nonsense
        b"\xf0\x00",  # reserved packet type 15 as the first packet
        b"\x30\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
    ):
        with socket.create_connection((HOST, limited.mqtt_port), timeout=5) as raw:
            raw.sendall(garbage + b"\x00" * 8)
            raw.settimeout(5)
            while raw.recv(1024):  # the gateway answers as it may, then closes
                pass
    healthy.publish(topic, b"still fine", qos=1)
    assert healthy.next().payload == b"still fine"
    healthy.close()


@pytest.mark.parametrize(("version", "busy"), [(V311, "Server unavailable"), (V5, "Server busy")])
def test_max_connections(limited: RunningGateway, version: MQTTProtocolVersion, busy: str) -> None:
    wait_until(lambda: connections(limited) == 0)
    clients = [Paho(limited.mqtt_port, version=version) for _ in range(3)]
    extra = Paho(limited.mqtt_port, version=version, connect=False)
    refused = extra.connect()
    assert refused.reason_name == busy  # v5 0x89, 3.1.1 return code 3
    clients.pop().disconnect()
    wait_until(lambda: connections(limited) == 2)
    assert extra.connect().reason_code == 0
    for client in [*clients, extra]:
        client.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_configured_user_connects(limited: RunningGateway, version: MQTTProtocolVersion) -> None:
    client = Paho(limited.mqtt_port, version=version, username="alice", password="wonderland")
    topic = uid("alice")
    client.subscribe(topic, 1)
    client.publish(topic, b"hi", qos=1)
    assert client.next().payload == b"hi"
    client.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong"), ("mallory", "wonderland"), ("guest", "nope")]
)
def test_bad_credentials_are_refused(
    limited: RunningGateway, version: MQTTProtocolVersion, username: str, password: str
) -> None:
    client = Paho(
        limited.mqtt_port, version=version, username=username, password=password, connect=False
    )
    ack = client.connect()
    # v5 0x86; 3.1.1 return code 4 (paho names both the same way).
    assert ack.reason_name == "Bad user name or password"
    assert ack.reason_code == 0x86
    client.next_disconnect()


def test_guest_connects_from_loopback(limited: RunningGateway) -> None:
    client = Paho(limited.mqtt_port, username="guest", password="guest")
    client.close()


def test_shutdown_tells_v5_clients_0x8b() -> None:
    with running_gateway() as running:
        v5 = Paho(running.mqtt_port)
        v311 = Paho(running.mqtt_port, version=V311)
        ws = Paho(running.ws_port, transport="websockets")
        running.stop()
        assert v5.next_disconnect().reason_code == 0x8B  # Server shutting down
        assert ws.next_disconnect().reason_code == 0x8B
        assert v311.next_disconnect().reason_code != 0  # 3.1.1: just closed


def test_offline_session_keeps_the_newest_and_counts_what_it_dropped() -> None:
    """max_queued_messages bounds a persistent session's queue while the client is away: the
    oldest messages go first, and how many went is visible per queue (for /metrics)."""
    with running_gateway(mqtt={"max_queued_messages": 3}) as gw:
        topic = uid("offline")
        device = Paho(gw.mqtt_port, version=V311, clean=False)
        device.subscribe(topic, 1)
        device.disconnect()
        publisher = Paho(gw.mqtt_port)
        for i in range(5):
            publisher.publish_with_ack(topic, str(i).encode(), 1)
        queue_name = f"mqtt-subscription-{device.client_id}"
        dropped = gw.call(lambda: gw.gateway.broker.vhost("/").queue(queue_name).dropped)
        assert dropped == 2
        assert device.connect(clean=False).session_present
        assert [m.payload for m in device.take(3)] == [b"2", b"3", b"4"]
        device.assert_silent()


def test_qos0_burst_while_offline_does_not_push_out_queued_qos1() -> None:
    """An offline persistent session queues QoS 1/2 only (Mosquitto's default): QoS 0 traffic
    is counted as dropped instead of taking the places of QoS 1 messages."""
    with running_gateway(mqtt={"max_queued_messages": 3}) as gw:
        topic = uid("burst")
        device = Paho(gw.mqtt_port, version=V311, clean=False)
        device.subscribe(topic, 1)
        device.disconnect()
        publisher = Paho(gw.mqtt_port)
        publisher.publish_with_ack(topic, b"keep-1", 1)
        for i in range(10):
            publisher.publish(topic, f"noise-{i}".encode(), 0)
        publisher.publish_with_ack(topic, b"keep-2", 1)
        queue_name = f"mqtt-subscription-{device.client_id}"
        dropped = gw.call(lambda: gw.gateway.broker.vhost("/").queue(queue_name).dropped)
        assert dropped == 10
        assert device.connect(clean=False).session_present
        assert [m.payload for m in device.take(2)] == [b"keep-1", b"keep-2"]
        device.assert_silent()
        publisher.publish(topic, b"online", 0)  # online again: QoS 0 flows
        assert device.next().payload == b"online"
