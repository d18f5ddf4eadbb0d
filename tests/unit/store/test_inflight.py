"""Outbound packet ids of a persistent session survive a restart (schema version 2): a stored
message in flight to the client keeps its id on disk until PUBACK, and a restarted gateway
resends it first, under that id, with DUP [MQTT-4.4.0-1, MQTT-4.6.0-1]."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.packets import MQTT_5, Properties, PubAck, PubComp, Publish, PubRec, PubRel
from gateway.store import DB_NAME, RecordLog, SqliteSink, StoreObserver, StoreWriter, open_database
from gateway.store.mqtt_sessions import SessionRecorder, StoredSession, load_sessions
from gateway.store.recovery import Recovered, recover_messages, recover_topology
from gateway.store.writer import DELETE, INFLIGHT, INSERT
from tests.unit.mqtt_adapter.harness import Client, World

PERSISTENT = Properties(session_expiry_interval=300)


def wall() -> float:
    return 1000.0


class Life:
    """One run of a gateway over a store file, wired as app.py does (writer driven by hand);
    dropping the object without `close` is a kill -9 after the last `commit`."""

    def __init__(self, directory: Path, *, max_inflight: int = 100) -> None:
        self.db = open_database(directory / DB_NAME)
        self.world = World(max_inflight=max_inflight)
        hub = self.world.hub
        counts = Recovered()
        by_queue, by_id = recover_topology(self.db, self.world.broker, counts)
        recover_messages(self.db, by_id, counts)
        alive, _ = load_sessions(self.db, self.world.clock, wall)
        for stored in alive:
            hub.restore_session(stored)
        self.log = RecordLog()
        observer = StoreObserver(self.log, by_queue, max([0, *by_queue.values()]) + 1)
        self.world.broker.observers.append(observer)
        self.sink = SqliteSink(self.db)
        self.writer = StoreWriter(self.log, self.sink, observer.committed_upto)
        hub.session_store = SessionRecorder(self.log, self.world.clock, wall, by_queue)

    def client(self) -> Client:
        return self.world.client(MQTT_5)

    def commit(self) -> None:
        self.writer.drain()

    def rows(self) -> list[tuple[str, int, int]]:
        """(client id, packet id, qos) on disk, in message order."""
        self.commit()
        return self.db.execute(
            "SELECT client_id, packet_id, qos FROM mqtt_inflight ORDER BY message_id"
        ).fetchall()

    def kill(self) -> None:
        self.commit()
        self.db.close()


def subscriber(life: Life, qos: int = 1) -> Client:
    client = life.client()
    client.connect("dev", clean=False, properties=PERSISTENT)
    client.subscribe("s/+", qos)
    return client


def publish(life: Life, *payloads: bytes, qos: int = 1) -> None:
    publisher = life.client()
    publisher.connect("pub")
    for n, payload in enumerate(payloads, 1):
        publisher.publish("s/1", payload, qos, packet_id=n)
    publisher.received()


def test_ids_are_stored_with_their_messages_and_go_with_the_puback(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life)
    publish(life, b"a", b"b", b"c")
    sent = client.publishes()
    assert [(p.payload, p.dup) for p in sent] == [(b"a", False), (b"b", False), (b"c", False)]
    ids = [p.packet_id for p in sent]
    assert life.rows() == [("dev", ids[0], 1), ("dev", ids[1], 1), ("dev", ids[2], 1)]
    assert ids[1] is not None
    client.send(PubAck(ids[1]))
    assert life.rows() == [("dev", ids[0], 1), ("dev", ids[2], 1)]
    [stored] = load_sessions(life.db, life.world.clock, wall)[0]
    assert [(pid, qos) for _, pid, qos in stored.outbound] == [(ids[0], 1), (ids[2], 1)]
    assert [seq for seq, _, _ in stored.outbound] == sorted(seq for seq, _, _ in stored.outbound)


def test_a_message_sent_and_acked_within_one_commit_costs_no_write(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life)
    life.commit()
    before = life.db.total_changes
    publish(life, b"quick")
    [sent] = client.publishes()
    assert sent.packet_id is not None
    client.send(PubAck(sent.packet_id))
    assert any(record[0] == INFLIGHT for record in life.log.records)
    life.commit()
    assert life.db.total_changes == before
    assert life.rows() == []


def test_clean_sessions_write_nothing_for_what_they_are_sent(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = life.client()
    client.connect("clean-dev")
    client.subscribe("s/+", 1)
    life.commit()
    publish(life, b"x")
    assert len(client.publishes()) == 1
    assert not any(record[0] == INFLIGHT for record in life.log.records)


def test_after_a_kill_the_session_resends_the_same_ids_with_dup_first(tmp_path: Path) -> None:
    life = Life(tmp_path, max_inflight=2)
    client = subscriber(life)
    publish(life, b"a", b"b", b"c")
    first = client.publishes()  # a window of two: c waits in the queue
    assert [p.payload for p in first] == [b"a", b"b"]
    ids = [p.packet_id for p in first]
    life.kill()

    again = Life(tmp_path, max_inflight=2)
    back = again.client()
    assert back.connect("dev", clean=False, properties=PERSISTENT).session_present
    resent = back.publishes()
    assert [(p.payload, p.packet_id, p.dup, p.qos) for p in resent] == [
        (b"a", ids[0], True, 1),
        (b"b", ids[1], True, 1),
    ]
    assert ids[0] is not None
    assert ids[1] is not None
    back.send(PubAck(ids[0]))
    [third] = back.publishes()
    assert (third.payload, third.dup) == (b"c", False)
    assert third.packet_id not in ids  # new ids avoid the restored ones
    assert third.packet_id is not None
    assert again.rows() == [("dev", ids[1], 1), ("dev", third.packet_id, 1)]
    back.send(PubAck(ids[1]), PubAck(third.packet_id))
    assert again.rows() == []
    assert again.db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_qos2_in_flight_keeps_its_id_and_pubrec_hands_over_to_pubrel(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life, qos=2)
    publish(life, b"once", qos=2)
    [sent] = client.publishes()
    assert sent.packet_id is not None
    life.kill()

    again = Life(tmp_path)
    back = again.client()
    assert back.connect("dev", clean=False, properties=PERSISTENT).session_present
    [resent] = back.publishes()
    assert (resent.packet_id, resent.dup, resent.qos) == (sent.packet_id, True, 2)
    back.send(PubRec(sent.packet_id))
    assert back.expect(PubRel).packet_id == sent.packet_id
    assert again.rows() == []  # the message is settled; the session row keeps "PUBREL due"
    back.send(PubComp(sent.packet_id))
    assert again.rows() == []


def test_a_clean_start_after_a_restart_drops_the_stored_ids(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life)
    publish(life, b"a")
    assert len(client.publishes()) == 1
    life.kill()
    again = Life(tmp_path)
    fresh = again.client()
    assert not fresh.connect("dev", clean=True).session_present
    assert fresh.received() == []
    assert again.rows() == []


def test_ids_not_at_the_head_of_the_queue_fall_back_to_new_deliveries(tmp_path: Path) -> None:
    life = Life(tmp_path, max_inflight=1)
    client = subscriber(life)
    publish(life, b"a", b"b")
    [sent] = client.publishes()
    assert sent.payload == b"a"
    assert sent.packet_id is not None
    life.kill()
    # Someone consumed "a" off the file while the gateway was down: "b" is the head now.
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("DELETE FROM messages WHERE id = (SELECT MIN(id) FROM messages)")
    db.commit()
    db.close()
    again = Life(tmp_path)
    back = again.client()
    assert back.connect("dev", clean=False, properties=PERSISTENT).session_present
    [delivered] = back.publishes()
    assert (delivered.payload, delivered.dup) == (b"b", False)


def test_a_restored_id_already_taken_is_not_restored_twice(tmp_path: Path) -> None:
    world = World()
    hub = world.hub
    world.hub.vhost.declare_queue("mqtt-subscription-dev", durable=True,
                                  arguments=hub.queue_arguments())  # fmt: skip
    hub.vhost.bind_queue("mqtt-subscription-dev", "amq.topic", "s.*")
    publisher = world.client()
    publisher.connect("pub")
    publisher.publish("s/1", b"a", 1, packet_id=1)
    publisher.publish("s/1", b"b", 1, packet_id=2)
    seqs = [e.seq for e in hub.vhost.queue("mqtt-subscription-dev").ready_entries()]
    stored = load_sessions_for(tmp_path, "dev")
    # Two stored rows claim packet id 5: the first keeps it, the second is a new delivery.
    hub.restore_session(
        StoredSession(
            "dev", 300, None, stored.subscriptions, [], [], [(seqs[0], 5, 1), (seqs[1], 5, 1)]
        )
    )
    back = world.client()
    assert back.connect("dev", clean=False, properties=PERSISTENT).session_present
    got = back.publishes()
    assert [(p.payload, p.packet_id, p.dup) for p in got[:1]] == [(b"a", 5, True)]
    assert [(p.payload, p.dup) for p in got[1:]] == [(b"b", False)]
    assert got[1].packet_id != 5


def load_sessions_for(tmp_path: Path, client_id: str) -> StoredSession:
    """A stored session of ``client_id`` subscribed to s/+ at QoS 1, from a real store file."""
    life = Life(tmp_path)
    client = life.client()
    client.connect(client_id, clean=False, properties=PERSISTENT)
    client.subscribe("s/+", 1)
    life.commit()
    [stored] = load_sessions(life.db, life.world.clock, wall)[0]
    life.kill()
    return stored


def test_a_deleted_session_queue_takes_its_ids_along(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life)
    publish(life, b"a")
    assert len(client.publishes()) == 1
    assert len(life.rows()) == 1
    life.world.hub.vhost.delete_queue("mqtt-subscription-dev")
    assert life.rows() == []


def test_publishes_after_resend_are_not_duplicated(tmp_path: Path) -> None:
    life = Life(tmp_path)
    client = subscriber(life)
    publish(life, b"a")
    [sent] = client.publishes()
    life.kill()
    again = Life(tmp_path)
    back = again.client()
    back.connect("dev", clean=False, properties=PERSISTENT)
    [resent] = back.publishes()
    assert isinstance(resent, Publish)
    assert (resent.payload, resent.packet_id, resent.dup) == (b"a", sent.packet_id, True)
    publish(again, b"b")
    [new] = back.publishes()
    assert (new.payload, new.dup) == (b"b", False)
    assert new.packet_id != sent.packet_id


# -- the writer's bookkeeping against a model --------------------------------------------------

MESSAGE = Message("x", "k", b"body", properties=AmqpProperties(delivery_mode=2))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["send", "sent", "ack", "commit"]), st.integers(1, 4))),
)
def test_in_flight_rows_follow_their_messages_whatever_the_batching(
    steps: list[tuple[str, int]],
) -> None:
    """Messages 1-4 are enqueued, sent (maybe again, under a new id), acked, in any order and
    with commits anywhere (a new sink after each: a restart); what is on disk always equals
    the model: a row for every message still stored that was sent, with its latest id."""
    db = open_database(Path(":memory:"))
    log = RecordLog()
    stored: set[int] = set()
    sent: dict[int, int] = {}
    model_stored: set[int] = set()
    model_sent: dict[int, int] = {}
    gone: set[int] = set()  # a message row id is never used again (queue seqs only grow)
    next_id = 1

    def commit() -> None:
        StoreWriter(log, SqliteSink(db), lambda _: None).drain()
        model_stored.clear()
        model_stored.update(stored)
        model_sent.clear()
        model_sent.update(sent)

    for action, rowid in steps:
        if action == "send" and rowid not in stored and rowid not in gone:
            log.append((INSERT, rowid, MESSAGE))
            stored.add(rowid)
        elif action == "sent" and rowid in stored:
            log.append((INFLIGHT, rowid, ("c", next_id, 1)))
            sent[rowid] = next_id
            next_id += 1
        elif action == "ack" and rowid in stored:
            log.append((DELETE, rowid, None))
            stored.discard(rowid)
            gone.add(rowid)
            sent.pop(rowid, None)
        elif action == "commit":
            commit()
    commit()
    assert {r[0] for r in db.execute("SELECT id FROM messages")} == model_stored
    rows = dict(db.execute("SELECT message_id, packet_id FROM mqtt_inflight").fetchall())
    assert rows == model_sent
    db.close()
