"""Group commit: batching, one report per transaction, and what a batch writes."""

from __future__ import annotations

from pathlib import Path

from gateway.core.message import Message, Properties
from gateway.store import RecordLog, StoreWriter
from gateway.store.writer import DELETE, Record
from tests.unit.store.helpers import SyncStore


class FakeSink:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[Record]] = []
        self.fail_on = fail_on

    def write(self, batch: list[Record]) -> None:
        if self.fail_on is not None and len(self.batches) == self.fail_on:
            raise OSError("disk full")
        self.batches.append(batch)


def records(n: int, start: int = 0) -> list[Record]:
    return [(DELETE, i, None) for i in range(start, start + n)]


def test_batches_hold_at_most_max_batch_records_and_report_once_each() -> None:
    log = RecordLog()
    sink = FakeSink()
    reports: list[int] = []
    writer = StoreWriter(log, sink, reports.append)
    for record in records(2500):
        log.append(record)
    assert log.written == 2500
    assert log.wake.is_set()
    writer.drain()
    assert [len(b) for b in sink.batches] == [1000, 1000, 500]
    assert reports == [1000, 2000, 2500]
    assert [r[1] for b in sink.batches for r in b] == list(range(2500))  # order kept
    assert not writer.run_once()  # nothing left: no empty transaction, no report
    assert reports == [1000, 2000, 2500]


def test_records_arriving_during_a_commit_go_into_the_next_one() -> None:
    log = RecordLog()
    sink = FakeSink()
    reports: list[int] = []
    writer = StoreWriter(log, sink, reports.append, max_batch=1000)
    log.append(records(1)[0])
    assert writer.run_once()
    for record in records(3, start=1):
        log.append(record)
    assert writer.run_once()
    assert [len(b) for b in sink.batches] == [1, 3]
    assert reports == [1, 4]


def test_a_failed_write_stops_reporting() -> None:
    log = RecordLog()
    errors: list[BaseException] = []
    reports: list[int] = []
    writer = StoreWriter(log, FakeSink(fail_on=1), reports.append, on_error=errors.append,
                         max_batch=2)  # fmt: skip
    for record in records(6):
        log.append(record)
    writer.drain()
    assert reports == [2]
    assert isinstance(writer.failed, OSError)
    assert errors == [writer.failed]
    assert not writer.run_once()


def test_barrier_runs_waiters_in_record_order_once_committed(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    observer = store.observer
    fired: list[str] = []
    store.broker.vhost("/").declare_queue("q", durable=True)  # record 1
    observer.after_commit(1, lambda: fired.append("one"))
    store.broker.vhost("/").declare_exchange("x", "direct", durable=True)  # record 2
    observer.after_commit(2, lambda: fired.append("two"))
    assert fired == []
    assert store.writer.run_once()
    assert fired == ["one", "two"]
    observer.after_commit(2, lambda: fired.append("now"))  # already committed: at once
    assert fired == ["one", "two", "now"]
    store.close()


def _message(body: bytes) -> Message:
    return Message("", "q", body, properties=Properties(delivery_mode=2))


def test_insert_and_delete_in_one_batch_write_nothing(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    vhost.publish("", _message(b"a"))
    vhost.publish("", _message(b"b"))
    got = vhost.get("q", no_ack=True)  # removes "a" in the same batch
    assert got is not None
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    store.writer.drain()
    store.db.set_trace_callback(None)
    assert sum("INSERT OR REPLACE INTO messages" in s for s in statements) == 1
    assert not any(s.startswith("DELETE FROM messages") for s in statements)
    assert [row[0] for row in store.db.execute("SELECT body FROM messages")] == [b"b"]
    store.close()


def test_queue_deletion_after_inserts_in_one_batch_leaves_no_rows(tmp_path: Path) -> None:
    store = SyncStore(tmp_path)
    vhost = store.broker.vhost("/")
    vhost.declare_queue("q", durable=True)
    for body in (b"1", b"2", b"3"):
        vhost.publish("", _message(body))
    vhost.delete_queue("q")
    store.writer.drain()
    assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    assert store.db.execute("SELECT COUNT(*) FROM queues").fetchone() == (0,)
    store.close()
