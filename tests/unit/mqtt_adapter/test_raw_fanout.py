"""A publisher's lone QoS 0 PUBLISHes written through a `RawFanout` (session_fanout.py): every
client sees the same bytes, and the hub, the sessions and the queues count the same, as in a
twin gateway whose handlers never keep a fanout (the single-PUBLISH way every time, itself
checked against the event list in test_listener_qos0.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import encode
from gateway.mqtt.listener import MqttProtocol
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    Connect,
    PingReq,
    Properties,
    Publish,
    Subscribe,
    SubscriptionOptions,
    Unsubscribe,
)

from .test_listener_close import FakeTransport
from .test_listener_connect import Listener

# (client id, protocol level, clean start, CONNECT properties)
CLIENTS: tuple[tuple[str, int, bool, Properties], ...] = (
    ("pub4", MQTT_3_1_1, True, EMPTY_PROPERTIES),
    ("pub5", MQTT_5, True, EMPTY_PROPERTIES),
    ("sub4", MQTT_3_1_1, True, EMPTY_PROPERTIES),
    ("sub5", MQTT_5, True, EMPTY_PROPERTIES),
    ("small", MQTT_5, True, Properties(maximum_packet_size=100)),
    ("alias", MQTT_5, True, Properties(topic_alias_maximum=4)),
    ("kept", MQTT_3_1_1, False, EMPTY_PROPERTIES),  # persistent: a durable queue
)
TOPICS = ("t/a", "t/a", "t/b", "u/c")
FILTERS = ("t/#", "t/a", "+/+", "#")
PINGRESP = b"\xd0\x00"


class Run:
    """One gateway (listener protocols on fake transports) driven by operations; `log` is
    what every client was written after each one, with the loop's deferred flushes run."""

    def __init__(self, *, fanouts: bool, **settings: Any) -> None:
        self.listener = Listener(**settings)
        self.hub = self.listener.world.hub
        if not fanouts:
            self.hub.raw_fanout = lambda *args: None  # type: ignore[method-assign]
        self.vhost = self.listener.world.broker.vhost("/")
        self.vhost.declare_queue("amqp")
        self.clients: dict[int, tuple[MqttProtocol, FakeTransport]] = {}
        self.log: list[object] = []
        self.fanned = 0

    def client(self, index: int) -> tuple[MqttProtocol, FakeTransport]:
        found = self.clients.get(index)
        if found is None or found[1].closed:
            client_id, version, clean, props = CLIENTS[index]
            protocol, transport = self.listener.accept()
            connect = Connect(client_id, version, clean_start=clean, keep_alive=60,
                              properties=props)  # fmt: skip
            protocol.data_received(encode(connect, version))
            found = self.clients[index] = (protocol, transport)
        return found

    def read(self, index: int, data: bytes) -> None:
        protocol, _ = self.client(index)
        fanout = protocol.handler.raw_fanout if protocol.handler is not None else None
        before = 0 if fanout is None else fanout.forwarded
        protocol.data_received(data)
        if fanout is not None:
            self.fanned += fanout.forwarded - before

    def apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind in ("pub", "split", "ping"):
            _, index, topic, size, times = step
            version = CLIENTS[index][1]
            for n in range(times):
                payload = b"0" * size + bytes([n])  # "0" is 0x30, a PUBLISH's first byte
                data = encode(Publish(topic, payload, 0, False, False, None, EMPTY_PROPERTIES),
                              version)  # fmt: skip
                if kind == "pub":
                    self.read(index, data)
                elif kind == "ping":
                    self.read(index, data + encode(PingReq(), version))
                else:
                    # A PUBLISH whose payload is itself a lone PUBLISH to the topic, read in
                    # two: the second read looks like one but ends the first.
                    inner = Publish(topic, data, 0, False, False, None, EMPTY_PROPERTIES)
                    outer = encode(inner, version)
                    cut = len(outer) - len(data)
                    self.read(index, outer[:cut])
                    self.read(index, outer[cut:])
        elif kind == "sub":
            _, index, topic_filter, qos, no_local, retain_as_published = step
            protocol, _ = self.client(index)
            version = CLIENTS[index][1]
            options = SubscriptionOptions(
                qos=qos,
                no_local=no_local and version == MQTT_5,
                retain_as_published=retain_as_published,
            )
            self.read(index, encode(Subscribe(1, ((topic_filter, options),)), version))
        elif kind == "unsub":
            _, index, topic_filter = step
            self.read(index, encode(Unsubscribe(2, (topic_filter,)), CLIENTS[index][1]))
        elif kind == "bind":
            self.vhost.bind_queue("amqp", "amq.topic", step[1])
        elif kind == "unbind":
            self.vhost.unbind_queue("amqp", "amq.topic", step[1])
        elif kind == "pause":
            protocol, _ = self.client(step[1])
            if step[2]:
                protocol.pause_writing()
            else:
                protocol.resume_writing()
        elif kind == "pending":  # output waits in the client's buffer for the loop's turn
            protocol, _ = self.client(step[1])
            assert protocol.conn is not None
            protocol.conn.send_encoded(PINGRESP, b"")
            protocol.output_ready()
        else:  # "drop": the client's connection is lost; it connects again when next used
            protocol, _ = self.client(step[1])
            protocol.connection_lost(None)
        self.listener.loop.run_soon()
        for index, (_, transport) in sorted(self.clients.items()):
            self.log.append((index, b"".join(transport.written)))
            transport.written.clear()

    def observed(self) -> list[object]:
        queues = sorted(
            (q.name, q.message_count, q.unacked_count, q.dropped, q.refused)
            for q in self.vhost.queues()
        )
        sessions = sorted((s.client_id, s.dropped_deliveries) for s in self.hub.sessions.values())
        return [*self.log, dict(self.hub.stats), queues, sessions]


def both(steps: list[tuple[Any, ...]], **settings: Any) -> tuple[Run, Run]:
    fast, oracle = Run(fanouts=True, **settings), Run(fanouts=False, **settings)
    for step in steps:
        fast.apply(step)
        oracle.apply(step)
    assert oracle.fanned == 0
    return fast, oracle


def subscribe_all() -> list[tuple[Any, ...]]:
    """The clean-session subscribers (a persistent one's durable queue takes Messages)."""
    return [("sub", i, "t/#", 0, False, False) for i in range(2, 6)]


# Each rule on a fanout in use: a run of lone PUBLISHes, a change, then the same run again.
RULES = {
    "plain": [*subscribe_all(), ("pub", 0, "t/a", 3, 6), ("pub", 1, "t/a", 3, 6)],
    "two-byte length": [*subscribe_all(), ("pub", 1, "t/a", 200, 6)],
    "new subscriber": [
        ("sub", 2, "t/#", 0, False, False),
        ("pub", 0, "t/a", 1, 4),
        ("sub", 3, "+/+", 0, False, False),
        ("pub", 0, "t/a", 1, 4),
    ],
    "unsubscribed": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("unsub", 2, "t/#"),
        ("pub", 0, "t/a", 1, 4),
    ],
    "subscription options": [
        ("sub", 1, "t/#", 0, False, False),
        ("sub", 3, "t/#", 0, False, False),
        ("pub", 1, "t/a", 1, 4),
        ("sub", 1, "t/#", 0, True, False),  # No Local, same filter: no routing change
        ("pub", 1, "t/a", 1, 4),
    ],
    "qos 1 subscription": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("sub", 2, "t/a", 1, False, False),
        ("pub", 0, "t/a", 1, 4),
    ],
    "amqp binding": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("bind", "t.*"),
        ("pub", 0, "t/a", 1, 4),
        ("unbind", "t.*"),
        ("pub", 0, "t/a", 1, 4),
    ],
    "paused socket": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("pause", 2, True),
        ("pub", 0, "t/a", 1, 4),
        ("pause", 2, False),
        ("pub", 0, "t/a", 1, 4),
    ],
    "output waiting": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("pending", 3),
        ("pub", 0, "t/a", 1, 2),
        ("pending", 2),
        ("pending", 3),
        ("pub", 0, "t/a", 1, 3),
    ],
    "subscriber gone": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("drop", 2),
        ("pub", 0, "t/a", 1, 4),
        ("sub", 2, "t/#", 0, False, False),
        ("pub", 0, "t/a", 1, 4),
    ],
    "persistent subscriber": [
        ("sub", 2, "t/#", 0, False, False),
        ("pub", 0, "t/a", 1, 4),
        ("sub", 6, "t/#", 0, False, False),  # its queue needs a Message: no fanout
        ("pub", 0, "t/a", 1, 4),
        ("unsub", 6, "t/#"),
        ("pub", 0, "t/a", 1, 4),
    ],
    "split read": [
        *subscribe_all(),
        ("pub", 0, "t/a", 4, 4),
        ("split", 0, "t/a", 4, 3),
        ("pub", 0, "t/a", 4, 3),
    ],
    "other packets in the read": [
        *subscribe_all(),
        ("pub", 1, "t/a", 1, 4),
        ("ping", 1, "t/a", 1, 2),
        ("pub", 1, "t/a", 1, 3),
    ],
    "topics alternate": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 3),
        ("pub", 0, "t/b", 1, 3),
        ("pub", 0, "t/a", 1, 1),
        ("pub", 0, "t/b", 1, 1),
    ],
    "nobody subscribed": [
        ("pub", 0, "u/c", 1, 5),
        ("sub", 2, "#", 0, False, False),
        ("pub", 0, "u/c", 1, 4),
    ],
    "own subscription": [
        ("sub", 0, "t/#", 0, False, False),
        ("pub", 0, "t/a", 1, 4),
        ("pending", 0),
        ("pub", 0, "t/a", 1, 2),
    ],
    "publisher gone": [
        *subscribe_all(),
        ("pub", 0, "t/a", 1, 4),
        ("drop", 0),
        ("pub", 0, "t/a", 1, 4),
    ],
}


@pytest.mark.parametrize("overflow", ["queue", "drop"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_each_rule_sees_what_the_twin_without_fanouts_sees(name: str, overflow: str) -> None:
    fast, oracle = both(RULES[name], qos0_overflow=overflow)
    assert fast.observed() == oracle.observed()
    assert fast.fanned > 0  # the rule did run on a fanout


def test_a_fanout_writes_the_publishers_bytes_object_to_its_subscribers() -> None:
    run = Run(fanouts=True)
    for step in subscribe_all():
        run.apply(step)
    for _ in range(3):
        run.apply(("pub", 0, "t/a", 1, 1))
    protocol, _ = run.client(0)
    assert protocol.handler is not None
    fanout = protocol.handler.raw_fanout
    assert fanout is not None
    assert fanout.topic == "t/a"
    # Every subscriber's queue took the packet; only sub4, at the publisher's level, was
    # written the publisher's bytes (the MQTT 5 ones get them encoded for their level).
    assert [(target[1].client_id, target[-1]) for target in fanout.targets] == [
        ("sub4", 1 << 28),
        ("sub5", -1),
        ("small", -1),
        ("alias", -1),
    ]
    data = encode(Publish("t/a", b"x", 0, False, False, None, EMPTY_PROPERTIES), MQTT_3_1_1)
    delivered = run.hub.stats["delivered"]
    run.read(0, data)
    assert run.fanned == 1
    assert run.client(2)[1].written == [data]
    assert run.client(2)[1].written[0] is data  # as read: not decoded and encoded again
    v5 = encode(Publish("t/a", b"x", 0, False, False, None, EMPTY_PROPERTIES), MQTT_5)
    # At the read's end; "alias" gets the topic by the alias it was told before.
    assert [run.client(i)[1].written for i in (3, 4)] == [[v5], [v5]]
    assert run.client(5)[1].written == [b"\x30\x07\x00\x00\x03\x23\x00\x01x"]
    assert run.hub.stats["delivered"] == delivered + 4


def test_a_publish_over_the_servers_maximum_packet_size_still_ends_the_connection() -> None:
    steps = [("sub", 2, "t/#", 0, False, False), ("pub", 0, "t/a", 3, 4), ("pub", 0, "t/a", 150, 1)]
    fast, oracle = both(steps, max_packet_size=120)
    assert fast.observed() == oracle.observed()
    assert fast.fanned == 1
    assert fast.clients[0][1].closed


def test_a_closed_publisher_lets_go_of_its_fanout() -> None:
    run = Run(fanouts=True)
    run.apply(("sub", 2, "t/#", 0, False, False))
    run.apply(("pub", 0, "t/a", 1, 3))
    protocol, _ = run.client(0)
    handler = protocol.handler
    assert handler is not None
    assert handler.raw_fanout is not None
    protocol.connection_lost(None)
    assert handler.raw_fanout is None


def test_the_memory_alarm_still_sees_a_fanned_publisher() -> None:
    run = Run(fanouts=True)
    run.apply(("sub", 2, "t/#", 0, False, False))
    run.apply(("pub", 0, "t/a", 1, 3))
    published: list[MqttProtocol] = []
    run.listener.alarm.published = published.append  # type: ignore[method-assign,assignment]
    run.listener.alarm.limit = -1  # any queued byte count is over it
    run.apply(("pub", 0, "t/a", 1, 1))
    assert published == [run.client(0)[0]]
    assert run.fanned == 0  # over the limit the read goes the general way, which tells it


step = st.one_of(
    st.tuples(st.sampled_from(("pub", "pub", "pub", "split", "ping")), st.integers(0, 1),
              st.sampled_from(TOPICS), st.sampled_from((0, 3, 150)), st.integers(1, 4)),
    st.tuples(st.just("sub"), st.integers(0, len(CLIENTS) - 1), st.sampled_from(FILTERS),
              st.integers(0, 1), st.booleans(), st.booleans()),
    st.tuples(st.just("unsub"), st.integers(0, len(CLIENTS) - 1), st.sampled_from(FILTERS)),
    st.tuples(st.sampled_from(("bind", "unbind")), st.sampled_from(("t.*", "#"))),
    st.tuples(st.just("pause"), st.integers(2, len(CLIENTS) - 1), st.booleans()),
    st.tuples(st.sampled_from(("pending", "drop")), st.integers(0, len(CLIENTS) - 1)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=25), st.sampled_from(["queue", "drop"]))
def test_any_operations_see_what_the_twin_without_fanouts_sees(
    steps: list[tuple[Any, ...]], overflow: str
) -> None:
    fast, oracle = both(steps, qos0_overflow=overflow)
    assert fast.observed() == oracle.observed()
