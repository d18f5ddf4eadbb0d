"""paho-mqtt (3.1.1 and 5) against the gateway: CONNECT, clean and persistent sessions, Session
Expiry, client-id takeover, assigned client ids."""

from __future__ import annotations

import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
    uid,
    wait_until,
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def persistent(version: MQTTProtocolVersion, expiry: int = 60) -> dict[str, object]:
    """Connect options of a session that outlives the connection in either version."""
    if version == V5:
        return {
            "clean": False,
            "properties": props(PacketTypes.CONNECT, SessionExpiryInterval=expiry),
        }
    return {"clean": False}


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_2_2_2_clean_session_is_never_present(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    cid = uid("clean")
    first = Paho(gateway.mqtt_port, cid, version=version)
    assert first.connack is not None
    assert not first.connack.session_present
    first.subscribe(uid("t"), 1)
    first.disconnect()
    again = Paho(gateway.mqtt_port, cid, version=version)
    assert again.connack is not None
    assert not again.connack.session_present
    again.close()
    wait_until(lambda: gateway.call(lambda: cid not in gateway.gateway.mqtt.sessions))


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_1_2_5_persistent_session_keeps_subscriptions_and_queued_messages(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    cid, topic = uid("persist"), uid("persist")
    sub = Paho(gateway.mqtt_port, cid, version=version, **persistent(version))  # type: ignore[arg-type]
    assert sub.connack is not None
    assert not sub.connack.session_present
    assert sub.subscribe(f"{topic}/#", 2) == [2]
    sub.disconnect()

    pub = Paho(gateway.mqtt_port, version=version)
    assert pub.publish(f"{topic}/one", b"q1", qos=1) == 0
    assert pub.publish(f"{topic}/two", b"q2", qos=2) == 0
    pub.publish(f"{topic}/zero", b"q0", qos=0)
    pub.close()

    ack = sub.connect()
    assert ack.session_present
    got = sub.take(2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        (f"{topic}/one", b"q1", 1),
        (f"{topic}/two", b"q2", 2),
    ]
    # As Mosquitto: QoS 0 traffic is not kept for a client that is away.
    sub.assert_silent()
    # The subscription itself survived too.
    pub = Paho(gateway.mqtt_port, version=version)
    pub.publish(f"{topic}/live", b"live", qos=0)
    assert sub.next().payload == b"live"
    pub.close()
    sub.close()


def test_MQTT_3_1_2_4_clean_start_discards_the_old_session(gateway: RunningGateway) -> None:
    cid, topic = uid("discard"), uid("discard")
    sub = Paho(gateway.mqtt_port, cid, **persistent(V5))  # type: ignore[arg-type]
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"lost", qos=1)
    ack = sub.connect(clean=True)
    assert not ack.session_present
    sub.assert_silent()
    pub.publish(topic, b"not subscribed any more", qos=1)
    sub.assert_silent()
    pub.close()
    sub.close()


def test_session_expiry_ends_the_session(gateway: RunningGateway) -> None:
    cid, topic = uid("expiry"), uid("expiry")
    sub = Paho(gateway.mqtt_port, cid, **persistent(V5, expiry=1))  # type: ignore[arg-type]
    sub.subscribe(topic, 1)
    sub.kill()
    sessions = gateway.gateway.mqtt.sessions
    wait_until(lambda: gateway.call(lambda: cid in sessions and sessions[cid].handler is None))
    # Gone about a second later: no session, no queue.
    wait_until(lambda: gateway.call(lambda: cid not in sessions), timeout=4)
    queue = f"mqtt-subscription-{cid}"
    assert not gateway.call(lambda: gateway.gateway.mqtt.queue_exists(queue))
    ack = sub.connect(clean=False)
    assert not ack.session_present
    sub.close()


def test_session_expiry_from_disconnect_replaces_the_connect_value(
    gateway: RunningGateway,
) -> None:
    cid = uid("dexp")
    sub = Paho(gateway.mqtt_port, cid, **persistent(V5, expiry=600))  # type: ignore[arg-type]
    sub.subscribe(uid("t"), 1)
    sub.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    wait_until(lambda: gateway.call(lambda: cid not in gateway.gateway.mqtt.sessions))


def test_connack_tells_what_the_server_capped(gateway: RunningGateway) -> None:
    huge = 0xFFFFFFFF  # "never expires": the server caps it at its maximum and says so
    client = Paho(gateway.mqtt_port, **persistent(V5, expiry=huge))  # type: ignore[arg-type]
    assert client.connack is not None
    connack_props = client.connack.properties
    assert connack_props is not None
    assert connack_props.SessionExpiryInterval == gateway.config.mqtt.max_session_expiry
    assert connack_props.ReceiveMaximum == gateway.config.mqtt.max_inflight
    assert connack_props.TopicAliasMaximum == gateway.config.mqtt.topic_alias_maximum
    assert connack_props.MaximumPacketSize == gateway.config.mqtt.max_packet_size
    client.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_1_4_3_client_id_takeover(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    cid, topic = uid("takeover"), uid("takeover")
    old = Paho(gateway.mqtt_port, cid, version=version, **persistent(version))  # type: ignore[arg-type]
    old.subscribe(topic, 1)
    new = Paho(gateway.mqtt_port, cid, version=version, **persistent(version))  # type: ignore[arg-type]
    assert new.connack is not None
    assert new.connack.session_present  # the session moves to the new connection
    gone = old.next_disconnect()
    if version == V5:
        assert gone.reason_code == 0x8E  # Session taken over
    else:
        assert gone.reason_code != 0  # 3.1.1: the connection is just closed
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"to the new one", qos=1)
    assert new.next().payload == b"to the new one"
    old.assert_silent(0.1)
    pub.close()
    new.close()


def test_MQTT_3_1_3_7_empty_client_id_gets_an_assigned_one(gateway: RunningGateway) -> None:
    client = Paho(gateway.mqtt_port, "")
    assert client.connack is not None
    assert client.connack.properties is not None
    assigned = client.connack.properties.AssignedClientIdentifier
    assert assigned
    assert gateway.call(lambda: assigned in gateway.gateway.mqtt.sessions)
    client.close()


def test_v311_empty_client_id_with_clean_session(gateway: RunningGateway) -> None:
    client = Paho(gateway.mqtt_port, "", version=V311)
    topic = uid("anon311")
    client.subscribe(topic, 1)
    client.publish(topic, b"self", qos=1)
    assert client.next().payload == b"self"
    client.close()
