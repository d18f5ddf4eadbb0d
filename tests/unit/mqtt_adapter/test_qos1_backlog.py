"""QoS 1 to a subscriber whose in-flight window is full (bench S2's shape): the session queue
holds the backlog without asking the session per publish (core ``Queue._blocked``), and every
PUBACK that opens the window lets the next messages out, in order, each exactly once. The hub
routes with the core's int verdict (``publish_outcome``)."""

from __future__ import annotations

import itertools

import pytest

from gateway.core.consumers import Delivery
from gateway.core.routing import ACCEPTED, REFUSED, UNROUTABLE
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    Packet,
    PubAck,
    Publish,
    ReasonCode,
    make_publish,
)
from gateway.mqtt.session import Session

from .harness import Client, World

VERSIONS = (MQTT_3_1_1, MQTT_5)
_topics = itertools.count()


def new_topic(prefix: str) -> str:
    return f"{prefix}/{next(_topics)}"


def connected(world: World, client_id: str, version: int) -> Client:
    client = world.client(version)
    client.connect(client_id)
    return client


def ack_all(client: Client, got: list[Publish]) -> None:
    ids = [p.packet_id for p in got]
    assert None not in ids
    client.send(*(PubAck(i) for i in ids if i is not None))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_window_gets_the_backlog_in_order_as_pubacks_arrive(version: int) -> None:
    world = World(max_inflight=4)
    sub = connected(world, "sub", version)
    sub.subscribe("s2/#", 1)
    pub = connected(world, "pub", version)
    topic = new_topic("s2")
    for n in range(30):
        pub.publish(topic, b"m%d" % n, 1, packet_id=n + 1)
    # Acked on enqueue: the publisher does not wait for the subscriber.
    assert pub.received() == [PubAck(n + 1) for n in range(30)]
    session = world.hub.sessions["sub"]
    queue = world.hub.vhost.queue(session.queue_name)
    got: list[Publish] = []
    batch = sub.publishes()
    while batch:
        assert len(batch) <= 4
        assert len({p.packet_id for p in batch}) == len(batch)
        got.extend(batch)
        ack_all(sub, batch)
        batch = sub.publishes()
    assert [p.payload for p in got] == [b"m%d" % n for n in range(30)]
    assert not any(p.dup for p in got)
    assert session.inflight == {}
    assert queue.message_count == 0
    assert queue.unacked_count == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_publishes_into_a_full_window_flow_after_the_acks_of_the_same_read(version: int) -> None:
    """One client publishes and acks in the same read: the acks' window space is handed out
    when the read ends, and the publishes of that read go out through it."""
    world = World(max_inflight=2)
    client = connected(world, "loop", version)
    client.subscribe("self/#", 1)
    topic = new_topic("self")
    client.publish(topic, b"a", 1, packet_id=101)
    client.publish(topic, b"b", 1, packet_id=102)
    client.publish(topic, b"c", 1, packet_id=103)
    first = [p for p in client.received() if isinstance(p, Publish)]
    assert [p.payload for p in first] == [b"a", b"b"]
    # Both PUBACKs and two more PUBLISHes in one read.
    ids = [p.packet_id for p in first]
    assert None not in ids
    data: list[Packet] = [PubAck(i) for i in ids if i is not None]
    data += [make_publish(topic, b"d", 1, False, False, 104, EMPTY_PROPERTIES),
             make_publish(topic, b"e", 1, False, False, 105, EMPTY_PROPERTIES)]  # fmt: skip
    client.send(*data)
    second = [p for p in client.received() if isinstance(p, Publish)]
    assert [p.payload for p in second] == [b"c", b"d"]
    ack_all(client, second)
    third = [p for p in client.received() if isinstance(p, Publish)]
    assert [p.payload for p in third] == [b"e"]


def test_the_hub_routes_with_the_cores_verdict() -> None:
    world = World()
    hub = world.hub
    full = new_topic("verdict")
    hub.vhost.declare_queue("one", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    hub.vhost.bind_queue("one", "amq.topic", full.replace("/", "."))
    nobody = new_topic("verdict")
    publish = make_publish(nobody, b"x", 1, False, False, 1, EMPTY_PROPERTIES)
    assert hub.route_publish(publish, "c") == UNROUTABLE
    assert hub.route_plain(nobody, b"x", "c", 1) == UNROUTABLE  # the cached plain route
    publish = make_publish(full, b"x", 1, False, False, 2, EMPTY_PROPERTIES)
    assert hub.route_publish(publish, "c") == ACCEPTED
    assert hub.route_plain(full, b"y", "c", 1) == REFUSED
    assert hub.stats["unroutable"] == 2
    assert hub.stats["published"] == 4


def test_a_refused_qos1_publish_gets_quota_exceeded_in_mqtt5() -> None:
    world = World()
    topic = new_topic("quota")
    world.hub.vhost.declare_queue(
        "one", arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    world.hub.vhost.bind_queue("one", "amq.topic", topic.replace("/", "."))
    pub = connected(world, "p", MQTT_5)
    for packet_id in (1, 2, 3):  # the full path, then the plain one
        pub.publish(topic, b"x", 1, packet_id=packet_id)
    codes = [(a.packet_id, a.reason_code) for a in pub.received() if isinstance(a, PubAck)]
    assert codes == [
        (1, ReasonCode.SUCCESS),
        (2, ReasonCode.QUOTA_EXCEEDED),
        (3, ReasonCode.QUOTA_EXCEEDED),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_refill_batch_mixes_qos_0_and_1_in_order_within_the_window(version: int) -> None:
    """The backlog goes out in batches bounded by the free window (Session.batch_credit): QoS 0
    messages in a batch take no window, the QoS 1 ones never overfill it."""
    world = World(max_inflight=2)
    sub = connected(world, "mix", version)
    sub.subscribe("mix/one/#", 1)
    sub.subscribe("mix/zero/#", 0, packet_id=2)
    sub.received()
    pub = connected(world, "mixpub", version)
    one, zero = new_topic("mix/one"), new_topic("mix/zero")
    order = [(one, b"a"), (one, b"b"), (zero, b"x"), (one, b"c"), (zero, b"y"), (zero, b"z"),
             (one, b"d"), (one, b"e")]  # fmt: skip
    for n, (topic, payload) in enumerate(order):
        pub.publish(topic, payload, 1, packet_id=n + 1)
    first = sub.publishes()
    assert [(p.payload, p.qos) for p in first] == [(b"a", 1), (b"b", 1)]
    ack_all(sub, first)
    second = sub.publishes()
    assert [(p.payload, p.qos) for p in second] == [
        (b"x", 0), (b"c", 1), (b"y", 0), (b"z", 0), (b"d", 1)
    ]  # fmt: skip
    session = world.hub.sessions["mix"]
    assert len(session.inflight) == 2
    ack_all(sub, [p for p in second if p.qos])
    assert [(p.payload, p.qos) for p in sub.publishes()] == [(b"e", 1)]


@pytest.mark.parametrize("path", ["general", "fast"])
def test_a_delivery_that_fails_mid_batch_leaves_the_rest_of_the_batch_in_the_queue(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    world = World(max_inflight=3)
    sub = connected(world, "fragile", MQTT_3_1_1)
    sub.subscribe("frag/#", 1)
    pub = connected(world, "fragpub", MQTT_3_1_1)
    topic = new_topic("frag")
    for n in range(6):
        pub.publish(topic, b"m%d" % n, 1, packet_id=n + 1)
    first = sub.publishes()
    assert [p.payload for p in first] == [b"m0", b"m1", b"m2"]
    session = world.hub.sessions["fragile"]
    queue = world.hub.vhost.queue(session.queue_name)
    calls: list[bytes] = []
    if path == "general":
        # The batch through `deliver` one by one (`deliver_each`), failing in `deliver`.
        assert session.core is not None
        session.core.deliver_many = session.deliver_each
        deliver = Session.deliver

        def failing(self: Session, delivery: Delivery) -> None:
            calls.append(delivery.message.body)
            if len(calls) == 2:
                raise RuntimeError("boom")
            deliver(self, delivery)

        monkeypatch.setattr(Session, "deliver", failing)
    else:
        # The batch on the fast path (session_delivery_fast.py), failing in the write.
        conn = sub.conn
        send_encoded = MqttConnection.send_encoded

        def failing_write(self: MqttConnection, header: bytes, payload: bytes) -> int:
            if self is conn:
                calls.append(payload)
                if len(calls) == 2:
                    raise RuntimeError("boom")
            return send_encoded(self, header, payload)

        monkeypatch.setattr(MqttConnection, "send_encoded", failing_write)
        # The fast path appends to the output list itself when it may: make it write through
        # `send_encoded`, where the failure is injected.
        monkeypatch.setattr(MqttConnection, "publish_buffer", lambda self: None)
    with pytest.raises(RuntimeError):
        ack_all(sub, first)  # the refill is one batch of three
    assert calls == [b"m3", b"m4"]
    # m3 went out, m4 failed (taken, as a failing single delivery is), m5 is back in the queue.
    assert [e.message.body for e in queue.ready_entries()] == [b"m5"]
    assert [o.payload for o in session.inflight.values()] == [b"m3"]
