"""The QoS 0 ingest fast path (PlainPublish events, `MqttHub.route_plain`, the hub's cached
routes and `message_from_plain_publish`) routes, refuses and builds exactly as the full path."""

from __future__ import annotations

import pytest

from gateway.bridge.convert import message_from_plain_publish, message_from_publish, plain_views
from gateway.bridge.topics import TopicTranslator
from gateway.mqtt.packets import EMPTY_PROPERTIES, MQTT_3_1_1, MQTT_5, Publish

from .harness import World

STRICT = TopicTranslator("strict")


@pytest.mark.parametrize(("qos", "retain"), [(0, False), (0, True), (1, False), (2, True)])
def test_plain_message_is_the_message_of_the_full_conversion(qos: int, retain: bool) -> None:
    publish = Publish("a/b", b"body", qos, retain, False, 1 if qos else None, EMPTY_PROPERTIES)
    full = message_from_publish(
        publish, exchange="amq.topic", routing_key="a.b", client_id="c1", translator=STRICT
    )
    fast = message_from_plain_publish(
        "amq.topic", "a.b", "a/b", b"body", qos, retain, "c1", plain_views("a/b")
    )
    assert (fast.exchange, fast.routing_key, fast.body) == ("amq.topic", "a.b", b"body")
    assert fast.properties == full.properties
    assert (fast.persistent, fast.expiration_ms) == (full.persistent, full.expiration_ms)
    assert fast.annotations == full.annotations
    assert fast.id != full.id


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_repeated_qos0_publishes_are_all_delivered_in_order(version: int) -> None:
    world = World()
    sub = world.client(version)
    sub.connect("sub")
    sub.subscribe("fast/#", 0)
    pub = world.client(version)
    pub.connect("pub")
    for n in range(4):
        pub.publish("fast/x", b"%d" % n)
    got = sub.publishes()
    assert [(p.topic, p.payload, p.qos, p.retain) for p in got] == [
        ("fast/x", b"%d" % n, 0, False) for n in range(4)
    ]
    assert world.hub.stats["published"] == 4


def test_sys_topics_stay_refused_on_every_publish() -> None:
    world = World()
    sub = world.client()
    sub.connect("sub")
    sub.subscribe("#", 0)
    pub = world.client()
    pub.connect("pub")
    before = world.hub.stats["refused"]
    for _ in range(3):
        pub.publish("$SYS/broker/x", b"no")  # a cached topic name, never a cached route
    assert sub.publishes() == []
    assert world.hub.stats["refused"] == before + 3
    assert world.hub.stats["published"] == 0


def test_unroutable_plain_publishes_are_counted() -> None:
    world = World()
    pub = world.client()
    pub.connect("pub")
    for _ in range(3):
        pub.publish("nobody/listens", b"x")
    assert world.hub.stats["published"] == 3
    assert world.hub.stats["unroutable"] == 3
