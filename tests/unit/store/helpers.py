"""A store wired without its thread: the test drives the writer (``drain``) itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from gateway.core.broker import Broker
from gateway.core.queues import Queue
from gateway.store import DB_NAME, RecordLog, SqliteSink, StoreObserver, StoreWriter, open_database
from gateway.store.recovery import Recovered, recover_messages, recover_topology


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SyncStore:
    def __init__(
        self,
        directory: Path,
        *,
        skip: tuple[str, ...] = (),
        predeclare: Callable[[Broker], object] | None = None,
    ) -> None:
        self.db: sqlite3.Connection = open_database(directory / DB_NAME)
        self.broker = Broker(Clock())
        if predeclare is not None:
            predeclare(self.broker)
        self.counts = Recovered()
        by_queue, by_id = recover_topology(self.db, self.broker, self.counts)
        recover_messages(self.db, by_id, self.counts)
        self.log = RecordLog()
        next_qid = max([0, *by_queue.values()]) + 1
        self.observer = StoreObserver(self.log, by_queue, next_qid, skip_prefixes=skip)
        self.writer = StoreWriter(self.log, SqliteSink(self.db), self.observer.committed_upto)
        self.broker.observers.append(self.observer)

    def queue(self, name: str) -> Queue:
        return self.broker.vhost("/").queue(name)

    def close(self) -> None:
        self.writer.drain()
        self.db.close()
