"""What an idle connection costs (issue 7, S7: thousands of idle clients per gateway): slotted
handler and session, and what only some connections need is made on first use and works the
same once made."""

from __future__ import annotations

from collections.abc import Callable

from gateway.mqtt.codec import encode
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    ReasonCode,
)
from gateway.mqtt.session_acks import HeldAcks

from .harness import Client, World


def connected(world: World, client_id: str, version: int = MQTT_5, **kw: object) -> Client:
    client = world.client(version)
    ack = client.connect(client_id, **kw)  # type: ignore[arg-type]
    assert ack.reason_code == ReasonCode.SUCCESS
    return client


def test_an_idle_clean_connection_makes_nothing_on_demand() -> None:
    world = World()
    client = connected(world, "idle")
    handler = client.handler
    session = world.hub.sessions["idle"]
    assert not hasattr(handler, "__dict__")
    assert not hasattr(session, "__dict__")
    assert handler.held is None
    assert handler._aliases_out is None
    assert handler._flow is None
    assert session._inbound_qos2 is None
    assert session._match_cache is None
    assert session._queue_name is None
    # No queue either until the first SUBSCRIBE (AMQP tools see it from then on).
    assert not world.hub.queue_exists("mqtt-subscription-idle")
    client.subscribe("a/b", 1)
    assert world.hub.queue_exists(session.queue_name)
    assert session.queue_name == "mqtt-subscription-idle"


def test_what_only_connect_needed_is_dropped_once_connected() -> None:
    """The CONNECT packet, the connect deadline, the peer address and a split packet's
    buffer list stay with no idle connection; a later split packet and timers still work."""
    world = World()
    for version in (MQTT_3_1_1, MQTT_5):
        client = connected(world, f"drop-{version}", version)
        conn, handler = client.conn, client.handler
        assert conn.connect is None
        assert conn._connect_deadline is None
        assert handler.peer_host == ""
        assert chunks(client) is None
        assert handler.owner is client  # one owner reference, no bound-method callbacks
        ping = encode(PingReq(), version)
        client.send_bytes(ping[:1])  # split: the decoder buffers until the rest arrives
        assert chunks(client) == [ping[:1]]
        client.send_bytes(ping[1:])
        assert client.expect(PingResp) == PingResp()
        assert chunks(client) is None


def chunks(client: Client) -> list[bytes] | None:
    # Read through a function: mypy would keep the attribute narrowed across sends.
    return client.conn._decoder._chunks


def test_inbound_qos2_ids_are_made_on_first_use_and_keep_exactly_once() -> None:
    world = World()
    client = connected(world, "q2")
    session = world.hub.sessions["q2"]
    assert session.inbound_qos2 == frozenset()
    client.publish("t", b"1", 2, packet_id=7)
    assert client.expect(PubRec).packet_id == 7
    assert session.inbound_qos2 == {7}
    client.publish("t", b"1", 2, packet_id=7, dup=True)  # not routed again
    assert client.expect(PubRec).packet_id == 7
    client.send(PubRel(7))
    assert client.expect(PubComp).reason_code == ReasonCode.SUCCESS
    assert session.inbound_qos2 == set()
    client.send(PubRel(7))  # released already
    assert client.expect(PubComp).reason_code == ReasonCode.PACKET_IDENTIFIER_NOT_FOUND


def test_outbound_aliases_are_made_by_the_first_aliased_publish() -> None:
    world = World(topic_alias_maximum=0)
    sub = connected(world, "al", properties=Properties(topic_alias_maximum=2))
    assert sub.handler._aliases_out is None
    sub.subscribe("x/#", 0)
    pub = connected(world, "pub")
    pub.publish("x/1", b"a")
    pub.publish("x/1", b"b")
    first, second = sub.publishes()
    assert (first.topic, first.properties.topic_alias) == ("x/1", 1)
    assert (second.topic, second.properties.topic_alias) == ("", 1)
    assert sub.handler._aliases_out == {"x/1": 1}


def held_acks(client: Client) -> HeldAcks | None:
    return client.handler.held


class FakeBarrier:
    """A store's commit barrier: `commit(n)` puts records up to n on disk."""

    def __init__(self) -> None:
        self.written = 0
        self.committed = 0
        self._waiting: list[tuple[int, Callable[[], None]]] = []

    def after_commit(self, written: int, callback: Callable[[], None]) -> None:
        self._waiting.append((written, callback))

    def commit(self, upto: int) -> None:
        self.committed = upto
        due = [cb for n, cb in self._waiting if n <= upto]
        self._waiting = [(n, cb) for n, cb in self._waiting if n > upto]
        for callback in due:
            callback()


def test_held_acks_are_made_by_the_first_wait_and_keep_publish_order() -> None:
    world = World()
    client = connected(world, "held")
    handler = client.handler
    handler.ack(PubAck(1))  # nothing to wait for: sent at once, nothing kept
    assert client.expect(PubAck).packet_id == 1
    assert held_acks(client) is None

    barrier = FakeBarrier()
    world.broker.commit_barrier = barrier
    handler.ack(PubAck(2), wait_for=5)
    handler.ack(PubAck(3))  # waits for nothing, but must not overtake 2 [MQTT-4.6.0-2]
    assert isinstance(held_acks(client), HeldAcks)
    assert client.received() == []
    barrier.commit(4)
    assert client.received() == []
    barrier.commit(5)
    assert [p.packet_id for p in client.received() if isinstance(p, PubAck)] == [2, 3]
    handler.ack(PubAck(4))
    assert client.expect(PubAck).packet_id == 4


def test_held_acks_of_a_closed_connection_are_never_sent() -> None:
    world = World()
    client = connected(world, "gone")
    barrier = FakeBarrier()
    world.broker.commit_barrier = barrier
    client.handler.ack(PubAck(9), wait_for=1)
    client.drop()
    barrier.commit(1)
    assert client.received() == []
