"""The writer: one thread owns the write connection and commits records in groups.

The event loop appends records to :class:`RecordLog` (a deque append and a counter; the writer
is woken only when it sleeps). The writer takes up to ``max_batch`` records, applies them in one
transaction and reports "committed up to record N" once per transaction. Records waiting while a
commit runs go into the next one, so a record waits at most one commit before its own begins
(no timer: under load the batches grow to ``max_batch``, when idle a lone record commits at
once).

:class:`SqliteSink` turns a batch into SQL. Within a run of message records an insert whose
delete is in the same batch is never written (a message consumed and acked within about one
commit costs no disk at all). Topology records keep their order relative to message records.

An ``INFLIGHT`` record (a persistent MQTT session's packet id for a stored message) lives and
dies with its message: the ``DELETE`` of the message removes it too, and if both fall in one
batch neither is written. The sink knows which message rows have one, so a delete of any other
message costs nothing more.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from gateway.amqp.codec import encode_properties
from gateway.core.message import Message

# Record kinds (the first element of a record tuple).
INSERT: Final = 0  # (INSERT, row id, message)
DELETE: Final = 1  # (DELETE, row id, None)
SQL: Final = 2  # (SQL, statement, parameters)
INFLIGHT: Final = 3  # (INFLIGHT, message row id, (client id, packet id, qos))

Record = tuple[int, Any, Any]

MAX_BATCH: Final = 1000

_INSERT_SQL: Final = (
    "INSERT OR REPLACE INTO messages (id, exchange, routing_key, properties, body)"
    " VALUES (?, ?, ?, ?, ?)"
)
_DELETE_SQL: Final = "DELETE FROM messages WHERE id = ?"
_INFLIGHT_SQL: Final = (
    "INSERT OR REPLACE INTO mqtt_inflight (message_id, client_id, packet_id, qos)"
    " VALUES (?, ?, ?, ?)"
)
_INFLIGHT_DELETE_SQL: Final = "DELETE FROM mqtt_inflight WHERE message_id = ?"


class RecordLog:
    """Records handed from the loop to the writer, in order.

    ``written`` counts records appended (loop side); ``taken`` counts records the writer has
    taken (writer side). Record number ``n`` is committed once a batch ending at ``n`` is.
    """

    __slots__ = ("records", "taken", "wake", "written")

    def __init__(self) -> None:
        self.records: deque[Record] = deque()
        self.written = 0
        self.taken = 0
        self.wake = threading.Event()

    def append(self, record: Record) -> None:
        self.records.append(record)
        self.written += 1
        if not self.wake.is_set():
            self.wake.set()

    def take(self, max_batch: int = MAX_BATCH) -> tuple[list[Record], int]:
        """Up to ``max_batch`` records and the number of the last one."""
        records = self.records
        n = min(len(records), max_batch)
        popleft = records.popleft
        batch = [popleft() for _ in range(n)]
        self.taken += n
        return batch, self.taken


class Sink(Protocol):
    def write(self, batch: list[Record]) -> None:
        """Apply ``batch`` in one transaction and make it durable before returning."""


def _properties_bytes(message: Message) -> bytes:
    raw = message.raw_properties
    return raw if raw is not None else encode_properties(message.properties)


class SqliteSink:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        # Message rows that have an mqtt_inflight row on disk (a superset: a queue's range
        # delete may remove some behind its back, and deleting nothing is harmless).
        self._inflight = {row[0] for row in db.execute("SELECT message_id FROM mqtt_inflight")}
        self._inserts: dict[int, Message] = {}
        self._deletes: list[int] = []
        self._sent: dict[int, tuple[str, int, int]] = {}
        self._unsent: list[int] = []

    def write(self, batch: list[Record]) -> None:
        db = self.db
        inserts = self._inserts
        sent = self._sent
        inflight = self._inflight
        db.execute("BEGIN")
        try:
            for record in batch:
                kind = record[0]
                if kind == INSERT:
                    inserts[record[1]] = record[2]
                elif kind == DELETE:
                    rowid = record[1]
                    if sent:
                        sent.pop(rowid, None)
                    if rowid in inflight:
                        self._unsent.append(rowid)
                    if inserts.pop(rowid, None) is None:
                        self._deletes.append(rowid)
                elif kind == INFLIGHT:
                    sent[record[1]] = record[2]
                else:
                    self._flush()
                    db.execute(record[1], record[2])
            self._flush()
            db.execute("COMMIT")
        except BaseException:
            self._inserts.clear()
            self._deletes.clear()
            self._sent.clear()
            self._unsent.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _flush(self) -> None:
        db = self.db
        inserts = self._inserts
        if inserts:
            db.executemany(
                _INSERT_SQL,
                [
                    (rowid, m.exchange, m.routing_key, _properties_bytes(m), m.body)
                    for rowid, m in inserts.items()
                ],
            )
            inserts.clear()
        sent = self._sent
        if sent:
            db.executemany(_INFLIGHT_SQL, [(rowid, *fields) for rowid, fields in sent.items()])
            self._inflight.update(sent)
            sent.clear()
        deletes = self._deletes
        if deletes:
            db.executemany(_DELETE_SQL, [(rowid,) for rowid in deletes])
            deletes.clear()
        unsent = self._unsent
        if unsent:
            db.executemany(_INFLIGHT_DELETE_SQL, [(rowid,) for rowid in unsent])
            self._inflight.difference_update(unsent)
            unsent.clear()


class StoreWriter:
    """Drains a :class:`RecordLog` into a :class:`Sink`.

    ``report(upto)`` is called once per committed batch (from the writer thread when started;
    the store wraps it in ``loop.call_soon_threadsafe``). ``on_error`` gets a failed write's
    exception; the writer stops and nothing after it is reported committed.
    """

    def __init__(
        self,
        log: RecordLog,
        sink: Sink,
        report: Callable[[int], None],
        *,
        on_error: Callable[[BaseException], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.log = log
        self.sink = sink
        self.report = report
        self.on_error = on_error
        self.max_batch = max_batch
        self.failed: BaseException | None = None
        self.commits = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Commit one batch; False when there was nothing to write."""
        if self.failed is not None:
            return False
        batch, upto = self.log.take(self.max_batch)
        if not batch:
            return False
        try:
            self.sink.write(batch)
        except BaseException as exc:
            self.failed = exc
            if self.on_error is not None:
                self.on_error(exc)
            return False
        self.commits += 1
        self.report(upto)
        return True

    def drain(self) -> None:
        """Commit everything appended so far (the caller makes sure nothing more arrives)."""
        while self.run_once():
            pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-store", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wake = self.log.wake
        records = self.log.records
        while self.failed is None:
            # Clear before looking: an append after the look sets it again.
            wake.clear()
            if not records:
                if self._stopping:
                    return
                wake.wait()
                continue
            self.run_once()

    def stop(self) -> None:
        """Commit what is pending and end the thread."""
        self._stopping = True
        self.log.wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.drain()
