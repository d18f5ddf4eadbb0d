"""Paging against the real store file: bodies leave memory once committed and come back from
SQLite, with their properties, in queue order; a recovered backlog is paged as it loads."""

from __future__ import annotations

from pathlib import Path

from gateway.core.broker import Broker
from gateway.core.message import Message, Properties
from gateway.core.paging import PAGED
from gateway.store import DB_NAME
from gateway.store.pages import StoreBodySource
from gateway.store.store import Store
from tests.unit.store.helpers import SyncStore

BODY = 200


def persistent(i: int) -> Message:
    props = Properties(delivery_mode=2, message_id=f"m{i}", headers={"n": i})
    return Message("", "q", b"%05d" % i + b"." * (BODY - 5), properties=props)


def paged_store(directory: Path, *, limit: int = 2000, batch: int = 7) -> SyncStore:
    store = SyncStore(directory)
    source = StoreBodySource(directory / DB_NAME, lambda: store.observer._qids)
    store.broker.commit_barrier = store.observer
    store.broker.pager.enable(source, limit, batch)
    return store


def test_committed_bodies_are_read_back_in_order_with_their_properties(tmp_path: Path) -> None:
    store = paged_store(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    for i in range(50):
        vhost.publish("", persistent(i))
    queue = store.queue("q")
    assert all(e.message is not PAGED for e in queue.ready_entries())  # nothing committed yet
    store.writer.drain()
    paged = [e for e in queue.ready_entries() if e.message is PAGED]
    assert len(paged) == 45
    assert store.broker.queued_bytes == 5 * BODY
    got = []
    while (result := vhost.get("q", no_ack=False)) is not None:
        delivery = result[0]
        message = delivery.message
        got.append(int(message.body[:5]))
        assert len(message.body) == BODY
        assert message.properties.message_id == f"m{got[-1]}"
        assert message.properties.headers == {"n": got[-1]}
        assert message.persistent
        assert not delivery.entry.redelivered
        queue.ack(delivery)
    assert got == list(range(50))
    assert store.broker.pager.paged_in == 45
    assert store.broker.pager.lost == 0
    store.writer.drain()
    assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    assert store.broker.queued_bytes == 0
    store.close()


def test_a_recovered_backlog_is_paged_while_it_loads(tmp_path: Path) -> None:
    writer = SyncStore(tmp_path)
    vhost = writer.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    for i in range(300):
        vhost.publish("", persistent(i))
    writer.close()

    store = Store.open(tmp_path)
    broker = Broker(lambda: 0.0)
    store.enable_paging(broker, 4000, batch=50)
    counts = store.recover(broker)
    assert counts.messages == 300
    queue = broker.vhost("/").queue("q")
    assert broker.queued_bytes <= 4000
    assert sum(e.message is PAGED for e in queue.ready_entries()) >= 280
    got = []
    while (result := broker.vhost("/").get("q", no_ack=True)) is not None:
        got.append((int(result[0].message.body[:5]), result[0].entry.redelivered))
    assert got == [(i, True) for i in range(300)]
    store.close()
    assert broker.pager.source is None
