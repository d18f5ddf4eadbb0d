"""paho-mqtt: retained messages (set, replace, clear, wildcard delivery, limits), Retain
Handling, Retain As Published and No Local."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.gateway_runner import RunningGateway, running_gateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    SubscribeOptions,
    close_clients,  # noqa: F401  (autouse: closes every client)
    uid,
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_3_1_5_retained_message_is_stored_and_replaced(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("ret")
    pub = Paho(gateway.mqtt_port, version=version)
    pub.publish(topic, b"v1", qos=1, retain=True)
    pub.publish(topic, b"v2", qos=1, retain=True)
    pub.publish(topic, b"not retained", qos=1)  # RETAIN 0 replaces nothing [MQTT-3.3.1-8]
    sub = Paho(gateway.mqtt_port, version=version)
    sub.subscribe(topic, 2)
    message = sub.next()
    assert (message.payload, message.retain, message.qos) == (b"v2", True, 1)
    sub.assert_silent()
    pub.publish(topic, b"", qos=1, retain=True)  # clear
    sub.close()
    pub.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_MQTT_3_3_1_6_empty_retained_payload_clears_and_is_delivered_as_normal(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("clear")
    pub = Paho(gateway.mqtt_port, version=version)
    pub.publish(topic, b"state", qos=1, retain=True)
    existing = Paho(gateway.mqtt_port, version=version)
    existing.subscribe(topic, 1)
    assert existing.next().payload == b"state"
    pub.publish(topic, b"", qos=1, retain=True)
    cleared = existing.next()
    assert cleared.payload == b""
    assert not cleared.retain  # forwarded "as normal"
    late = Paho(gateway.mqtt_port, version=version)
    late.subscribe(topic, 1)
    late.assert_silent()  # nothing stored any more [MQTT-3.3.1-7]
    for client in (pub, existing, late):
        client.close()


def test_retained_messages_reach_wildcard_subscriptions(gateway: RunningGateway) -> None:
    p = uid("retwild")
    pub = Paho(gateway.mqtt_port)
    stored = {f"{p}/a": b"1", f"{p}/b/c": b"2", f"{p}/b/d": b"3", f"{p}": b"4"}
    for topic, payload in stored.items():
        pub.publish(topic, payload, qos=1, retain=True)
    cases = {
        f"{p}/#": set(stored),
        f"{p}/+": {f"{p}/a"},
        f"{p}/b/+": {f"{p}/b/c", f"{p}/b/d"},
        f"{p}/+/c": {f"{p}/b/c"},
        f"{p}/a": {f"{p}/a"},
    }
    for topic_filter, expected in cases.items():
        sub = Paho(gateway.mqtt_port)
        sub.subscribe(topic_filter, 1)
        got = sub.take(len(expected))
        assert {m.topic for m in got} == expected, topic_filter
        assert all(m.retain for m in got)
        assert {m.payload for m in got} == {stored[t] for t in expected}
        sub.assert_silent(0.05)
        sub.close()
    for topic in stored:
        pub.publish(topic, b"", qos=1, retain=True)
    pub.close()


def test_retained_qos_is_min_of_stored_and_granted(gateway: RunningGateway) -> None:
    topic = uid("retqos")
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"q2", qos=2, retain=True)
    for granted in (0, 1, 2):
        sub = Paho(gateway.mqtt_port)
        sub.subscribe(topic, granted)
        assert sub.next().qos == granted
        sub.close()
    pub.publish(topic, b"", qos=1, retain=True)
    pub.close()


def test_MQTT_3_3_1_9_to_11_retain_handling(gateway: RunningGateway) -> None:
    topic = uid("rh")
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"kept", qos=1, retain=True)
    sub = Paho(gateway.mqtt_port)
    # 0: at every SUBSCRIBE, even a repeated one.
    for _ in range(2):
        sub.subscribe(topic, SubscribeOptions(qos=1, retainHandling=0))
        assert sub.next().payload == b"kept"
    sub.unsubscribe(topic)
    # 1: only when the subscription is new.
    sub.subscribe(topic, SubscribeOptions(qos=1, retainHandling=1))
    assert sub.next().payload == b"kept"
    sub.subscribe(topic, SubscribeOptions(qos=1, retainHandling=1))
    sub.assert_silent()
    # 2: never at subscribe time; live messages still flow.
    other = Paho(gateway.mqtt_port)
    other.subscribe(topic, SubscribeOptions(qos=1, retainHandling=2))
    other.assert_silent()
    pub.publish(topic, b"live", qos=1)
    assert other.next().payload == b"live"
    assert sub.next().payload == b"live"
    pub.publish(topic, b"", qos=1, retain=True)
    for client in (pub, sub, other):
        client.close()


def test_MQTT_3_3_1_12_and_13_retain_as_published(gateway: RunningGateway) -> None:
    topic = uid("rap")
    keep = Paho(gateway.mqtt_port)
    keep.subscribe(topic, SubscribeOptions(qos=1, retainAsPublished=True))
    clear = Paho(gateway.mqtt_port)
    clear.subscribe(topic, SubscribeOptions(qos=1, retainAsPublished=False))
    v311 = Paho(gateway.mqtt_port, version=V311)
    v311.subscribe(topic, 1)
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"r", qos=1, retain=True)
    assert keep.next().retain
    assert not clear.next().retain
    assert not v311.next().retain
    pub.publish(topic, b"", qos=1, retain=True)
    for client in (keep, clear, v311, pub):
        client.close()


def test_MQTT_3_8_3_3_no_local(gateway: RunningGateway) -> None:
    topic = uid("nolocal")
    me = Paho(gateway.mqtt_port)
    me.subscribe(topic, SubscribeOptions(qos=1, noLocal=True))
    echo = Paho(gateway.mqtt_port)
    echo.subscribe(topic, SubscribeOptions(qos=1, noLocal=False))
    me.publish(topic, b"mine", qos=1)
    assert echo.next().payload == b"mine"
    me.assert_silent()
    echo.publish(topic, b"theirs", qos=1)
    assert me.next().payload == b"theirs"
    assert echo.next().payload == b"theirs"  # No Local off: its own message comes back
    me.close()
    echo.close()


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningGateway]:
    with running_gateway(mqtt={"retained_max_count": 2, "retained_max_bytes": 64}) as running:
        yield running


def test_retained_count_limit_gives_0x97(limited: RunningGateway) -> None:
    pub = Paho(limited.mqtt_port)
    assert pub.publish("lim/a", b"1", qos=1, retain=True) == 0x10  # stored; no subscribers
    assert pub.publish("lim/b", b"2", qos=1, retain=True) == 0x10
    assert pub.publish("lim/c", b"3", qos=1, retain=True) == 0x97  # Quota exceeded
    assert pub.publish("lim/a", b"1'", qos=1, retain=True) == 0x10  # replacing is fine
    assert pub.publish("lim/b", b"", qos=1, retain=True) == 0x10  # clearing frees a slot
    assert pub.publish("lim/c", b"3", qos=1, retain=True) == 0x10
    sub = Paho(limited.mqtt_port)
    sub.subscribe("lim/#", 1)
    assert sorted(m.payload for m in sub.take(2)) == [b"1'", b"3"]
    assert limited.call(lambda: limited.gateway.mqtt.retained.count) == 2
    for topic in ("lim/a", "lim/c"):
        pub.publish(topic, b"", qos=1, retain=True)
    pub.close()
    sub.close()


def test_retained_bytes_limit(limited: RunningGateway) -> None:
    pub = Paho(limited.mqtt_port)
    assert pub.publish("big/a", b"x" * 65, qos=1, retain=True) == 0x97
    assert pub.publish("big/a", b"x" * 64, qos=1, retain=True) == 0x10
    assert pub.publish("big/a", b"", qos=1, retain=True) == 0x10
    pub.close()


def test_v311_retained_over_the_limit_is_acked_and_dropped(limited: RunningGateway) -> None:
    """3.1.1 has no reason codes: as Mosquitto does with a refused PUBLISH, it is acked and
    dropped, and the connection stays up."""
    fill = Paho(limited.mqtt_port)
    fill.publish("full/a", b"1", qos=1, retain=True)
    fill.publish("full/b", b"2", qos=1, retain=True)
    watcher = Paho(limited.mqtt_port, version=V311)
    watcher.subscribe("full/#", 1)
    watcher.take(2)
    pub = Paho(limited.mqtt_port, version=V311)
    assert pub.publish("full/c", b"3", qos=1, retain=True) == 0
    watcher.assert_silent()
    assert limited.call(lambda: limited.gateway.mqtt.retained.get("full/c", 0.0)) is None
    assert pub.running
    for topic in ("full/a", "full/b"):
        fill.publish(topic, b"", qos=1, retain=True)
