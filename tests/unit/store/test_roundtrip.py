"""What the observer records comes back after a restart: exactly the durable state."""

from __future__ import annotations

from pathlib import Path

from gateway.core.message import Message, Properties
from tests.unit.store.helpers import SyncStore


def persistent(body: bytes, key: str = "q", exchange: str = "") -> Message:
    return Message(exchange, key, body, properties=Properties(delivery_mode=2, message_id="m"))


def transient(body: bytes, key: str = "q") -> Message:
    return Message("", key, body, properties=Properties())


def test_only_persistent_messages_in_durable_queues_survive(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    vhost.declare_queue("t")
    vhost.publish("", persistent(b"p1"))
    vhost.publish("", transient(b"t1"))
    vhost.publish("", persistent(b"p-to-transient", "t"))
    vhost.publish("", persistent(b"p2"))
    store.close()
    again = SyncStore(tmp_path)
    assert [e.message.body for e in again.queue("q").ready_entries()] == [b"p1", b"p2"]
    assert again.counts.queues == 1
    again.close()


def test_acked_messages_are_gone_and_unacked_ones_come_back_redelivered(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    for i in range(5):
        vhost.publish("", persistent(b"m%d" % i))
    store.writer.drain()
    first = vhost.get("q", no_ack=False)
    second = vhost.get("q", no_ack=False)
    assert first is not None
    assert second is not None
    store.queue("q").ack(second[0])  # m1 acked, m0 delivered and unacked at the "crash"
    store.close()
    again = SyncStore(tmp_path)
    entries = again.queue("q").ready_entries()
    assert [e.message.body for e in entries] == [b"m0", b"m2", b"m3", b"m4"]
    assert all(e.redelivered for e in entries)
    assert entries[0].message.properties.message_id == "m"
    # New messages after recovery continue the queue's order and never reuse a stored key.
    again.broker.vhost("/").publish("", persistent(b"m5"))
    again.close()
    third = SyncStore(tmp_path)
    bodies = [e.message.body for e in third.queue("q").ready_entries()]
    assert bodies == [b"m0", b"m2", b"m3", b"m4", b"m5"]
    third.close()


def test_topology_with_exchange_bindings_survives_and_deletions_stick(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_exchange("src", "topic", durable=True)
    vhost.declare_exchange("dst", "fanout", durable=True, internal=True)
    vhost.declare_exchange("gone", "direct", durable=True)
    vhost.declare_queue("q", durable=True, arguments={"x-message-ttl": 60000})
    vhost.declare_queue("dropped", durable=True)
    vhost.bind_exchange("dst", "src", "a.#")
    vhost.bind_queue("q", "dst", "")
    vhost.bind_queue("q", "gone", "k")
    vhost.bind_queue("dropped", "src", "x")
    vhost.delete_exchange("gone")
    vhost.delete_queue("dropped")
    vhost.publish("src", persistent(b"via-e2e", "a.b", exchange="src"))
    store.close()
    again = SyncStore(tmp_path)
    vh = again.broker.vhost("/")
    assert {x.name for x in vh.exchanges()} >= {"src", "dst"}
    assert "gone" not in {x.name for x in vh.exchanges()}
    assert vh.exchange("dst").internal
    assert {q.name for q in vh.queues()} == {"q"}
    assert vh.queue("q").arguments == {"x-message-ttl": 60000}
    assert {(b.source, b.destination) for b in vh.bindings()} == {("src", "dst"), ("dst", "q")}
    assert [e.message.body for e in vh.queue("q").ready_entries()] == [b"via-e2e"]
    # Routing works through the recovered exchange binding.
    vh.publish("src", persistent(b"after", "a.c", exchange="src"))
    assert vh.queue("q").message_count == 2
    again.close()


def test_queues_with_a_skipped_prefix_are_not_stored(tmp_path: Path) -> None:
    store = SyncStore(tmp_path, skip=("session-",))
    vhost = store.broker.vhost("/")
    vhost.declare_queue("session-abc", durable=True)
    vhost.bind_queue("session-abc", "amq.topic", "a")
    vhost.publish("", persistent(b"x", "session-abc"))
    store.close()
    again = SyncStore(tmp_path)
    assert again.broker.vhost("/").queues() == []
    assert again.counts.bindings == 0
    again.close()


def test_fanout_to_two_durable_queues_stores_each_copy(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    for name in ("a", "b"):
        vhost.declare_queue(name, durable=True)
        vhost.bind_queue(name, "amq.fanout", "")
    vhost.publish("amq.fanout", persistent(b"both", "", exchange="amq.fanout"))
    got = vhost.get("a", no_ack=True)
    assert got is not None
    store.close()
    again = SyncStore(tmp_path)
    assert again.queue("a").message_count == 0
    assert [e.message.body for e in again.queue("b").ready_entries()] == [b"both"]
    again.close()


def test_stored_topology_the_broker_now_refuses_is_skipped_not_fatal(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_exchange("mapped", "fanout", durable=True)
    vhost.declare_queue("q", durable=True)
    vhost.bind_queue("q", "mapped", "")
    vhost.publish("", persistent(b"kept"))
    store.close()
    # The mapping rules now declare "mapped" as a topic exchange before recovery runs.
    again = SyncStore(tmp_path, predeclare=lambda broker: broker.vhost("/").declare_exchange(
        "mapped", "topic", durable=True))  # fmt: skip
    assert len(again.counts.skipped) == 1
    assert "exchange 'mapped'" in again.counts.skipped[0]
    assert "inequivalent arg 'type'" in again.counts.skipped[0]
    assert [e.message.body for e in again.queue("q").ready_entries()] == [b"kept"]
    again.close()
