"""paho-mqtt: Will messages on abnormal disconnects, none on a normal DISCONNECT, DISCONNECT
0x04, Will Delay and its cancellation by a reconnect, wills on session takeover."""

from __future__ import annotations

import time

import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    Transport,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
    uid,
    wait_until,
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def watch(gateway: RunningGateway, topic: str) -> Paho:
    watcher = Paho(gateway.mqtt_port)
    watcher.subscribe(topic, 1)
    return watcher


@pytest.mark.parametrize(
    ("version", "transport"),
    [(V311, "tcp"), (V5, "tcp"), (V311, "websockets"), (V5, "websockets")],
)
def test_MQTT_3_1_2_8_will_is_published_on_abnormal_disconnect(
    gateway: RunningGateway, version: MQTTProtocolVersion, transport: Transport
) -> None:
    topic = uid("will")
    watcher = watch(gateway, topic)
    port = gateway.ws_port if transport == "websockets" else gateway.mqtt_port
    will = (topic, b"offline", 1, False, None)
    client = Paho(port, version=version, transport=transport, will=will)
    client.kill()
    message = watcher.next()
    assert (message.topic, message.payload, message.qos) == (topic, b"offline", 1)
    watcher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_1_2_10_normal_disconnect_discards_the_will(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("nowill")
    watcher = watch(gateway, topic)
    client = Paho(gateway.mqtt_port, version=version, will=(topic, b"offline", 1, False, None))
    client.disconnect()
    watcher.assert_silent()
    watcher.close()


def test_disconnect_with_will_message_0x04_publishes_the_will(gateway: RunningGateway) -> None:
    topic = uid("will04")
    watcher = watch(gateway, topic)
    will_props = props(
        PacketTypes.WILLMESSAGE,
        ContentType="text/plain",
        UserProperty=[("reason", "shutdown")],
    )
    client = Paho(gateway.mqtt_port, will=(topic, b"bye", 0, False, will_props))
    client.disconnect(reason=0x04)
    message = watcher.next()
    assert message.payload == b"bye"
    assert message.properties.ContentType == "text/plain"
    assert message.properties.UserProperty == [("reason", "shutdown")]
    watcher.close()


def test_retained_will(gateway: RunningGateway) -> None:
    topic = uid("retwill")
    client = Paho(gateway.mqtt_port, will=(topic, b"dead", 1, True, None))
    client.kill()
    mqtt = gateway.gateway.mqtt
    wait_until(lambda: gateway.call(lambda: mqtt.retained.get(topic, 0.0) is not None))
    late = Paho(gateway.mqtt_port)
    late.subscribe(topic, 1)
    message = late.next()
    assert (message.payload, message.retain) == (b"dead", True)
    late.publish(topic, b"", qos=1, retain=True)
    late.close()


def will_client(gateway: RunningGateway, cid: str, topic: str, delay: int) -> Paho:
    connect_props = props(PacketTypes.CONNECT, SessionExpiryInterval=30)
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay)
    return Paho(
        gateway.mqtt_port,
        cid,
        clean=False,
        properties=connect_props,
        will=(topic, b"late", 1, False, will_props),
    )


def test_MQTT_3_1_3_9_will_delay(gateway: RunningGateway) -> None:
    cid, topic = uid("delay"), uid("delay")
    watcher = watch(gateway, topic)
    client = will_client(gateway, cid, topic, delay=1)
    killed = time.monotonic()
    client.kill()
    message = watcher.next(timeout=4)
    assert message.payload == b"late"
    assert time.monotonic() - killed >= 0.9
    # The Will Delay Interval is the will's, not the delivered message's.
    assert not hasattr(message.properties, "WillDelayInterval")
    client.connect(clean=True)
    client.close()
    watcher.close()


def test_reconnect_within_will_delay_cancels_the_will(gateway: RunningGateway) -> None:
    cid, topic = uid("cancel"), uid("cancel")
    mqtt = gateway.gateway.mqtt
    watcher = watch(gateway, topic)
    client = will_client(gateway, cid, topic, delay=30)
    client.kill()
    wait_until(lambda: gateway.call(lambda: mqtt.pending_will(cid) is not None))
    again = will_client(gateway, cid, topic, delay=30)
    assert again.connack is not None
    assert again.connack.session_present
    assert gateway.call(lambda: mqtt.pending_will(cid)) is None
    watcher.assert_silent()
    again.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    watcher.assert_silent(0.1)  # a normal DISCONNECT: the new will is discarded too
    watcher.close()


def test_will_of_a_taken_over_connection_is_published(gateway: RunningGateway) -> None:
    cid, topic = uid("tkwill"), uid("tkwill")
    watcher = watch(gateway, topic)
    Paho(gateway.mqtt_port, cid, will=(topic, b"replaced", 1, False, None))
    newcomer = Paho(gateway.mqtt_port, cid)
    assert watcher.next().payload == b"replaced"
    newcomer.close()
    watcher.close()
