"""The QoS 1 fast paths (bench S2) against the general ones, two worlds side by side:
`Session.deliver_many` (session_delivery_fast.py) against `deliver_each` (every message
through `SessionDelivery.deliver`), the QoS 1 route cached per topic in `MqttHub.route_plain`
against `publish_outcome` every time, and a read of PUBACKs settled with `ack_each` against
one `queue.ack` per PUBACK. Every client must see the same packets, and the hub, the sessions
and the queues must count the same; the general paths are the oracle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.consumers import Delivery
from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt import session as session_module
from gateway.mqtt import session_handler, session_hub
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    Properties,
    PubAck,
    Publish,
    Subscribe,
    SubscriptionOptions,
)
from gateway.mqtt.session import Session
from gateway.mqtt.session_delivery import SessionDelivery

from .harness import Client, ClientSpec, ScriptedRun
from .test_idle_footprint import FakeBarrier

TOPICS = ("a/b", "a/c", "x/y", "$s/t")
FILTERS = ("a/#", "a/b", "+/+", "#", "$s/#")
CLIENTS: tuple[ClientSpec, ...] = (
    ("c0", MQTT_5, True, None),
    ("c1", MQTT_3_1_1, True, None),
    ("c2", MQTT_5, True, 30),  # too small for the longer payloads
    ("c3", MQTT_5, False, None),  # persistent: redelivery with DUP after a drop
    ("c4", MQTT_3_1_1, False, None),
)

client_index = st.integers(0, len(CLIENTS) - 1)
publish = st.tuples(
    st.just("pub"),
    client_index,
    st.sampled_from(TOPICS),
    st.binary(max_size=20),
    st.sampled_from((1, 1, 1, 0)),
    st.sampled_from((False, False, False, True)),  # RETAIN
    st.sampled_from((None, None, None, 60)),  # Message Expiry Interval (MQTT 5 publishers)
    st.integers(1, 6),
)
# Several QoS 1 PUBLISHes in one read (a publisher under load), some with another PUBLISH
# among them that is not a plain QoS 1 one (QoS 0, RETAIN).
burst = st.tuples(
    st.just("burst"), client_index, st.sampled_from(TOPICS), st.integers(1, 6), st.booleans()
)
op = st.one_of(
    publish,
    publish,
    publish,
    burst,
    burst,
    st.tuples(
        st.just("sub"),
        client_index,
        st.sampled_from(FILTERS),
        st.integers(0, 2),
        st.booleans(),  # No Local
        st.integers(0, 3),  # Subscription Identifier (0: none)
        st.booleans(),  # Retain As Published
    ),
    st.tuples(st.just("ack"), client_index, st.integers(1, 8)),
    st.tuples(st.just("ack"), client_index, st.integers(1, 8)),
    st.tuples(st.just("amqp"), st.sampled_from(("a.b", "x.y", "a.*", "")), st.booleans()),
    st.tuples(st.just("bind"), st.sampled_from(("a.*", "#"))),
    st.tuples(st.just("unbind"), st.sampled_from(("a.*", "#"))),
    st.tuples(st.just("pause"), client_index, st.booleans()),
    st.tuples(st.just("drop"), client_index),
    st.tuples(st.just("commit"), st.integers(0, 3)),
)


def _ack_one_by_one(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        delivery.queue.ack(delivery)


def _no_route(*args: object) -> None:
    return None


def _no_run(*args: object) -> int:
    return 0  # none taken: every PUBLISH of the read goes through `on_plain_qos1`


class RecordingStore:
    """What the gateway's store does that the QoS 1 paths see: a persistent message in a
    durable queue is a record (`written` moves on), whose PUBLISH's PUBACK waits for the
    commit (`FakeBarrier.commit`, the "commit" step)."""

    def __init__(self, barrier: FakeBarrier) -> None:
        self.barrier = barrier

    def on_enqueued(self, queue: object, entry: object) -> None:
        self.barrier.written += 1

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None  # the other observer hooks: nothing these paths read


class Run(ScriptedRun):
    """One world driven by a list of operations; `log` is everything anybody observed.
    ``fast=False`` makes the general paths run instead of the fast ones (the oracle);
    ``store=True`` gives the broker a commit barrier and a store that records, as
    `gateway run` with a data directory has."""

    def __init__(self, *, fast: bool, store: bool = False, **world_settings: Any) -> None:
        super().__init__(CLIENTS, **world_settings)
        self.fast = fast
        self.barrier: FakeBarrier | None = None
        if store:
            self.barrier = FakeBarrier()
            self.world.broker.commit_barrier = self.barrier
            self.world.broker.observers.append(RecordingStore(self.barrier))
        # Per client: the packet ids of QoS 1 PUBLISHes received and not acked yet.
        self.unacked: dict[int, list[int]] = {}

    def apply(self, step: tuple[Any, ...]) -> None:
        if self.fast:
            self._apply(step)
            return
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Session, "deliver_many", SessionDelivery.deliver_each)
            patch.setattr(session_hub, "route_targets", _no_route)
            patch.setattr(session_module, "ack_each", _ack_one_by_one)
            patch.setattr(session_handler, "on_plain_qos1_run", _no_run)
            self._apply(step)

    def client(self, index: int) -> Client:
        before = self.clients.get(index)
        client = super().client(index)
        if client is not before:
            self.unacked[index] = []  # a new connection: nothing received on it yet
        return client

    def _apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "pub":
            _, index, topic, payload, qos, retain, expiry, times = step
            client = self.client(index)
            props = Properties()
            if expiry is not None and client.version == MQTT_5:
                props = Properties(message_expiry_interval=expiry)
            for n in range(times):
                self.packet_id = self.packet_id % 60000 + 1
                client.publish(
                    topic,
                    payload + bytes(n),
                    qos,
                    retain=retain,
                    packet_id=self.packet_id if qos else None,
                    properties=props,
                )
        elif kind == "burst":
            _, index, topic, times, mixed = step
            packets = []
            for n in range(times):
                self.packet_id = self.packet_id % 60000 + 1
                packets.append(Publish(topic, b"b" + bytes(n), 1, False, False, self.packet_id))
            if mixed:
                packets.insert(times // 2, Publish(topic, b"zero", 0, False, False, None))
                self.packet_id = self.packet_id % 60000 + 1
                packets.append(Publish(topic, b"kept", 1, True, False, self.packet_id))
            self.client(index).send(*packets)  # one read
        elif kind == "commit":  # the store's records on disk up to its latest but `behind`
            if self.barrier is not None:
                self.barrier.commit(max(0, self.barrier.written - step[1]))
        elif kind == "capped":  # an AMQP queue that refuses past 2 messages, bound to a.*
            args = {"x-max-length": 2, "x-overflow": "reject-publish"}
            self.vhost.declare_queue("capped", arguments=args)
            self.vhost.bind_queue("capped", "amq.topic", "a.*")
        elif kind == "sub":
            _, index, topic_filter, qos, no_local, identifier, rap = step
            client = self.client(index)
            v5 = client.version == MQTT_5
            props = Properties(subscription_identifiers=(identifier,)) if identifier and v5 \
                else Properties()  # fmt: skip
            options = SubscriptionOptions(
                qos, no_local=no_local and v5, retain_as_published=rap and v5
            )
            # The SUBACK is read with the step's other packets: it may come behind a
            # persistent session's resent PUBLISHes, or wait behind acks held for a commit.
            client.send(Subscribe(1, ((topic_filter, options),), props))
        elif kind == "ack":
            _, index, count = step
            client = self.client(index)
            pending = self.unacked[index]
            ids, self.unacked[index] = pending[:count], pending[count:]
            if ids:
                client.send(*(PubAck(packet_id) for packet_id in ids))  # one read
        elif kind == "amqp":
            _, key, persistent = step
            amqp = AmqpProperties(delivery_mode=2 if persistent else 1)
            self.vhost.publish("amq.topic", Message("amq.topic", key, b"q", properties=amqp))
        else:
            self.apply_shared(step)
        for index, client in sorted(self.clients.items()):
            if client.transport_closed:
                continue
            got = client.received()
            self.log.append((index, got))
            self.unacked[index].extend(
                p.packet_id
                for p in got
                if isinstance(p, Publish) and p.qos == 1 and p.packet_id is not None
            )

    def observed(self) -> list[object]:
        queues = self.queue_counts()
        sessions = sorted(
            (
                s.client_id,
                s.dropped_deliveries,
                [
                    (o.packet_id, o.topic, o.payload, o.qos, o.retain, o.properties)
                    for o in s.inflight.values()
                ],
            )
            for s in self.world.hub.sessions.values()
        )
        return [*self.log, dict(self.world.hub.stats), queues, sessions]


def both(
    steps: list[tuple[Any, ...]], store: bool = False, **world_settings: Any
) -> tuple[Run, Run]:
    fast = Run(fast=True, store=store, **world_settings)
    oracle = Run(fast=False, store=store, **world_settings)
    for step in steps:
        fast.apply(step)
        oracle.apply(step)
    return fast, oracle


def publishes(run: Run, index: int) -> list[Publish]:
    return run.received_by(index, Publish)


SUB_ALL = [("sub", i, "#", 1, False, 0, False) for i in range(len(CLIENTS))]
ACK_ALL = [("ack", i, 8) for i in range(len(CLIENTS))]
RULES = [
    # A backlog behind a window of 3, drained by reads of PUBACKs (S2's shape).
    [*SUB_ALL, ("pub", 1, "a/b", b"m", 1, False, None, 6), *ACK_ALL, *ACK_ALL],
    # No Local, Subscription Identifiers, Retain As Published, granted QoS 0 and 2.
    [
        ("sub", 0, "a/#", 1, True, 0, False),
        ("sub", 0, "+/+", 2, False, 2, True),
        ("sub", 1, "a/b", 1, False, 0, False),
        ("sub", 4, "a/#", 0, False, 0, False),
        ("pub", 0, "a/b", b"own", 1, False, None, 4),
        ("pub", 1, "a/b", b"r", 1, True, None, 2),
        *ACK_ALL,
        *ACK_ALL,
    ],
    # MQTT 5 Message Expiry on some messages of a batch, and c2's Maximum Packet Size.
    [
        *SUB_ALL,
        ("pub", 0, "a/b", b"e", 1, False, 60, 3),
        ("pub", 0, "a/b", b"x" * 19, 1, False, None, 3),
        *ACK_ALL,
        *ACK_ALL,
    ],
    # AMQP-origin messages (keys that make no topic name too) and route changes.
    [
        *SUB_ALL,
        ("pub", 1, "a/b", b"", 1, False, None, 4),
        ("amqp", "a.b", True),
        ("amqp", "a.*", True),
        ("bind", "#"),
        ("pub", 1, "a/b", b"k", 1, False, None, 4),
        ("unbind", "#"),
        ("pub", 1, "$s/t", b"", 1, False, None, 3),
        *ACK_ALL,
        *ACK_ALL,
    ],
    # Reads of several QoS 1 PUBLISHes (S2's publishers), plain or with others among them.
    [
        *SUB_ALL,
        ("burst", 1, "a/b", 6, False),
        *ACK_ALL,
        ("burst", 0, "a/b", 5, True),
        ("burst", 1, "x/y", 4, False),
        ("burst", 1, "x/y", 4, True),
        *ACK_ALL,
        *ACK_ALL,
        *ACK_ALL,
    ],
    # A topic cached to one queue, then a second subscriber and an AMQP binding: the next
    # reads reach them too.
    [
        ("sub", 1, "a/#", 1, False, 0, False),
        ("burst", 0, "a/b", 3, False),
        ("burst", 0, "a/b", 3, False),
        ("sub", 4, "a/b", 1, False, 0, False),
        ("burst", 0, "a/b", 3, False),
        ("bind", "a.*"),
        ("burst", 0, "a/b", 3, False),
        ("unbind", "a.*"),
        ("drop", 1),
        ("burst", 0, "a/b", 3, False),
        *ACK_ALL,
        *ACK_ALL,
    ],
    # A queue that refuses: MQTT 5 gets PUBACK 0x97, 3.1.1 is disconnected.
    [
        ("capped",),
        ("burst", 0, "a/b", 2, False),
        ("burst", 0, "a/b", 3, False),
        ("burst", 1, "a/c", 1, False),
        ("burst", 1, "a/c", 3, False),
        ("burst", 0, "a/c", 2, False),
    ],
    # A paused subscriber, a dropped persistent one (redelivery with DUP), resubscribing.
    [
        *SUB_ALL,
        ("pub", 1, "a/c", b"", 1, False, None, 5),
        ("pause", 0, False),
        ("drop", 3),
        ("drop", 4),
        ("pub", 1, "a/c", b"p", 1, False, None, 5),
        ("pause", 0, True),
        ("ack", 3, 2),
        ("ack", 4, 2),
        *ACK_ALL,
        ("sub", 3, "a/c", 0, False, 1, False),
        ("pub", 1, "a/c", b"", 1, False, None, 3),
        *ACK_ALL,
        *ACK_ALL,
    ],
]


@pytest.mark.parametrize("store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("steps", RULES)
def test_each_rule_on_the_fast_paths_gives_what_the_general_paths_give(
    steps: list[tuple[Any, ...]], store: bool
) -> None:
    # With a store, what a rule published to persistent sessions is committed at its end.
    fast, oracle = both([*steps, ("commit", 0), *ACK_ALL], store=store, max_inflight=3)
    assert fast.observed() == oracle.observed()


def test_a_read_of_qos1_publishes_acks_a_recorded_one_after_its_commit() -> None:
    # c4's persistent session has a durable queue: each message to a/b is a record of the
    # store. c0's clean one has not: a message to x/y waits for nothing of its own.
    steps = [
        ("sub", 4, "a/b", 1, False, 0, False),
        ("sub", 0, "x/y", 1, False, 0, False),
        ("burst", 1, "x/y", 2, False),  # ids 1-2: the general way, the route cached after
        ("burst", 1, "a/b", 2, False),  # ids 3-4: the same; records 1-2
        ("burst", 1, "a/b", 2, False),  # ids 5-6: on the cached route in one call; records 3-4
        ("burst", 1, "x/y", 2, False),  # ids 7-8: the same, behind the acks that wait
    ]
    fast, oracle = both(steps, store=True, max_inflight=3)
    routes = fast.world.hub._plain_routes
    assert [q.name for q in routes["a/b"].acked_targets] == ["mqtt-subscription-c4"]
    assert [q.name for q in routes["x/y"].acked_targets] == ["mqtt-subscription-c0"]
    assert pubacks(fast, 1) == [1, 2]  # the rest wait (DESIGN.md section 5, [MQTT-4.6.0-2])
    for run in (fast, oracle):
        run.apply(("commit", 2))  # records 1-2 on disk
    assert pubacks(fast, 1) == [1, 2, 3, 4]
    for run in (fast, oracle):
        run.apply(("commit", 0))
    assert pubacks(fast, 1) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert fast.observed() == oracle.observed()


def pubacks(run: Run, index: int) -> list[int]:
    """The packet ids of the PUBACKs client ``index`` received over the run, in order."""
    return [packet.packet_id for packet in run.received_by(index, PubAck)]


def test_the_fast_paths_are_taken_and_deliver_everything() -> None:
    # The S2 shape on the fast paths: each message once, in order, the window respected.
    fast, _ = both([("sub", 1, "a/#", 1, False, 0, False)], max_inflight=3)
    taken: list[int] = []
    original = Session.deliver

    def counting(self: Session, delivery: Delivery) -> None:
        taken.append(delivery.entry.seq)
        original(self, delivery)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Session, "deliver", counting)
        fast.apply(("pub", 0, "a/b", b"s", 1, False, None, 9))
        for _ in range(4):
            fast.apply(("ack", 1, 3))
    got = publishes(fast, 1)
    assert [p.payload for p in got] == [b"s" + bytes(n) for n in range(9)]
    assert all(p.qos == 1 and not p.dup for p in got)
    # Only the first three (each into an empty window, one at a time) took `deliver`: the
    # refills after each read of PUBACKs went through the batch's fast path.
    assert taken == [1, 2, 3]
    route = fast.world.hub._plain_routes["a/b"]
    assert route.acked_version == fast.vhost.routing_version
    assert [q.name for q in route.acked_targets] == ["mqtt-subscription-c1"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=st.lists(op, max_size=30), store=st.booleans())
def test_any_sequence_on_the_fast_paths_matches_the_general_paths(
    steps: list[tuple[Any, ...]], store: bool
) -> None:
    fast, oracle = both(steps, store=store, max_inflight=3)
    assert fast.observed() == oracle.observed()
