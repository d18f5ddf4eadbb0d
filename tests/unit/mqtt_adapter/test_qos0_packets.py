"""QoS 0 plain publishes without a `Message` (`MqttHub.route_plain` with the route cached per
topic under the vhost's `routing_version`, core/routing.py `offer_packet`/`offer_rest`,
`SessionDelivery.deliver_packet`): every client sees the same packets, and the hub, the
sessions and the queues count the same, as on the full path, which serves as the oracle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.convert import A_VIEW, message_from_plain_publish
from gateway.core.message import Message
from gateway.mqtt import session_hub
from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, Properties, Publish, Unsubscribe
from gateway.mqtt.session import Session

from .harness import ClientSpec, ScriptedRun

TOPICS = ("a/b", "a/b", "x/y", "$s/t")
FILTERS = ("a/#", "a/b", "+/+", "#", "$s/#")
CLIENTS: tuple[ClientSpec, ...] = (
    ("c0", MQTT_5, True, None),
    ("c1", MQTT_3_1_1, True, None),
    ("c2", MQTT_5, True, 24),  # too small for the longer payloads
    ("c3", MQTT_5, False, None),  # persistent: a durable queue, never a direct sink
)

client_index = st.integers(0, len(CLIENTS) - 1)
# Runs of publishes (the last item: how many), so that cached routes get used.
publish = st.tuples(
    st.just("pub"),
    client_index,
    st.sampled_from(TOPICS),
    st.binary(max_size=20),
    st.sampled_from((0, 0, 0, 1)),
    st.sampled_from((False, False, False, True)),
    st.integers(1, 4),
)
op = st.one_of(
    publish,
    publish,
    publish,
    st.tuples(
        st.just("sub"),
        client_index,
        st.sampled_from(FILTERS),
        st.integers(0, 1),
        st.booleans(),
        st.integers(0, 3),
    ),
    st.tuples(st.just("unsub"), client_index, st.sampled_from(FILTERS)),
    st.tuples(st.just("bind"), st.sampled_from(("a.*", "#", "x.y"))),
    st.tuples(st.just("unbind"), st.sampled_from(("a.*", "#", "x.y"))),
    st.tuples(st.just("pause"), client_index, st.booleans()),
    st.tuples(st.just("drop"), client_index),
)


class Run(ScriptedRun):
    """One world driven by a list of operations; `log` is everything anybody observed."""

    def __init__(self, *, packets: bool, **world_settings: Any) -> None:
        super().__init__(CLIENTS, **world_settings)
        if not packets:
            self.world.hub._qos0_packets = False  # the oracle: the full path every time

    def apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "pub":
            _, index, topic, payload, qos, retain, times = step
            for n in range(times):
                self.packet_id = self.packet_id % 60000 + 1
                self.client(index).publish(
                    topic,
                    payload + bytes(n),
                    qos,
                    retain=retain,
                    packet_id=self.packet_id if qos else None,
                )
        elif kind == "sub":
            _, index, topic_filter, qos, no_local, identifier = step
            client = self.client(index)
            v5 = client.version == MQTT_5
            props = (
                Properties(subscription_identifiers=(identifier,))
                if identifier and v5
                else (Properties())
            )
            self.log.append(
                client.subscribe(topic_filter, qos, no_local=no_local and v5, properties=props)
            )
        elif kind == "unsub":
            _, index, topic_filter = step
            client = self.client(index)
            client.send(Unsubscribe(2, (topic_filter,)))
        else:
            self.apply_shared(step)
        for index, client in sorted(self.clients.items()):
            if not client.transport_closed:
                self.log.append((index, client.received()))

    def observed(self) -> list[object]:
        queues = self.queue_counts()
        amqp = [
            (
                m.routing_key,
                m.body,
                m.properties,
                m.persistent,
                {k: v for k, v in m.annotations.items() if k != A_VIEW},
            )
            for m in self._amqp()
        ]
        sessions = sorted(
            (s.client_id, s.dropped_deliveries) for s in self.world.hub.sessions.values()
        )
        return [*self.log, dict(self.world.hub.stats), queues, amqp, sessions]

    def _amqp(self) -> list[Message]:
        queue = self.vhost.queue("amqp")
        got = []
        while (got_one := queue.get(no_ack=True)) is not None:
            got.append(got_one[0].message)
        return got


def payloads(run: Run, index: int) -> list[bytes]:
    """The payloads of the PUBLISHes client ``index`` received over the run, in order."""
    return [packet.payload for packet in run.received_by(index, Publish)]


def both(steps: list[tuple[Any, ...]], **world_settings: Any) -> tuple[Run, Run]:
    fast = Run(packets=True, **world_settings)
    full = Run(packets=False, **world_settings)
    for step in steps:
        fast.apply(step)
        full.apply(step)
    return fast, full


# Each rule once for sure, on the cached route (a third publish in a row and later).
SUB_ALL = [("sub", i, "#", 0, False, 0) for i in range(len(CLIENTS))]
RULES = [
    [("sub", 0, "a/#", 0, True, 0), ("pub", 0, "a/b", b"own", 0, False, 4)],  # No Local
    [
        ("sub", 0, "a/#", 0, False, 3),
        ("sub", 0, "+/+", 0, False, 2),
        ("pub", 1, "a/b", b"ids", 0, False, 4),
    ],  # Subscription Identifiers
    [*SUB_ALL, ("pub", 1, "a/b", b"x" * 19, 0, False, 4)],  # c2's Maximum Packet Size
    [
        *SUB_ALL,
        ("pub", 1, "a/b", b"", 0, False, 3),
        ("bind", "#"),
        ("pub", 1, "a/b", b"amqp", 0, False, 4),
        ("unbind", "#"),
        ("pub", 1, "a/b", b"", 0, False, 3),
    ],
    [
        *SUB_ALL,
        ("pub", 1, "$s/t", b"", 0, False, 4),
        ("sub", 0, "$s/#", 0, False, 0),
        ("pub", 1, "$s/t", b"", 0, False, 4),
    ],  # $-topics and wildcards
    [
        *SUB_ALL,
        ("pub", 1, "a/b", b"", 0, False, 3),
        ("pause", 0, False),
        ("pub", 1, "a/b", b"p", 0, False, 3),
        ("pause", 0, True),
        ("pub", 1, "a/b", b"", 0, False, 3),
    ],
    [
        *SUB_ALL,
        ("pub", 1, "a/b", b"", 0, False, 3),
        ("drop", 0),
        ("pub", 1, "a/b", b"d", 0, False, 3),
        ("unsub", 1, "#"),
        ("pub", 1, "a/b", b"", 0, False, 3),
    ],
    [
        ("sub", 1, "a/#", 0, False, 0),
        ("pub", 0, "a/b", b"r", 0, True, 3),
        ("pub", 0, "a/b", b"", 0, False, 3),
        ("sub", 0, "a/b", 0, False, 0),
    ],  # retained
]


@settings(max_examples=200, deadline=None)
@given(st.lists(op, min_size=2, max_size=30), st.sampled_from(("block", "drop")))
def test_qos0_packets_behave_as_the_full_path(steps: list[tuple[Any, ...]], overflow: str) -> None:
    fast, full = both(steps, qos0_overflow=overflow)
    assert fast.observed() == full.observed()


@pytest.mark.parametrize("overflow", ["block", "drop"])
@pytest.mark.parametrize("steps", RULES)
def test_each_rule_holds_on_the_cached_route(steps: list[tuple[Any, ...]], overflow: str) -> None:
    fast, full = both(steps, qos0_overflow=overflow)
    assert fast.observed() == full.observed()


def counting_messages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built: list[int] = []
    original = message_from_plain_publish

    def counted(*args: Any) -> Message:
        built.append(1)
        return original(*args)

    monkeypatch.setattr(session_hub, "message_from_plain_publish", counted)
    return built


def test_direct_subscribers_get_qos0_publishes_without_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = counting_messages(monkeypatch)
    run = Run(packets=True)
    run.apply(("sub", 0, "a/#", 0, False, 0))
    run.apply(("sub", 1, "a/b", 0, False, 0))
    for n in range(5):
        run.apply(("pub", 3, "a/b", b"%d" % n, 0, False, 1))
    # The first publish finds the topic's route, the second the queues it reaches.
    assert len(built) == 2
    for index in (0, 1):
        assert payloads(run, index) == [b"%d" % n for n in range(5)]


def test_a_binding_change_ends_the_cached_route(monkeypatch: pytest.MonkeyPatch) -> None:
    built = counting_messages(monkeypatch)
    run = Run(packets=True)
    run.apply(("sub", 0, "a/#", 0, False, 0))
    run.apply(("pub", 3, "a/b", b"1", 0, False, 1))
    run.apply(("pub", 3, "a/b", b"2", 0, False, 1))
    run.apply(("pub", 3, "a/b", b"3", 0, False, 1))
    assert len(built) == 2
    run.apply(("bind", "a.*"))  # an AMQP queue: it needs a Message every time
    run.apply(("pub", 3, "a/b", b"4", 0, False, 1))
    run.apply(("pub", 3, "a/b", b"5", 0, False, 1))
    assert len(built) == 4
    assert [m.body for m in run._amqp()] == [b"4", b"5"]
    run.apply(("unbind", "a.*"))
    run.apply(("sub", 1, "a/b", 0, False, 0))  # a new subscriber is reached at once
    run.apply(("pub", 3, "a/b", b"6", 0, False, 1))
    run.apply(("pub", 3, "a/b", b"7", 0, False, 1))
    assert len(built) == 5
    assert payloads(run, 1) == [b"6", b"7"]
    assert payloads(run, 0) == [b"%d" % n for n in range(1, 8)]


def test_a_queued_session_takes_the_message_after_direct_ones() -> None:
    run = Run(packets=True)
    run.apply(("sub", 0, "a/#", 0, False, 0))
    run.apply(("sub", 3, "a/#", 1, False, 0))  # persistent: its queue needs the Message
    for n in range(3):
        run.apply(("pub", 1, "a/b", b"%d" % n, 0, False, 1))
    expected = [b"%d" % n for n in range(3)]
    assert payloads(run, 0) == payloads(run, 3) == expected


def test_no_local_drops_the_publishers_own_packet() -> None:
    run = Run(packets=True)
    run.apply(("sub", 0, "a/#", 0, True, 0))
    for n in range(3):
        run.apply(("pub", 0, "a/b", b"%d" % n, 0, False, 1))
    assert payloads(run, 0) == []
    session = run.world.hub.sessions["c0"]
    assert isinstance(session, Session)
    assert session.dropped_deliveries == 3
