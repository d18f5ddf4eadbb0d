"""Hub-level rules: retained messages from AMQP publishers, CONNACK limits, what a persistent
session keeps while its client is away."""

from __future__ import annotations

from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    Properties,
    PubAck,
    Publish,
    ReasonCode,
)

from .harness import World


def amqp_message(routing_key: str, body: bytes, **headers: object) -> Message:
    props = AmqpProperties(headers=dict(headers), delivery_mode=2, content_type="text/plain")
    return Message("amq.topic", routing_key, body, properties=props)


def test_amqp_publisher_sets_and_clears_a_retained_message() -> None:
    world = World()
    hub = world.hub
    hub.retain_from_amqp(
        "amq.topic", amqp_message("plant.7.temp", b"21", **{"x-mqtt-retain": True})
    )
    hub.retain_from_amqp("amq.topic", amqp_message("plant.7.hum", b"40"))  # no header: not kept
    hub.retain_from_amqp("other", amqp_message("plant.7.x", b"1", **{"x-mqtt-retain": True}))
    sub = world.client()
    sub.connect("s")
    sub.subscribe("plant/#", 2)
    (got,) = sub.publishes()
    assert (got.topic, got.payload, got.retain, got.qos) == ("plant/7/temp", b"21", True, 1)
    assert got.properties.content_type == "text/plain"
    hub.retain_from_amqp("amq.topic", amqp_message("plant.7.temp", b"", **{"x-mqtt-retain": True}))
    assert hub.retained.count == 0


def test_amqp_retain_past_the_limit_is_counted_and_dropped() -> None:
    world = World(retained_max_count=1)
    hub = world.hub
    for key in ("a.1", "a.2"):
        hub.retain_from_amqp("amq.topic", amqp_message(key, b"v", **{"x-mqtt-retain": True}))
    assert hub.retained.count == 1
    assert hub.stats["retained_refused"] == 1


def test_server_keep_alive_caps_the_client_keep_alive() -> None:
    world = World(max_keepalive=30)
    for asked, told in ((0, 30), (60, 30), (10, None)):
        client = world.client()
        ack = client.connect(f"k{asked}", keep_alive=asked)
        assert ack.properties.server_keep_alive == told
        assert client.conn.keep_alive == (told or asked)


def test_qos0_traffic_is_not_kept_for_an_absent_client_but_qos1_is() -> None:
    world = World()
    keep = Properties(session_expiry_interval=60)
    sub = world.client()
    sub.connect("away", clean=False, properties=keep)
    sub.subscribe("q/#", 1)
    sub.drop()
    pub = world.client()
    pub.connect("pub")
    pub.publish("q/0", b"zero", 0)
    pub.publish_acked("q/1", b"one")
    world.advance(1)
    again = world.client()
    assert again.connect("away", clean=False, properties=keep).session_present
    assert [p.payload for p in again.publishes()] == [b"one"]
    pub.publish("q/0", b"live zero", 0)
    assert [p.payload for p in again.publishes()] == [b"live zero"]


def test_sys_prefix_only_is_reserved() -> None:
    world = World()
    pub = world.client()
    pub.connect("pub")
    assert pub.publish_acked("$SYS").reason_code == ReasonCode.NOT_AUTHORIZED
    assert pub.publish_acked("$SYSTEMS/x").reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_shared_subscription_queue_is_bounded_like_a_session_queue() -> None:
    world = World(max_queued_messages=3)
    member = world.client()
    member.connect("m", clean=False, properties=Properties(session_expiry_interval=60))
    member.subscribe("$share/g/b/#", 1)
    member.drop()
    pub = world.client()
    pub.connect("pub")
    for n in range(5):
        pub.publish_acked("b/x", str(n).encode())
    again = world.client()
    again.connect("m", clean=False, properties=Properties(session_expiry_interval=60))
    got = again.publishes()
    assert [p.payload for p in got] == [b"2", b"3", b"4"]  # the oldest were dropped
    for packet in got:
        again.send(PubAck(packet.packet_id or 0))


def test_v311_subscriber_of_a_v5_message_gets_no_properties() -> None:
    world = World()
    sub = world.client(MQTT_3_1_1)
    sub.connect("old")
    sub.subscribe("p/#", 0)
    pub = world.client()
    pub.connect("new")
    pub.publish("p/x", b"v", properties=Properties(user_properties=(("a", "b"),)))
    (got,) = sub.publishes()
    assert got == Publish("p/x", b"v")


def test_amqp_routing_keys_that_are_no_topic_names_are_not_sent() -> None:
    for mode, bad_key in (("strict", ""), ("rabbitmq", "a.*"), ("strict", "a.\x00")):
        world = World(topic_mode=mode)
        sub = world.client()
        sub.connect("s")
        sub.subscribe("#", 0)
        vhost = world.hub.vhost
        vhost.publish("amq.topic", amqp_message(bad_key, b"bad"))
        vhost.publish("amq.topic", amqp_message("a.b", b"good"))
        assert [(p.topic, p.payload) for p in sub.publishes()] == [("a/b", b"good")]


def test_v311_keep_alive_above_the_maximum_is_refused_as_mosquitto_does() -> None:
    world = World(max_keepalive=30)
    for asked, accepted in ((10, True), (30, True), (31, False), (0, False)):
        client = world.client(MQTT_3_1_1)
        ack = client.connect(f"k{asked}", keep_alive=asked)
        expected = ReasonCode.SUCCESS if accepted else ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        assert ack.reason_code == expected
