"""Everything that depends on time, on a fake clock: Will Delay, Session Expiry, Message Expiry."""

from __future__ import annotations

from gateway.mqtt.packets import (
    MQTT_3_1_1,
    Disconnect,
    Properties,
    PubAck,
    ReasonCode,
    Will,
)

from .harness import Client, World

SESSION_60 = Properties(session_expiry_interval=60)


def watcher(world: World, topic_filter: str = "will/#") -> Client:
    client = world.client()
    client.connect("watcher")
    client.subscribe(topic_filter, 1)
    return client


def will_client(world: World, *, delay: int, expiry: int = 60) -> Client:
    client = world.client()
    will = Will(
        "will/w1",
        b"gone",
        1,
        properties=Properties(will_delay_interval=delay, user_properties=(("k", "v"),)),
    )
    ack = client.connect("w1", will=will, properties=Properties(session_expiry_interval=expiry))
    assert ack.reason_code == ReasonCode.SUCCESS
    return client


def test_MQTT_3_1_3_9_will_waits_for_will_delay() -> None:
    world = World()
    watch = watcher(world)
    client = will_client(world, delay=5)
    client.drop()
    world.advance(4.9)
    assert watch.received() == []
    world.advance(0.2)
    (will,) = watch.publishes()
    assert (will.topic, will.payload, will.qos) == ("will/w1", b"gone", 1)
    # Will Delay Interval belongs to the will, never to the PUBLISH subscribers get.
    assert will.properties.will_delay_interval is None
    assert will.properties.user_properties == (("k", "v"),)


def test_reconnect_within_will_delay_cancels_the_will() -> None:
    world = World()
    watch = watcher(world)
    will_client(world, delay=5).drop()
    world.advance(3)
    again = world.client()
    assert again.connect("w1", clean=False, properties=SESSION_60).session_present
    world.advance(10)
    assert watch.received() == []


def test_will_is_sent_when_the_session_ends_before_the_will_delay() -> None:
    world = World()
    watch = watcher(world)
    will_client(world, delay=100, expiry=2).drop()
    world.advance(1.5)
    assert watch.received() == []
    world.advance(1)
    assert [p.payload for p in watch.publishes()] == [b"gone"]
    assert "w1" not in world.hub.sessions


def test_MQTT_3_1_2_10_normal_disconnect_discards_the_will() -> None:
    world = World()
    watch = watcher(world)
    client = will_client(world, delay=0)
    client.send(Disconnect())
    world.advance(1)
    assert watch.received() == []


def test_disconnect_with_will_message_sends_the_will() -> None:
    world = World()
    watch = watcher(world)
    client = will_client(world, delay=0)
    client.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
    assert [p.payload for p in watch.publishes()] == [b"gone"]


def test_session_expiry_ends_the_session_and_deletes_its_queue() -> None:
    world = World()
    client = world.client()
    client.connect("s1", clean=False, properties=Properties(session_expiry_interval=5))
    client.subscribe("exp/#", 1)
    queue_name = world.hub.sessions["s1"].queue_name
    client.drop()
    world.advance(4)
    assert "s1" in world.hub.sessions
    world.advance(2)
    assert "s1" not in world.hub.sessions
    assert not world.hub.queue_exists(queue_name)
    again = world.client()
    assert not again.connect("s1", clean=False, properties=SESSION_60).session_present


def test_disconnect_setting_session_expiry_0_deletes_the_durable_queue() -> None:
    world = World()
    client = world.client()
    client.connect("s2", clean=False, properties=SESSION_60)
    client.subscribe("x/#", 1)
    queue_name = world.hub.sessions["s2"].queue_name
    assert world.hub.vhost.queue(queue_name).durable
    client.send(Disconnect(properties=Properties(session_expiry_interval=0)))
    assert "s2" not in world.hub.sessions
    assert not world.hub.queue_exists(queue_name)


def test_v311_persistent_session_keeps_messages_for_a_week_by_default() -> None:
    world = World()
    sub = world.client(MQTT_3_1_1)
    sub.connect("p311", clean=False)
    sub.subscribe("q/#", 1)
    sub.drop()
    world.client().connect("pub")
    pub = world.client()
    pub.connect("pub2")
    pub.publish_acked("q/1", b"kept")
    world.advance(86_400)
    again = world.client(MQTT_3_1_1)
    assert again.connect("p311", clean=False).session_present
    assert [p.payload for p in again.publishes()] == [b"kept"]


def test_MQTT_3_3_2_6_message_expiry_is_decremented_while_queued() -> None:
    world = World()
    sub = world.client()
    sub.connect("me1", clean=False, properties=SESSION_60)
    sub.subscribe("exp/#", 1)
    sub.drop()
    pub = world.client()
    pub.connect("pub")
    pub.publish_acked("exp/a", b"short", properties=Properties(message_expiry_interval=3))
    pub.publish_acked("exp/b", b"long", properties=Properties(message_expiry_interval=10))
    world.advance(4)
    again = world.client()
    assert again.connect("me1", clean=False, properties=SESSION_60).session_present
    got = again.publishes()
    # The expired one is never delivered [MQTT-3.3.2-5]; the other has 6 s left.
    assert [(p.topic, p.properties.message_expiry_interval) for p in got] == [("exp/b", 6)]


def test_retained_message_expiry_counts_time_in_the_store() -> None:
    world = World()
    pub = world.client()
    pub.connect("pub")
    pub.publish_acked("ret/e", b"v", retain=True, properties=Properties(message_expiry_interval=10))
    world.advance(4)
    sub = world.client()
    sub.connect("r1")
    sub.send_bytes(b"")
    sub.subscribe("ret/#", 1)
    (first,) = sub.publishes()
    assert first.retain
    assert first.properties.message_expiry_interval == 6
    sub.send(PubAck(first.packet_id or 0))
    world.advance(7)
    late = world.client()
    late.connect("r2")
    late.subscribe("ret/#", 1)
    assert late.received() == []
    assert world.hub.retained.count == 0


def test_clean_start_within_will_delay_ends_the_session_and_sends_the_will() -> None:
    world = World()
    watch = watcher(world)
    will_client(world, delay=30).drop()
    world.advance(1)
    assert watch.received() == []
    again = world.client()
    assert not again.connect("w1", clean=True).session_present
    assert [p.payload for p in watch.publishes()] == [b"gone"]
    world.advance(60)
    assert watch.received() == []  # once only
