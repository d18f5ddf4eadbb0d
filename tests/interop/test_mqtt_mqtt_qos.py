"""paho-mqtt publisher -> gateway -> paho-mqtt subscriber, over TCP and WebSocket: QoS 0/1/2
both ways, delivered QoS = min(published, granted), mixed protocol versions."""

from __future__ import annotations

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    Transport,
    close_clients,  # noqa: F401  (autouse: closes every client)
    uid,
)

pytestmark = pytest.mark.interop

ROUTES = [
    pytest.param(V311, V311, "tcp", id="v311-tcp"),
    pytest.param(V5, V5, "tcp", id="v5-tcp"),
    pytest.param(V5, V311, "tcp", id="v5-to-v311"),
    pytest.param(V311, V5, "websockets", id="v311-to-v5-ws"),
    pytest.param(V5, V5, "websockets", id="v5-ws"),
]


def port_for(gateway: RunningGateway, transport: Transport) -> int:
    return gateway.ws_port if transport == "websockets" else gateway.mqtt_port


@pytest.mark.parametrize(("pub_version", "sub_version", "transport"), ROUTES)
def test_MQTT_3_8_4_8_delivered_qos_is_min_of_published_and_granted(
    gateway: RunningGateway,
    pub_version: MQTTProtocolVersion,
    sub_version: MQTTProtocolVersion,
    transport: Transport,
) -> None:
    topic = uid("qos")
    port = port_for(gateway, transport)
    subscribers = {}
    for granted in (0, 1, 2):
        sub = Paho(port, version=sub_version, transport=transport)
        assert sub.subscribe(f"{topic}/+", granted) == [granted]
        subscribers[granted] = sub
    pub = Paho(port, version=pub_version, transport=transport)
    try:
        for qos in (0, 1, 2):
            # PUBACK / PUBCOMP come back with success: there are subscribers.
            assert pub.publish(f"{topic}/m{qos}", f"q{qos}".encode(), qos=qos) == 0
        for granted, sub in subscribers.items():
            got = sorted((m.topic, m.payload, m.qos) for m in sub.take(3))
            assert got == [(f"{topic}/m{q}", f"q{q}".encode(), min(q, granted)) for q in range(3)]
            sub.assert_silent(0.05)
    finally:
        pub.close()
        for sub in subscribers.values():
            sub.close()


@pytest.mark.parametrize("version", [V311, V5])
def test_qos_order_is_kept_per_publisher(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("order")
    sub = Paho(gateway.mqtt_port, version=version)
    sub.subscribe(topic, 2)
    pub = Paho(gateway.mqtt_port, version=version)
    for n in range(50):
        pub.client.publish(topic, str(n).encode(), qos=1 + n % 2)
    got = [(m.qos, int(m.payload)) for m in sub.take(50)]
    # paho hands a QoS 2 message over at PUBREL, so order holds per QoS level [MQTT-4.6.0-6].
    for qos in (1, 2):
        assert [n for q, n in got if q == qos] == list(range(qos - 1, 50, 2))
    pub.close()
    sub.close()


def test_v5_publish_without_subscribers_gets_0x10(gateway: RunningGateway) -> None:
    pub = Paho(gateway.mqtt_port)
    # No matching subscribers (paho reports PUBACK's code; PUBREC's is checked with a raw
    # client in test_mqtt_raw_qos.py).
    assert pub.publish(uid("nobody"), b"x", qos=1) == 0x10
    pub.close()


def test_v311_publish_without_subscribers_is_acked(gateway: RunningGateway) -> None:
    pub = Paho(gateway.mqtt_port, version=V311)
    assert pub.publish(uid("nobody"), b"x", qos=1) == 0
    assert pub.publish(uid("nobody"), b"x", qos=2) == 0
    pub.close()


def test_unsubscribe_stops_delivery(gateway: RunningGateway) -> None:
    topic = uid("unsub")
    sub = Paho(gateway.mqtt_port)
    sub.subscribe(f"{topic}/#", 1)
    sub.subscribe(f"{topic}/+", 1)
    assert sub.unsubscribe(f"{topic}/#") == [0]
    assert sub.unsubscribe(f"{topic}/never") == [0x11]  # No subscription existed
    pub = Paho(gateway.mqtt_port)
    pub.publish(f"{topic}/a", b"still", qos=1)
    assert sub.next().payload == b"still"
    assert sub.unsubscribe(f"{topic}/+") == [0]
    assert pub.publish(f"{topic}/a", b"gone", qos=1) == 0x10
    sub.assert_silent()
    pub.close()
    sub.close()
