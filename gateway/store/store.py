"""The embedded store as the composition root uses it: open, recover, attach, close.

store = Store.open(data_dir)            # refuses a corrupt or newer file (StoreError)
store.recover(broker)                   # before listeners bind
store.attach(broker, loop)              # from now on durable changes are written
...
store.close()                           # commits everything pending (clean shutdown)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.core.broker import Broker
from gateway.core.paging import DEFAULT_BATCH
from gateway.core.queues import Queue
from gateway.mqtt.codec_errors import MqttError
from gateway.mqtt.packets import Publish
from gateway.store.mqtt_retained import RetainedRecorder, load_retained
from gateway.store.mqtt_sessions import SessionRecorder, StoredSession, load_sessions
from gateway.store.mqtt_wills import WillRecorder, load_wills
from gateway.store.observer import StoreObserver
from gateway.store.pages import StoreBodySource
from gateway.store.recovery import Recovered, recover_messages, recover_topology
from gateway.store.schema import DB_NAME, StoreError, open_database
from gateway.store.writer import RecordLog, SqliteSink, StoreWriter

log = structlog.get_logger("gateway.store")


LOCK_NAME = "gateway.lock"


def _lock(directory: Path) -> int:
    """An exclusive lock on the data directory for this process's lifetime: two gateways on
    one store would each recover the same messages and overwrite each other's rows. The
    kernel drops it when the process dies, so a crash leaves nothing to clean up."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the lock file: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"{directory}: the data directory is in use by another gateway process"
        ) from None
    return fd


class Store:
    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int | None = None) -> None:
        self.path = path
        self.db = db
        self._lock_fd = lock_fd
        self.log = RecordLog()
        self.observer: StoreObserver | None = None
        self.writer: StoreWriter | None = None
        self._queue_ids: dict[Queue, int] = {}
        self._broker: Broker | None = None
        self._pages: StoreBodySource | None = None
        self._paging_broker: Broker | None = None

    @classmethod
    def open(cls, data_dir: str | Path) -> Store:
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot create the data directory: {exc}") from None
        lock_fd = _lock(directory)
        path = directory / DB_NAME
        try:
            db = open_database(path)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, db, lock_fd)

    def recover(self, broker: Broker) -> Recovered:
        """Load topology and messages into ``broker`` (call before ``attach``)."""
        counts = Recovered()
        # Millions of new objects and no garbage: the cyclic collector would only rescan the
        # growing heap (more than half the recovery time). Afterwards the recovered objects
        # move to the permanent generation, out of every later full collection.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            by_queue, by_id = recover_topology(self.db, broker, counts)
            # Set first: paging (when enabled) pages recovered bodies out as they arrive.
            self._queue_ids = by_queue
            recover_messages(self.db, by_id, counts)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: unreadable during recovery: {exc}") from None
        finally:
            if gc_was_enabled:
                gc.enable()
        if counts.messages:
            gc.freeze()
        return counts

    def enable_paging(
        self, broker: Broker, queue_memory_limit: int, batch: int = DEFAULT_BATCH
    ) -> None:
        """Page bodies of durable queues past ``queue_memory_limit`` resident bytes out to
        this store (see ``core/paging.py``); call before :meth:`recover`, so that a recovered
        backlog is paged too."""
        if self._pages is None:
            self._pages = StoreBodySource(self.path, lambda: self._queue_ids)
        broker.pager.enable(self._pages, queue_memory_limit, batch)
        self._paging_broker = broker

    def load_retained(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> list[tuple[Publish, float | None]]:
        """Live retained MQTT messages as (PUBLISH, expiry on ``clock``); call before
        setting :meth:`retained_listener` on the retained store."""
        try:
            return load_retained(self.db, clock, wall_clock)
        except (sqlite3.DatabaseError, MqttError) as exc:
            raise StoreError(f"{self.path}: unreadable retained message: {exc}") from None

    def retained_listener(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> RetainedRecorder:
        """What the MQTT retained store calls on every change, to persist it."""
        return RetainedRecorder(self.log, clock, wall_clock)

    def load_sessions(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> tuple[list[StoredSession], list[str]]:
        """Persistent MQTT sessions still alive (expiry on ``clock``), and the client ids of
        those that ended while the gateway was down (their queues can go)."""
        try:
            return load_sessions(self.db, clock, wall_clock)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: unreadable MQTT session: {exc}") from None

    def session_recorder(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> SessionRecorder:
        """What the MQTT hub tells about persistent session changes (and the packet ids of
        stored messages it sends to them), to persist them; call after :meth:`recover`."""
        return SessionRecorder(self.log, clock, wall_clock, self._queue_ids)

    def load_wills(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> list[tuple[str, Publish, float]]:
        """Delayed wills still pending: (client id, PUBLISH, due on ``clock``)."""
        try:
            return load_wills(self.db, clock, wall_clock)
        except (sqlite3.DatabaseError, MqttError) as exc:
            raise StoreError(f"{self.path}: unreadable will: {exc}") from None

    def will_recorder(
        self, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time
    ) -> WillRecorder:
        """What the MQTT hub tells about delayed wills, to persist them."""
        return WillRecorder(self.log, clock, wall_clock)

    def attach(
        self,
        broker: Broker,
        loop: asyncio.AbstractEventLoop,
        *,
        skip_queue_prefixes: tuple[str, ...] = (),
        on_error: Callable[[BaseException], None] | None = None,
    ) -> StoreObserver:
        """Follow ``broker`` from now on; the writer thread starts here."""
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM queues").fetchone()
        next_qid = max([int(row[0]), *self._queue_ids.values()]) + 1
        observer = StoreObserver(
            self.log, self._queue_ids, next_qid, skip_prefixes=skip_queue_prefixes
        )

        def report(upto: int) -> None:
            # The loop may be gone at interpreter exit; nothing waits for the report then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(observer.committed_upto, upto)

        def failed(exc: BaseException) -> None:
            log.error("store.write_failed", path=str(self.path), error=str(exc))
            if on_error is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(on_error, exc)

        self.writer = StoreWriter(self.log, SqliteSink(self.db), report, on_error=failed)
        self.writer.start()
        broker.observers.append(observer)
        broker.commit_barrier = observer
        self.observer = observer
        self._broker = broker
        return observer

    def close(self) -> None:
        """Commit what is pending, stop the writer, close the file (idempotent)."""
        if self._paging_broker is not None:
            self._paging_broker.pager.disable()
            self._paging_broker = None
        broker = self._broker
        if broker is not None:
            if self.observer in broker.observers:
                broker.observers.remove(self.observer)
            broker.commit_barrier = None
            self._broker = None
        failed = False
        if self.writer is not None:
            self.writer.stop()
            failed = self.writer.failed is not None
            self.writer = None
        if self.observer is not None and not failed:
            # All is committed: whatever still waits (connections are gone by now) may go.
            self.observer.committed_upto(self.log.written)
        if self._pages is not None:
            self._pages.close()
            self._pages = None
        self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
