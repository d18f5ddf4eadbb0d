"""The MQTT hub tells the store what a restart must keep: persistent sessions (and only those),
their QoS 2 state, pending delayed wills; a restored session resumes with session_present."""

from __future__ import annotations

from pathlib import Path

from gateway.mqtt.packets import MQTT_5, Properties, PubComp, PubRec, PubRel, Will
from gateway.store import DB_NAME, RecordLog, SqliteSink, StoreWriter, open_database
from gateway.store.mqtt_sessions import SessionRecorder, load_sessions
from gateway.store.mqtt_wills import WillRecorder, load_wills
from tests.unit.mqtt_adapter.harness import World

PERSISTENT = Properties(session_expiry_interval=300)


class Stored:
    """The hub wired to session and will recorders over a real store file (no thread)."""

    def __init__(self, tmp_path: Path, world: World) -> None:
        self.db = open_database(tmp_path / DB_NAME)
        self.log = RecordLog()
        self.world = world
        world.hub.session_store = SessionRecorder(self.log, world.clock, lambda: 1000.0)
        world.hub.will_store = WillRecorder(self.log, world.clock, lambda: 1000.0)

    def sessions(self) -> dict[str, list[str]]:
        StoreWriter(self.log, SqliteSink(self.db), lambda _: None).drain()
        alive, _ = load_sessions(self.db, self.world.clock, lambda: 1000.0)
        return {s.client_id: [sub.full_filter for sub in s.subscriptions] for s in alive}

    def wills(self) -> list[str]:
        StoreWriter(self.log, SqliteSink(self.db), lambda _: None).drain()
        return [client_id for client_id, _, _ in load_wills(self.db, self.world.clock,
                                                            lambda: 1000.0)]  # fmt: skip


def test_only_persistent_sessions_are_stored_and_ended_ones_removed(tmp_path: Path) -> None:
    world = World()
    stored = Stored(tmp_path, world)
    durable = world.client(MQTT_5)
    durable.connect("keep", clean=False, properties=PERSISTENT)
    durable.subscribe("a/+", 1)
    clean = world.client(MQTT_5)
    clean.connect("clean")
    clean.subscribe("b/#", 1)
    assert stored.sessions() == {"keep": ["a/+"]}
    durable.drop()
    again = world.client(MQTT_5)
    again.connect("keep", clean=True)  # Clean Start ends the stored session
    assert stored.sessions() == {}


def test_qos2_packet_ids_are_stored_until_pubrel(tmp_path: Path) -> None:
    world = World()
    stored = Stored(tmp_path, world)
    client = world.client(MQTT_5)
    client.connect("q2", clean=False, properties=PERSISTENT)
    client.publish("x", b"p", 2, packet_id=5)
    assert client.expect(PubRec).packet_id == 5
    StoreWriter(stored.log, SqliteSink(stored.db), lambda _: None).drain()
    [session] = load_sessions(stored.db, world.clock, lambda: 1000.0)[0]
    assert session.inbound_qos2 == [5]
    client.send(PubRel(5))
    StoreWriter(stored.log, SqliteSink(stored.db), lambda _: None).drain()
    [session] = load_sessions(stored.db, world.clock, lambda: 1000.0)[0]
    assert session.inbound_qos2 == []


def test_a_delayed_will_is_stored_until_sent_or_cancelled(tmp_path: Path) -> None:
    world = World()
    stored = Stored(tmp_path, world)
    will = Will("w", b"bye", 1, False, Properties(will_delay_interval=10))
    client = world.client(MQTT_5)
    client.connect("dev", clean=False, properties=PERSISTENT, will=will)
    client.drop()
    assert stored.wills() == ["dev"]
    back = world.client(MQTT_5)
    back.connect("dev", clean=False, properties=PERSISTENT)  # within the delay: cancelled
    assert stored.wills() == []
    back.drop()  # no will this time
    assert stored.wills() == []


def test_a_restored_session_resumes_with_its_queue(tmp_path: Path) -> None:
    world = World()
    stored = Stored(tmp_path, world)
    client = world.client(MQTT_5)
    client.connect("dev", clean=False, properties=PERSISTENT)
    client.subscribe("s/+", 1)
    client.drop()
    StoreWriter(stored.log, SqliteSink(stored.db), lambda _: None).drain()
    [session] = load_sessions(stored.db, world.clock, lambda: 1000.0)[0]
    # A new gateway: the session queue and its binding come back with the core's recovery.
    fresh = World()
    fresh.hub.vhost.declare_queue("mqtt-subscription-dev", durable=True,
                                  arguments=fresh.hub.queue_arguments())  # fmt: skip
    fresh.hub.vhost.bind_queue("mqtt-subscription-dev", "amq.topic", "s.*")
    fresh.hub.restore_session(session)
    fresh.hub.forget_sessionless_queues()
    publisher = fresh.client(MQTT_5)
    publisher.connect("pub")
    publisher.publish("s/1", b"queued", 1, packet_id=1)
    client = fresh.client(MQTT_5)
    assert client.connect("dev", clean=False, properties=PERSISTENT).session_present
    [delivered] = client.publishes()
    assert (delivered.topic, delivered.payload) == ("s/1", b"queued")


def test_outbound_pubrel_due_is_stored_and_sent_first_after_a_restart(tmp_path: Path) -> None:
    world = World()
    stored = Stored(tmp_path, world)
    client = world.client(MQTT_5)
    client.connect("q2-sub", clean=False, properties=PERSISTENT)
    client.subscribe("t/+", 2)
    publisher = world.client(MQTT_5)
    publisher.connect("pub")
    publisher.publish("t/1", b"once", 2, packet_id=9)
    [delivered] = client.publishes()
    assert delivered.qos == 2
    assert delivered.packet_id is not None
    client.send(PubRec(delivered.packet_id))
    assert client.expect(PubRel).packet_id == delivered.packet_id
    client.drop()  # before PUBCOMP: the PUBREL is still due
    StoreWriter(stored.log, SqliteSink(stored.db), lambda _: None).drain()
    [session] = load_sessions(stored.db, world.clock, lambda: 1000.0)[0]
    assert session.outbound_pubrel == [delivered.packet_id]
    # A new gateway: the reconnecting client gets the PUBREL, not the message again.
    fresh = World()
    fresh.hub.session_store = SessionRecorder(stored.log, fresh.clock, lambda: 1000.0)
    fresh.hub.vhost.declare_queue("mqtt-subscription-q2-sub", durable=True,
                                  arguments=fresh.hub.queue_arguments())  # fmt: skip
    fresh.hub.restore_session(session)
    back = fresh.client(MQTT_5)
    assert back.connect("q2-sub", clean=False, properties=PERSISTENT).session_present
    assert back.expect(PubRel).packet_id == delivered.packet_id
    assert back.received() == []
    back.send(PubComp(delivered.packet_id))
    StoreWriter(stored.log, SqliteSink(stored.db), lambda _: None).drain()
    [session] = load_sessions(stored.db, world.clock, lambda: 1000.0)[0]
    assert session.outbound_pubrel == []
