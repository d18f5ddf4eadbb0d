"""Delivery rules of the session layer, driven through the real machine, hub and core."""

from __future__ import annotations

import pytest

from gateway.mqtt.packets import (
    MQTT_3_1_1,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
)

from .harness import Client, World


def connected(world: World, client_id: str, version: int = 5, **kw: object) -> Client:
    client = world.client(version)
    ack = client.connect(client_id, **kw)  # type: ignore[arg-type]
    assert ack.reason_code == ReasonCode.SUCCESS
    return client


def test_MQTT_4_3_3_10_qos2_duplicate_is_routed_once() -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("d/#", 2)
    pub = connected(world, "pub")
    pub.publish("d/1", b"once", 2, packet_id=7)
    assert pub.expect(PubRec).packet_id == 7
    pub.send(Publish("d/1", b"once", 2, False, True, 7))  # DUP resend before PUBREL
    assert pub.expect(PubRec).packet_id == 7
    pub.send(PubRel(7))
    assert pub.expect(PubComp).packet_id == 7
    assert [p.payload for p in sub.publishes()] == [b"once"]
    # After PUBCOMP the identifier is free: the same id is a new message.
    pub.publish("d/1", b"again", 2, packet_id=7)
    pub.expect(PubRec)
    assert [p.payload for p in sub.publishes()] == [b"again"]


def test_pubrel_for_an_unknown_id_gets_0x92() -> None:
    world = World()
    pub = connected(world, "pub")
    pub.send(PubRel(99))
    assert pub.expect(PubComp).reason_code == ReasonCode.PACKET_IDENTIFIER_NOT_FOUND


def test_inbound_qos2_above_receive_maximum_disconnects_with_0x93() -> None:
    world = World(max_inflight=2)
    pub = connected(world, "pub")
    for packet_id in (1, 2):
        pub.publish("r/1", b"x", 2, packet_id=packet_id)
        pub.expect(PubRec)
    pub.publish("r/1", b"x", 2, packet_id=3)
    assert pub.expect(Disconnect).reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert pub.transport_closed


def test_window_is_min_of_server_max_and_client_receive_maximum() -> None:
    world = World(max_inflight=3)
    small = connected(world, "small", properties=Properties(receive_maximum=2))
    small.subscribe("w/#", 1)
    big = connected(world, "big")  # no Receive Maximum: 65535, so the server's 3 applies
    big.subscribe("w/#", 1)
    pub = connected(world, "pub")
    for n in range(5):
        pub.publish_acked("w/x", str(n).encode(), packet_id=n + 1)
    first = small.publishes()
    assert [p.payload for p in first] == [b"0", b"1"]
    assert [p.payload for p in big.publishes()] == [b"0", b"1", b"2"]
    small.send(PubAck(first[0].packet_id or 0))
    assert [p.payload for p in small.publishes()] == [b"2"]


def test_MQTT_2_2_1_3_outbound_packet_ids_never_collide() -> None:
    world = World(max_inflight=4)
    sub = connected(world, "sub")
    sub.subscribe("ids/#", 2)
    pub = connected(world, "pub")
    in_flight: dict[int, Publish] = {}
    seen: list[bytes] = []
    for n in range(40):
        qos = 1 + n % 2
        pub.publish("ids/x", str(n).encode(), qos, packet_id=1)
        pub.received()
        if qos == 2:
            pub.send(PubRel(1))
            pub.expect(PubComp)
        for packet in sub.publishes():
            assert packet.packet_id not in in_flight
            in_flight[packet.packet_id or 0] = packet
            seen.append(packet.payload)
        assert len(in_flight) <= 4
        if n % 3:
            continue  # settle more slowly than messages arrive: ids stay in use a while
        oldest = next(iter(in_flight))
        if in_flight.pop(oldest).qos == 1:
            sub.send(PubAck(oldest))
        else:
            sub.send(PubRec(oldest))
            assert sub.expect(PubRel).packet_id == oldest
            sub.send(PubComp(oldest))
    assert seen == [str(n).encode() for n in range(len(seen))]
    assert len(seen) >= 14


def test_packet_id_allocation_wraps_around_ids_still_in_flight() -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("wrap/#", 1)
    session = world.hub.sessions["sub"]
    session._next_packet_id = 0xFFFE  # as after a long-lived connection
    pub = connected(world, "pub")
    for n in range(3):
        pub.publish_acked("wrap/x", str(n).encode())
    assert [p.packet_id for p in sub.publishes()] == [0xFFFE, 0xFFFF, 1]
    session._next_packet_id = 0xFFFE  # the counter comes round again while they are unacked
    pub.publish_acked("wrap/x", b"3")
    assert [p.packet_id for p in sub.publishes()] == [2]


def test_unacked_messages_are_resent_with_dup_after_reconnect() -> None:
    world = World()
    keep = Properties(session_expiry_interval=60)
    sub = connected(world, "sub", clean=False, properties=keep)
    sub.subscribe("re/#", 2)
    pub = connected(world, "pub")
    pub.publish_acked("re/1", b"q1")
    pub.publish("re/2", b"q2", 2, packet_id=2)
    pub.expect(PubRec)
    pub.send(PubRel(2))
    first = sub.publishes()
    assert [(p.payload, p.dup) for p in first] == [(b"q1", False), (b"q2", False)]
    sub.send(PubRec(first[1].packet_id or 0))  # QoS 2 half done: PUBREL pending PUBCOMP
    assert sub.expect(PubRel).packet_id == first[1].packet_id
    sub.drop()
    again = connected(world, "sub", clean=False, properties=keep)
    resent = again.received()
    # [MQTT-4.4.0-1]: same packet ids, PUBLISH with DUP, and the PUBREL again.
    assert isinstance(resent[0], Publish)
    assert (resent[0].payload, resent[0].dup, resent[0].packet_id) == (
        b"q1",
        True,
        first[0].packet_id,
    )
    assert resent[1] == PubRel(first[1].packet_id or 0)
    again.send(PubAck(first[0].packet_id or 0), PubComp(first[1].packet_id or 0))
    assert world.hub.sessions["sub"].inflight == {}


def test_MQTT_3_8_3_3_no_local_with_an_overlapping_subscription() -> None:
    world = World()
    client = connected(world, "me")
    client.subscribe("nl/#", 2, packet_id=1, no_local=True, properties=Properties())
    client.subscribe("nl/a", 0, packet_id=2, properties=Properties(subscription_identifiers=(9,)))
    client.publish("nl/a", b"own", 1)
    # Only the subscription without No Local counts for the client's own message.
    got, ack = client.received()
    assert isinstance(got, Publish)
    assert isinstance(ack, PubAck)
    assert (got.qos, got.properties.subscription_identifiers) == (0, (9,))
    client.publish_acked("nl/b", b"own-only-no-local")
    assert client.received() == []
    other = connected(world, "other")
    other.publish_acked("nl/a", b"theirs", packet_id=3)
    (theirs,) = client.publishes()
    assert theirs.qos == 1  # min(1, max(2, 0))


def test_own_messages_are_delivered_until_a_no_local_subscription_covers_them() -> None:
    world = World()
    client = connected(world, "echo")
    client.subscribe("echo/#", 1, packet_id=1)
    client.publish("echo/a", b"one", 1, packet_id=5)
    got = [p for p in client.received() if isinstance(p, Publish)]
    assert [p.payload for p in got] == [b"one"]
    client.send(PubAck(got[0].packet_id or 0))
    # Without a No Local subscription, whose message it is does not matter: one cached match.
    session = world.hub.sessions["echo"]
    cache = session._match_cache
    assert cache is not None
    assert cache["echo/a"][0] is cache["echo/a"][1]
    client.subscribe("echo/#", 1, packet_id=2, no_local=True, properties=Properties())
    client.publish_acked("echo/a", b"two", packet_id=6)
    assert client.received() == []
    other = connected(world, "echo-other")
    other.publish_acked("echo/a", b"three", packet_id=7)
    assert [p.payload for p in client.publishes()] == [b"three"]


def test_overlapping_subscriptions_one_copy_all_identifiers() -> None:
    world = World()
    sub = connected(world, "sub")
    sub.subscribe("ov/+", 1, packet_id=1, properties=Properties(subscription_identifiers=(1,)))
    sub.subscribe("ov/#", 2, packet_id=2, properties=Properties(subscription_identifiers=(2,)))
    sub.subscribe("ov/a", 0, packet_id=3)
    pub = connected(world, "pub")
    pub.publish("ov/a", b"m", 2, packet_id=4)
    pub.expect(PubRec)
    (got,) = sub.publishes()
    assert got.qos == 2
    assert sorted(got.properties.subscription_identifiers) == [1, 2]


def test_dollar_topics_are_not_matched_by_leading_wildcards_shared_ones_included() -> None:
    world = World()
    plain = connected(world, "plain")
    plain.subscribe("#", 1, packet_id=1)
    plain.subscribe("+/status", 1, packet_id=2)
    shared = connected(world, "shared")
    shared.subscribe("$share/g/#", 1)
    dollar = connected(world, "dollar")
    dollar.subscribe("$ops/#", 1)
    pub = connected(world, "pub")
    pub.publish_acked("$ops/status", b"d")
    assert plain.received() == []
    assert shared.received() == []
    assert [p.topic for p in dollar.publishes()] == ["$ops/status"]


def test_publishing_to_sys_is_not_authorized() -> None:
    world = World()
    pub = connected(world, "pub")
    ack = pub.publish_acked("$SYS/broker/x")
    assert ack.reason_code == ReasonCode.NOT_AUTHORIZED


def test_shared_subscription_is_load_balanced() -> None:
    world = World()
    members = [connected(world, f"m{n}") for n in range(2)]
    for member in members:
        member.subscribe("$share/grp/lb/#", 1)
    pub = connected(world, "pub")
    for n in range(10):
        pub.publish_acked("lb/x", str(n).encode())
    got = [[p.payload for p in member.publishes()] for member in members]
    assert all(got)
    assert sorted(got[0] + got[1]) == sorted(str(n).encode() for n in range(10))


def test_outbound_topic_alias() -> None:
    world = World()
    sub = connected(world, "sub", properties=Properties(topic_alias_maximum=2))
    sub.subscribe("ta/#", 0)
    pub = connected(world, "pub")
    for topic in ("ta/a", "ta/b", "ta/c", "ta/a", "ta/b", "ta/c"):
        pub.publish(topic)
    got = [(p.topic, p.properties.topic_alias) for p in sub.publishes()]
    assert got == [
        ("ta/a", 1),
        ("ta/b", 2),
        ("ta/c", None),  # no alias left
        ("", 1),
        ("", 2),
        ("ta/c", None),
    ]


def test_topic_alias_is_not_relied_on_when_its_first_publish_was_dropped() -> None:
    world = World()
    limits = Properties(topic_alias_maximum=5, maximum_packet_size=64)
    sub = connected(world, "sub", properties=limits)
    sub.subscribe("big/#", 0)
    pub = connected(world, "pub")
    pub.publish("big/t", b"x" * 200)  # larger than the client's Maximum Packet Size
    pub.publish("big/t", b"small")
    got = sub.publishes()
    assert [(p.topic, p.payload, p.properties.topic_alias) for p in got] == [("big/t", b"small", 1)]


def test_retained_message_published_with_a_topic_alias_is_stored_without_it() -> None:
    world = World()
    pub = connected(world, "pub")
    pub.publish_acked("ra/t", b"v", retain=True, properties=Properties(topic_alias=1))
    sub = connected(world, "sub")
    sub.subscribe("ra/t", 1)
    (got,) = sub.publishes()
    assert got.retain
    assert got.properties.topic_alias is None


@pytest.mark.parametrize("rpi", [None, False])
def test_request_problem_information(rpi: bool | None) -> None:
    world = World()
    pub = connected(world, "pub", properties=Properties(request_problem_information=rpi))
    ack = pub.publish_acked("pf/x", b"\xff", properties=Properties(payload_format_indicator=1))
    assert ack.reason_code == ReasonCode.PAYLOAD_FORMAT_INVALID
    assert (ack.properties.reason_string is not None) == (rpi is None)


@pytest.mark.parametrize("version", [MQTT_3_1_1, 5])
def test_refused_publish_is_answered_as_mosquitto_does(version: int) -> None:
    world = World()
    pub = connected(world, "pub", version)
    pub.publish("$SYS/x", b"v", 0)  # QoS 0: dropped without a word
    pub.publish("$SYS/x", b"v", 1, packet_id=4)
    ack = pub.expect(PubAck)
    assert ack.packet_id == 4
    # 3.1.1 has no reason code: a plain PUBACK, and the message went nowhere.
    expected = ReasonCode.NOT_AUTHORIZED if version == 5 else ReasonCode.SUCCESS
    assert ack.reason_code == expected
    pub.publish("$SYS/x", b"v", 2, packet_id=5)
    assert pub.expect(PubRec).reason_code == expected
    assert not pub.transport_closed
    assert world.hub.stats["refused"] == 3


@pytest.mark.parametrize("version", [MQTT_3_1_1, 5])
def test_publish_rejected_by_a_full_queue(version: int) -> None:
    world = World()
    vhost = world.hub.vhost
    limits = {"x-max-length": 1, "x-overflow": "reject-publish"}
    vhost.declare_queue("amqp-worker", arguments=limits)
    vhost.bind_queue("amqp-worker", "amq.topic", "full.#")
    pub = connected(world, "pub", version)
    pub.publish_acked("full/1", b"fits")
    pub.publish("full/2", b"does not fit", 1, packet_id=2)
    if version == 5:
        assert pub.expect(PubAck).reason_code == ReasonCode.QUOTA_EXCEEDED
    else:
        # 3.1.1 cannot refuse a message: the connection closes so the client retries.
        assert pub.received() == []
        assert pub.transport_closed


def test_rabbitmq_topic_mode_matches_like_the_routing_key() -> None:
    world = World(topic_mode="rabbitmq")
    wild = connected(world, "wild")
    wild.subscribe("rm/+/c", 1)
    exact = connected(world, "exact")
    exact.subscribe("rm/b.c", 1)
    pub = connected(world, "pub")
    pub.publish_acked("rm/b.c", b"dot")
    assert [p.topic for p in wild.publishes()] == ["rm/b.c"]
    assert [p.topic for p in exact.publishes()] == ["rm/b.c"]
