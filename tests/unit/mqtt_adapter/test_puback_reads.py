"""A read's leading PUBACKs are settled in one `Session.pubacks` call and the window refilled
once; what follows them in the same read (PUBLISHes of any QoS, more PUBACKs) is handled after
them, in order, as one event at a time would be."""

from __future__ import annotations

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, PubAck, Publish
from gateway.mqtt.session import Session

from .harness import Client, World

VERSIONS = (MQTT_3_1_1, MQTT_5)


def connected(world: World, client_id: str, version: int) -> Client:
    client = world.client(version)
    client.connect(client_id)
    return client


def backlog(version: int, messages: int, window: int) -> tuple[World, Client, Client]:
    world = World(max_inflight=window)
    sub = connected(world, "sub", version)
    sub.subscribe("r/#", 1)
    pub = connected(world, "pub", version)
    for n in range(messages):
        pub.publish("r/x", b"%d" % n, 1, packet_id=n % 60000 + 1)
    pub.received()
    return world, sub, pub


def ids(publishes: list[Publish]) -> list[int]:
    got = [p.packet_id for p in publishes]
    assert all(packet_id is not None for packet_id in got)
    return [packet_id for packet_id in got if packet_id is not None]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_read_of_pubacks_settles_them_all_and_refills_the_window_once(
    version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sub, _ = backlog(version, 12, 4)
    first = sub.publishes()
    assert [p.payload for p in first] == [b"0", b"1", b"2", b"3"]
    resumes: list[int] = []
    original = Session.resume

    def counted(self: Session) -> None:
        resumes.append(1)
        original(self)

    monkeypatch.setattr(Session, "resume", counted)
    sub.send_bytes(b"".join(encode(PubAck(i), version) for i in ids(first)))
    assert len(resumes) == 1
    second = sub.publishes()
    assert [p.payload for p in second] == [b"4", b"5", b"6", b"7"]
    session = sub.handler.session
    assert session is not None
    assert sorted(session.inflight) == sorted(ids(second))


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_and_repeated_pubacks_in_a_read_change_nothing(version: int) -> None:
    _, sub, _ = backlog(version, 6, 3)
    first = ids(sub.publishes())
    acks = [first[0], 999, first[0], first[1]]
    sub.send_bytes(b"".join(encode(PubAck(i), version) for i in acks))
    got = sub.publishes()
    assert [p.payload for p in got] == [b"3", b"4"]
    session = sub.handler.session
    assert session is not None
    assert len(session.inflight) == 3


def mixed_read(version: int, first: list[int]) -> list[bytes]:
    return [
        encode(PubAck(first[0]), version),
        encode(Publish("own/t", b"q0", 0, False, False, None), version),
        encode(Publish("own/t", b"q1", 1, False, False, 5), version),
        encode(Publish("own/t", b"q1b", 1, False, False, 6), version),
        encode(PubAck(first[1]), version),
        encode(Publish("own/t", b"q0b", 0, False, False, None), version),
        encode(PubAck(first[1]), version),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_publish_right_after_the_pubacks_is_not_lost(version: int) -> None:
    world, sub, _ = backlog(version, 5, 2)
    watcher = connected(world, "watcher", version)
    watcher.subscribe("own/#", 0)
    first = ids(sub.publishes())
    read = [encode(PubAck(i), version) for i in first]
    read.append(encode(Publish("own/t", b"last", 1, False, False, 9), version))
    sub.send_bytes(b"".join(read))
    assert [p.packet_id for p in sub.received() if isinstance(p, PubAck)] == [9]
    assert [p.payload for p in watcher.publishes()] == [b"last"]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_puback_for_a_qos2_delivery_settles_nothing(version: int) -> None:
    world = World()
    sub = connected(world, "sub", version)
    sub.subscribe("two/#", 2)
    pub = connected(world, "pub", version)
    pub.publish("two/x", b"2", 2, packet_id=1)
    (delivery,) = sub.publishes()
    assert delivery.qos == 2
    assert delivery.packet_id is not None
    sub.send_bytes(encode(PubAck(delivery.packet_id), version) * 2)
    session = sub.handler.session
    assert session is not None
    assert delivery.packet_id in session.inflight
    queue = world.broker.vhost("/").queue("mqtt-subscription-sub")
    assert queue.unacked_count == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_read_is_handled_as_one_puback_at_a_time_would_handle_it(
    version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    for batched in (True, False):
        if not batched:
            # The oracle: no PUBACK settled in bulk, each goes through `Session.puback`.
            monkeypatch.setattr(Session, "pubacks", lambda self, events: 0)
        world, sub, _ = backlog(version, 5, 2)
        watcher = connected(world, "watcher", version)
        watcher.subscribe("own/#", 0)
        sub.send_bytes(b"".join(mixed_read(version, ids(sub.publishes()))))
        seen.append((sub.received(), watcher.received(), dict(world.hub.stats)))
    assert seen[0] == seen[1]
    sub_got, watcher_got, _ = seen[0]
    assert [p.packet_id for p in sub_got if isinstance(p, PubAck)] == [5, 6]
    assert [p.payload for p in sub_got if isinstance(p, Publish)] == [b"2", b"3"]
    assert [p.payload for p in watcher_got if isinstance(p, Publish)] == [
        b"q0",
        b"q1",
        b"q1b",
        b"q0b",
    ]
