"""The QoS 1 fast paths end to end (decoder `Plain` items, `on_plain_publish`, raw PUBACKs both
ways, deliveries with a cached header): what clients see is what the full path gives them.

A topic's first PUBLISH takes the full decoder (it checks the topic name); the later ones are
`Plain` tuples, so every test publishes to a topic more than once and compares.
"""

from __future__ import annotations

import itertools

import pytest

from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    Properties,
    PubAck,
    Publish,
    ReasonCode,
)
from tests.unit.mqtt_adapter.test_idle_footprint import FakeBarrier

from .harness import Client, World

VERSIONS = (MQTT_3_1_1, MQTT_5)
_topics = itertools.count()


def new_topic(prefix: str) -> str:
    """Topics new to the process-wide topic-name cache: the first sight is the full path."""
    return f"{prefix}/{next(_topics)}"


def connected(world: World, client_id: str, version: int) -> Client:
    client = world.client(version)
    client.connect(client_id)
    return client


@pytest.mark.parametrize("version", VERSIONS)
def test_repeated_qos1_publishes_are_acked_and_delivered_alike(version: int) -> None:
    world = World()
    sub = connected(world, "sub", version)
    sub.subscribe("q1/#", 1)
    pub = connected(world, "pub", version)
    topic = new_topic("q1")
    for packet_id in (1, 2, 3):
        pub.publish(topic, b"m%d" % packet_id, 1, packet_id=packet_id)
    acks = pub.received()
    assert acks == [PubAck(1), PubAck(2), PubAck(3)]
    got = sub.publishes()
    assert [(p.topic, p.payload, p.qos, p.retain, p.dup, p.properties) for p in got] == [
        (topic, b"m%d" % n, 1, False, False, Properties()) for n in (1, 2, 3)
    ]
    assert len({p.packet_id for p in got}) == 3
    # PUBACKs from the subscriber (raw packet ids on its side too) settle the queue.
    for publish in got:
        assert publish.packet_id is not None
        sub.send(PubAck(publish.packet_id))
    assert world.hub.sessions["sub"].inflight == {}
    assert world.hub.stats["published"] == 3
    assert world.hub.stats["delivered"] == 3


@pytest.mark.parametrize("version", VERSIONS)
def test_no_matching_subscribers_is_said_in_mqtt5_only(version: int) -> None:
    world = World()
    pub = connected(world, "pub", version)
    topic = new_topic("nobody")
    for packet_id in (1, 2):
        pub.publish(topic, b"x", 1, packet_id=packet_id)
    code = ReasonCode.NO_MATCHING_SUBSCRIBERS if version == MQTT_5 else ReasonCode.SUCCESS
    acks = [a for a in pub.received() if isinstance(a, PubAck)]
    assert [(a.packet_id, a.reason_code) for a in acks] == [(1, code), (2, code)]
    assert world.hub.stats["unroutable"] == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_a_refused_qos1_publish_is_answered_every_time(version: int) -> None:
    world = World()
    pub = connected(world, "pub", version)
    for packet_id in (1, 2, 3):  # a cached topic name, never a cached route
        pub.publish("$SYS/x", b"no", 1, packet_id=packet_id)
    acks = pub.received()
    assert [a.packet_id for a in acks if isinstance(a, PubAck)] == [1, 2, 3]
    if version == MQTT_5:
        assert {a.reason_code for a in acks if isinstance(a, PubAck)} == {ReasonCode.NOT_AUTHORIZED}
    assert world.hub.stats["refused"] == 3
    assert world.hub.stats["published"] == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_queue_refuses_plain_qos1_publishes_as_the_full_path_does(version: int) -> None:
    world = World()
    world.hub.vhost.declare_queue("small", arguments={"x-max-length": 1, "x-overflow":
                                                      "reject-publish"})  # fmt: skip
    topic = new_topic("full")
    world.hub.vhost.bind_queue("small", "amq.topic", topic.replace("/", "."))
    pub = connected(world, "pub", version)
    pub.publish(topic, b"a", 1, packet_id=1)  # full path: taken
    pub.publish(topic, b"b", 1, packet_id=2)  # plain path: the queue is full
    first = pub.expect(PubAck)
    assert (first.packet_id, first.reason_code) == (1, ReasonCode.SUCCESS)
    if version == MQTT_5:
        second = pub.expect(PubAck)
        assert (second.packet_id, second.reason_code) == (2, ReasonCode.QUOTA_EXCEEDED)
        assert not pub.transport_closed
    else:
        # 3.1.1 cannot say "not taken": the connection closes and the client resends later.
        assert pub.received() == []
        assert pub.transport_closed


def test_a_plain_puback_waits_behind_one_held_for_a_commit() -> None:
    world = World()
    pub = connected(world, "pub", MQTT_3_1_1)
    topic = new_topic("held")
    pub.publish(topic, b"warm", 1, packet_id=1)
    assert pub.expect(PubAck).packet_id == 1
    barrier = FakeBarrier()
    world.broker.commit_barrier = barrier
    pub.handler.ack(PubAck(2), wait_for=5)  # as a PUBLISH a durable queue took would
    pub.publish(topic, b"fast", 1, packet_id=3)  # plain, and nothing of its own to wait for
    assert pub.received() == []  # [MQTT-4.6.0-2]: acks in PUBLISH order
    barrier.commit(5)
    assert [a.packet_id for a in pub.received() if isinstance(a, PubAck)] == [2, 3]


@pytest.mark.parametrize("version", VERSIONS)
def test_deliveries_with_cached_headers_decode_as_the_encoder_writes_them(version: int) -> None:
    world = World()
    sub = connected(world, "sub", version)
    sub.subscribe("hdr/#", 2)
    pub = connected(world, "pub", MQTT_5)
    topic = new_topic("hdr")
    props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
    # Same view, same payload size: the second delivery's header comes from the cache.
    for packet_id, qos in ((1, 1), (2, 1), (3, 2), (4, 2)):
        pub.publish(topic, b"same", qos, packet_id=packet_id, properties=props)
    got = sub.publishes()
    expected_props = props if version == MQTT_5 else Properties()
    assert [(p.topic, p.payload, p.qos, p.properties) for p in got] == [
        (topic, b"same", qos, expected_props) for qos in (1, 1, 2, 2)
    ]
    assert len({p.packet_id for p in got}) == 4


def test_per_subscriber_properties_still_reach_mqtt5_subscribers() -> None:
    world = World()
    sub = connected(world, "sub", MQTT_5)
    sub.subscribe("ids/#", 1, properties=Properties(subscription_identifiers=(7,)))
    pub = connected(world, "pub", MQTT_5)
    topic = new_topic("ids")
    for packet_id in (1, 2):
        pub.publish(topic, b"x", 1, packet_id=packet_id)
    got = sub.publishes()
    assert [p.properties.subscription_identifiers for p in got] == [(7,), (7,)]


def test_a_publish_after_a_plain_puback_batch_is_still_delivered_in_order() -> None:
    world = World(max_inflight=2)
    sub = connected(world, "sub", MQTT_3_1_1)
    sub.subscribe("win/#", 1)
    pub = connected(world, "pub", MQTT_3_1_1)
    topic = new_topic("win")
    for n in range(1, 6):
        pub.publish(topic, b"%d" % n, 1, packet_id=n)
    seen: list[Publish] = []
    while len(seen) < 5:
        batch = sub.publishes()
        assert 0 < len(batch) <= 2  # the window
        seen += batch
        # One read of raw PUBACKs opens the window once, at the end of the read.
        ids = [p.packet_id for p in batch if p.packet_id is not None]
        sub.send_bytes(b"".join(b"\x40\x02" + n.to_bytes(2, "big") for n in ids))
    assert [p.payload for p in seen] == [b"%d" % n for n in range(1, 6)]


@pytest.mark.parametrize("qos", [0, 1])
def test_the_listener_is_told_of_the_first_delivery_after_a_drain_and_now_and_then(
    qos: int,
) -> None:
    world = World(max_inflight=1000)
    sub = connected(world, "sub", MQTT_3_1_1)
    sub.subscribe("tell/#", qos)
    told: list[int] = []
    sub.told_chunks = told
    pub = connected(world, "pub", MQTT_3_1_1)
    topic = new_topic("tell")
    # 100 deliveries in one read: 200 chunks (header, payload) wait for the listener.
    pub.send(*(Publish(topic, b"x", qos, False, False, n if qos else None) for n in range(1, 101)))
    # The first one, then every 64 chunks for the listener's early flush of a backlog.
    assert told == [2, 64, 128, 192]
    assert len(sub.publishes()) == 100  # drained
    told.clear()
    pub.send(Publish(topic, b"y", qos, False, False, 101 if qos else None))
    assert told == [2]
