"""Paging of persistent bodies (core/paging.py) with a fake store: what is paged out and when,
page-in before delivery, and every way an entry can leave a queue while paged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.core.broker import Broker
from gateway.core.message import Message, QueueEntry
from gateway.core.paging import NO_LIMIT, PAGED
from gateway.core.queues import Queue
from gateway.core.vhost import VirtualHost
from tests.unit.core.helpers import FakeClock, RecordingConsumer, make_broker, msg

BODY = 100  # bytes per test message
LIMIT = 1000  # resident bytes per queue before paging out


class FakeStore:
    """Observer, commit barrier and body source in one: rows are what was enqueued and not yet
    removed; ``committed`` moves only when a test calls :meth:`commit`."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], Message] = {}
        self.written = 0
        self.committed = 0
        self.waiters: list[tuple[int, Callable[[], None]]] = []
        self.loads: list[list[int]] = []
        self.deleted_queues: list[str] = []

    # observer
    def on_enqueued(self, queue: Queue, entry: QueueEntry) -> None:
        self.written += 1
        self.rows[(queue.name, entry.seq)] = entry.message

    def on_removed(self, queue: Queue, entry: QueueEntry) -> None:
        self.written += 1
        self.rows.pop((queue.name, entry.seq), None)

    def on_queue_deleted(self, queue: Queue) -> None:
        self.deleted_queues.append(queue.name)
        for key in [k for k in self.rows if k[0] == queue.name]:
            del self.rows[key]

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("on_"):
            return lambda *args: None
        raise AttributeError(name)

    # commit barrier
    def after_commit(self, written: int, callback: Callable[[], None]) -> None:
        if written <= self.committed:
            callback()
        else:
            self.waiters.append((written, callback))

    def commit(self) -> None:
        self.committed = self.written
        waiters, self.waiters = self.waiters, []
        for _, callback in waiters:
            callback()

    # body source
    def pageable(self, queue: Queue) -> bool:
        return queue.durable

    def load(self, queue: Queue, entries: list[QueueEntry]) -> None:
        self.loads.append([e.seq for e in entries])
        for entry in entries:
            stored = self.rows.get((queue.name, entry.seq))
            if stored is not None:
                # A fresh object, as the store builds it from its row.
                entry.message = Message(
                    stored.exchange,
                    stored.routing_key,
                    bytes(stored.body),
                    properties=stored.properties,
                )


def setup(
    *, limit: int = LIMIT, batch: int = 4, arguments: dict[str, Any] | None = None
) -> tuple[Broker, VirtualHost, FakeClock, FakeStore, Queue]:
    broker, vhost, clock = make_broker()
    store = FakeStore()
    broker.observers.append(store)
    broker.commit_barrier = store
    broker.pager.enable(store, limit, batch)
    vhost.declare_queue("q", durable=True, arguments=arguments)
    return broker, vhost, clock, store, vhost.queue("q")


def fill(vhost: VirtualHost, count: int, *, persistent: bool = True, **kw: Any) -> None:
    for i in range(count):
        body = f"{i:03d}".encode().ljust(BODY, b".")
        vhost.publish("", msg(body, "q", persistent=persistent, headers={"n": i}, **kw))


def paged_seqs(queue: Queue) -> list[int]:
    return [e.seq for e in queue.ready_entries() if e.message is PAGED]


def resident(queue: Queue) -> int:
    return sum(len(e.message.body) for e in queue.ready_entries())


def number(body: bytes) -> int:
    return int(body[:3])


def test_committed_tail_is_paged_out_first_and_bytes_count_resident_only() -> None:
    broker, vhost, _, store, queue = setup()
    fill(vhost, 10)  # 1000 bytes: at the limit, nothing paged
    assert paged_seqs(queue) == []
    store.commit()
    fill(vhost, 1)  # past the limit, then wait for the new one's commit
    store.commit()
    # Down to half the limit, newest first: the oldest five stay resident.
    assert paged_seqs(queue) == [6, 7, 8, 9, 10, 11]
    assert queue.ready_bytes == resident(queue) == 500
    assert broker.queued_bytes == 500
    assert queue.message_count == 11
    assert broker.pager.paged_out == 6


def test_uncommitted_entries_stay_until_their_commit() -> None:
    broker, vhost, _, store, queue = setup()
    fill(vhost, 15)
    assert paged_seqs(queue) == []  # nothing on disk yet
    assert queue._page_at == NO_LIMIT  # no rescan per enqueue while waiting
    store.commit()
    assert paged_seqs(queue) == list(range(6, 16))
    assert broker.queued_bytes == 500


def test_transient_messages_are_never_paged() -> None:
    broker, vhost, _, store, queue = setup()
    fill(vhost, 20, persistent=False)
    store.commit()
    fill(vhost, 1, persistent=False)
    assert paged_seqs(queue) == []
    assert broker.queued_bytes == 2100
    # Mixed: only the persistent ones go.
    fill(vhost, 10)
    store.commit()
    fill(vhost, 1)
    store.commit()
    assert paged_seqs(queue) != []
    assert all(e.message.persistent for e in queue.ready_entries() if e.message is PAGED)


def test_queues_that_are_not_paged() -> None:
    _broker, vhost, _, store, _ = setup()
    vhost.declare_queue("t", durable=False)
    vhost.declare_queue("b", durable=True, arguments={"x-max-length-bytes": 100_000})
    for name in ("t", "b"):
        for _ in range(30):
            vhost.publish("", msg(b"x" * BODY, name, persistent=True))
    store.commit()
    for name in ("t", "b"):
        assert vhost.queue(name)._page_at == NO_LIMIT
        assert all(e.message is not PAGED for e in vhost.queue(name).ready_entries())


def test_consumer_gets_every_message_in_order_with_body_and_properties() -> None:
    broker, vhost, _, store, queue = setup(batch=4)
    fill(vhost, 30)
    store.commit()
    assert len(paged_seqs(queue)) > 20
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=5)
    delivered: list[int] = []
    while consumer.deliveries:
        for delivery in consumer.take():
            assert len(delivery.message.body) == BODY
            assert delivery.message.properties.headers == {"n": number(delivery.message.body)}
            assert delivery.message.properties.delivery_mode == 2
            delivered.append(number(delivery.message.body))
            queue.ack(delivery)
    assert delivered == list(range(30))
    # Paged in in batches of at most 4, never one read per message.
    assert store.loads
    assert all(len(seqs) <= 4 for seqs in store.loads)
    assert len(store.loads) <= 30 // 4 + 1
    assert store.rows == {}  # every ack removed its row, paged or not
    assert broker.queued_bytes == 0
    assert queue.ready_bytes == 0


def test_acks_of_paged_in_messages_after_more_paging() -> None:
    broker, vhost, _, store, queue = setup(batch=2)
    fill(vhost, 20)
    store.commit()
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=3)
    held = consumer.take()
    fill(vhost, 20)  # more arrives and pages out while three are unacked
    store.commit()
    for delivery in held:
        queue.ack(delivery)
    seen = [number(d.message.body) for d in held]
    while consumer.deliveries:
        for delivery in consumer.take():
            seen.append(number(delivery.message.body))
            queue.ack(delivery)
    assert seen == list(range(20)) + list(range(20))
    assert store.rows == {}
    assert broker.queued_bytes == 0


def test_basic_get_pages_in() -> None:
    broker, vhost, _, store, _queue = setup()
    fill(vhost, 20)
    store.commit()
    got = []
    while (result := vhost.get("q", no_ack=True)) is not None:
        got.append(number(result[0].message.body))
    assert got == list(range(20))
    assert store.rows == {}
    assert broker.queued_bytes == 0


def test_purge_and_delete_remove_paged_rows_without_reading_them() -> None:
    broker, vhost, _, store, queue = setup()
    fill(vhost, 20)
    store.commit()
    assert paged_seqs(queue)
    assert vhost.purge_queue("q") == 20
    assert store.rows == {}
    assert store.loads == []
    assert broker.queued_bytes == 0
    fill(vhost, 20)
    store.commit()
    vhost.delete_queue("q")
    assert store.deleted_queues == ["q"]
    assert store.loads == []
    assert broker.queued_bytes == 0


def test_ttl_expiry_of_paged_entries_reads_nothing_without_a_dead_letter_exchange() -> None:
    broker, vhost, clock, store, queue = setup(arguments={"x-message-ttl": 1000})
    fill(vhost, 20)
    store.commit()
    assert paged_seqs(queue)
    clock.advance(2)
    broker.handle_timer()
    assert queue.message_count == 0
    assert queue.expired == 20
    assert store.loads == []
    assert store.rows == {}
    assert broker.queued_bytes == 0


def test_dead_lettering_a_paged_entry_loads_its_body_first() -> None:
    broker, vhost, clock, store, queue = setup(
        arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "dlx"}
    )
    vhost.declare_exchange("dlx", "fanout")
    vhost.declare_queue("dead")
    vhost.bind_queue("dead", "dlx", "")
    fill(vhost, 20)
    store.commit()
    assert paged_seqs(queue)
    clock.advance(2)
    broker.handle_timer()
    dead = vhost.queue("dead").ready_entries()
    assert [number(e.message.body) for e in dead] == list(range(20))
    assert all(e.message.properties.headers["x-death"] for e in dead)  # type: ignore[index]
    assert store.rows == {}
    assert broker.queued_bytes == 20 * BODY  # now held (resident) by the transient "dead"


def test_drop_head_dead_letters_paged_entries_with_their_body() -> None:
    _broker, vhost, _, store, queue = setup(
        limit=1,  # pages out everything committed, the head too
        arguments={"x-max-length": 12, "x-overflow": "drop-head", "x-dead-letter-exchange": "dlx"},
    )
    vhost.declare_exchange("dlx", "fanout")
    vhost.declare_queue("dead")
    vhost.bind_queue("dead", "dlx", "")
    fill(vhost, 12)
    store.commit()
    assert paged_seqs(queue) == list(range(1, 13))
    fill(vhost, 3)  # drops the three oldest, all paged
    dead = vhost.queue("dead").ready_entries()
    assert [number(e.message.body) for e in dead] == [0, 1, 2]
    assert all(len(e.message.body) == BODY for e in dead)
    assert store.loads == [[1], [2], [3]]
    assert queue.message_count == 12


def test_a_missing_row_is_dropped_and_counted() -> None:
    broker, vhost, _, store, queue = setup()
    fill(vhost, 20)
    store.commit()
    lost = paged_seqs(queue)[0]
    del store.rows[("q", lost)]
    got = []
    while (result := vhost.get("q", no_ack=True)) is not None:
        got.append(result[0].entry.seq)
    assert lost not in got
    assert len(got) == 19
    assert broker.pager.lost == 1


def test_recovered_entries_are_paged_without_a_writer() -> None:
    broker, _vhost, _, _store, queue = setup()
    broker.commit_barrier = None  # recovery: before the store attaches
    queue.restore((seq, msg(b"r" * BODY, "q", persistent=True)) for seq in range(1, 31))
    assert len(paged_seqs(queue)) == 25
    assert broker.queued_bytes == 500


def test_disabled_pager_leaves_queues_alone() -> None:
    broker, vhost, _, store, queue = setup()
    broker.pager.disable()
    assert queue._page_at == NO_LIMIT
    fill(vhost, 30)
    store.commit()
    assert paged_seqs(queue) == []
    with pytest.raises(ValueError):
        broker.pager.enable(store, 0)
