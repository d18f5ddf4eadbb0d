"""The store's side of paging (``core/paging.py``): bodies read back from the store file.

A second connection to the same file, used on the event loop and only to read (WAL lets it
read committed rows while the writer thread commits). The core pages out only entries whose
insert is committed, so every paged entry has its row until the core removes the entry. A
batch is one range scan of the primary key: a queue's rows are contiguous and in queue order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.core.paging import PAGED
from gateway.store.recovery import MessageBuilder
from gateway.store.schema import SEQ_BITS, SEQ_MASK

if TYPE_CHECKING:
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue

log = structlog.get_logger("gateway.store")

_RANGE_SQL = (
    "SELECT id, exchange, routing_key, properties, body FROM messages WHERE id BETWEEN ? AND ?"
)


class StoreBodySource:
    """A ``BodySource``: ``queue_ids`` gives the store's current queue ids (queue -> id)."""

    def __init__(self, path: Path, queue_ids: Callable[[], dict[Queue, int]]) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA query_only=1")
        self._queue_ids = queue_ids
        self._build = MessageBuilder().message
        self.reads = 0

    def pageable(self, queue: Queue) -> bool:
        return queue in self._queue_ids()

    def load(self, queue: Queue, entries: list[QueueEntry]) -> None:
        qid = self._queue_ids().get(queue)
        if qid is None or not entries:
            return
        by_seq = {entry.seq: entry for entry in entries}
        base = qid << SEQ_BITS
        first = base | min(by_seq)
        last = base | max(by_seq)
        build = self._build
        try:
            rows = self._db.execute(_RANGE_SQL, (first, last)).fetchall()
        except sqlite3.Error as exc:
            # The entries stay paged and are dropped by the core; say why, once per batch.
            log.error("store.page_in_failed", queue=queue.name, error=str(exc))
            return
        self.reads += 1
        for rowid, exchange, routing_key, raw, body in rows:
            entry = by_seq.get(rowid & SEQ_MASK)
            if entry is not None and entry.message is PAGED:
                entry.message = build(exchange, routing_key, raw, body)
        missing = sum(1 for entry in entries if entry.message is PAGED)
        if missing:
            log.error("store.page_in_missing", queue=queue.name, missing=missing)

    def close(self) -> None:
        self._db.close()
