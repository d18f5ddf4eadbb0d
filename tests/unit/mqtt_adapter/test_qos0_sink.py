"""The QoS 0 direct path (core/sinks.py, Session.deliver_direct): a clean session whose
subscriptions are all QoS 0 gets its messages without queue entries or acks, and keeps every
delivery rule of the queued path."""

from __future__ import annotations

import pytest

from gateway.core.message import Message, Properties
from gateway.core.queues import Queue
from gateway.mqtt.packets import MQTT_3_1_1, PubAck, Publish, ReasonCode, UnsubAck, Unsubscribe
from gateway.mqtt.packets import Properties as MqttProperties
from gateway.mqtt.session import QOS0_QUEUE_TYPE, Session

from .harness import Client, World


def connected(world: World, client_id: str, version: int = 5, **kw: object) -> Client:
    client = world.client(version)
    ack = client.connect(client_id, **kw)  # type: ignore[arg-type]
    assert ack.reason_code == ReasonCode.SUCCESS
    return client


def session_queue(world: World, client_id: str) -> Queue:
    return world.broker.vhost("/").queue(f"mqtt-subscription-{client_id}")


@pytest.fixture
def no_queued_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a delivery takes the queued path."""

    def refuse(self: Session, delivery: object) -> None:
        raise AssertionError("delivered through the queue")

    monkeypatch.setattr(Session, "deliver", refuse)


def test_clean_qos0_session_is_a_direct_queue_of_type_mqtt_qos0(no_queued_path: None) -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("a/#", 0)
    queue = session_queue(world, "sub")
    assert queue.arguments["x-queue-type"] == QOS0_QUEUE_TYPE
    pub = connected(world, "pub")
    for i in range(3):
        pub.publish("a/b", b"%d" % i)
    got = sub.publishes()
    assert [p.payload for p in got] == [b"0", b"1", b"2"]
    assert all(p.qos == 0 and p.topic == "a/b" for p in got)
    assert (queue.message_count, queue.unacked_count) == (0, 0)
    assert world.broker.queued_bytes == 0


def test_a_qos1_subscription_turns_the_direct_path_off_and_back_on() -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("a/#", 0)
    queue = session_queue(world, "sub")
    sub.subscribe("b/#", 1, packet_id=2)
    assert queue._direct is None
    assert "x-queue-type" not in queue.arguments
    pub = connected(world, "pub")
    pub.publish("a/1", b"q")
    assert [p.payload for p in sub.publishes()] == [b"q"]
    sub.send(Unsubscribe(3, ("b/#",)))
    sub.expect(UnsubAck)
    assert queue._direct is not None


def test_persistent_session_is_never_direct() -> None:
    world = World()
    sub = connected(world, "sub", properties=MqttProperties(session_expiry_interval=60))
    sub.subscribe("a/#", 0)
    assert session_queue(world, "sub")._direct is None


def test_disconnect_ends_the_direct_path() -> None:
    world = World()
    sub = connected(world, "sub", version=MQTT_3_1_1, clean=False)
    sub.subscribe("a/#", 0)
    assert session_queue(world, "sub")._direct is None  # 3.1.1 clean=false is persistent
    clean = connected(world, "clean")
    clean.subscribe("a/#", 0)
    queue = session_queue(world, "clean")
    assert queue._direct is not None
    session = world.hub.sessions["clean"]
    session.detach()
    assert queue._direct is None


def test_no_local_overlap_identifiers_and_retain_as_published(no_queued_path: None) -> None:
    world = World()
    me = connected(world, "me")
    me.subscribe("t/#", 0, no_local=True, properties=MqttProperties(subscription_identifiers=(1,)))
    me.subscribe("t/x", 0, packet_id=2, retain_as_published=True,
                 properties=MqttProperties(subscription_identifiers=(2,)))  # fmt: skip
    me.publish("t/x", b"own")
    own = me.publishes()  # t/#'s No Local leaves only t/x, without No Local
    assert [(p.payload, p.properties.subscription_identifiers) for p in own] == [(b"own", (2,))]
    other = connected(world, "other")
    other.publish("t/x", b"one", retain=True)
    got = me.publishes()
    assert len(got) == 1  # one copy for two matching filters
    assert got[0].retain  # Retain As Published on one of them
    assert sorted(got[0].properties.subscription_identifiers) == [1, 2]
    other.publish("t/y", b"two", retain=True)
    got = me.publishes()
    assert [(p.payload, p.retain) for p in got] == [(b"two", False)]
    assert got[0].properties.subscription_identifiers == (1,)


def test_no_local_drops_own_messages_directly(no_queued_path: None) -> None:
    world = World()
    me = connected(world, "me")
    me.subscribe("n/#", 0, no_local=True)
    me.publish("n/1", b"own")
    assert me.publishes() == []
    assert world.hub.sessions["me"].dropped_deliveries == 1


def test_paused_subscriber_backs_up_in_order_by_default() -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("a/#", 0)
    queue = session_queue(world, "sub")
    pub = connected(world, "pub")
    pub.publish("a/1", b"0")
    sub.handler.set_writable(False)
    for i in range(1, 4):
        pub.publish("a/1", b"%d" % i)
    assert queue.message_count == 3
    sub.handler.set_writable(True)
    pub.publish("a/1", b"4")
    assert [p.payload for p in sub.publishes()] == [b"0", b"1", b"2", b"3", b"4"]
    assert queue.dropped == 0


def test_paused_subscriber_drops_and_counts_when_configured() -> None:
    world = World(qos0_overflow="drop")
    sub = connected(world, "sub")
    sub.subscribe("a/#", 0)
    queue = session_queue(world, "sub")
    pub = connected(world, "pub")
    sub.handler.set_writable(False)
    for i in range(3):
        pub.publish("a/1", b"%d" % i)
    assert (queue.message_count, queue.dropped) == (0, 3)
    sub.handler.set_writable(True)
    pub.publish("a/1", b"later")
    assert [p.payload for p in sub.publishes()] == [b"later"]


def test_amqp_origin_message_goes_direct(no_queued_path: None) -> None:
    world = World()
    sub = connected(world, "sub", version=MQTT_3_1_1)
    sub.subscribe("d/e", 0)
    world.broker.vhost("/").publish(
        "amq.topic", Message("amq.topic", "d.e", b"hi", properties=Properties())
    )
    assert [(p.topic, p.payload) for p in sub.publishes()] == [("d/e", b"hi")]


def test_retained_copies_and_expiring_messages_take_the_queue() -> None:
    """What needs per-delivery work (the retained flag of a copy for one subscription, a
    remaining expiry) goes the queued way, with the same result."""
    world = World()
    pub = connected(world, "pub")
    pub.publish("r/1", b"kept", retain=True)
    sub = connected(world, "sub")
    sub.subscribe("r/#", 0)
    got = sub.publishes()
    assert [(p.payload, p.retain) for p in got] == [(b"kept", True)]
    pub.send(Publish("r/2", b"exp", 0, False, False, None,
                     MqttProperties(message_expiry_interval=30)))  # fmt: skip
    got = sub.publishes()
    assert got[0].properties.message_expiry_interval == 30
    assert session_queue(world, "sub").unacked_count == 0


# -- read batches (Session.batching): the QoS 1 counterpart of the direct path's savings -------


def test_acks_of_one_read_reopen_the_window_with_one_dispatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(max_inflight=2)
    sub = connected(world, "sub")
    sub.subscribe("w/#", 1)
    pub = connected(world, "pub")
    for i in range(6):
        pub.publish_acked("w/1", b"%d" % i, packet_id=i + 1)
    first = sub.publishes()
    assert [p.payload for p in first] == [b"0", b"1"]
    dispatches = 0
    original = Queue.dispatch

    def counting(self: Queue) -> None:
        nonlocal dispatches
        dispatches += 1
        original(self)

    monkeypatch.setattr(Queue, "dispatch", counting)
    ids = [p.packet_id for p in first if p.packet_id is not None]
    assert len(ids) == 2
    sub.send(*(PubAck(packet_id) for packet_id in ids))  # one read, two PUBACKs
    assert dispatches == 1
    assert [p.payload for p in sub.publishes()] == [b"2", b"3"]
