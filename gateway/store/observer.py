"""The core's durable events as store records, and the commit barrier adapters wait on.

Runs on the event loop, synchronously inside the core's calls: every method appends one record
(a tuple) to the writer's log and returns. A message row is keyed ``queue_id << 40 | seq`` (see
``schema``), so an ack is a delete by key and a queue's deletion one range delete.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.amqp.codec import encode_table
from gateway.store.schema import SEQ_BITS
from gateway.store.writer import DELETE, INSERT, SQL, RecordLog

if TYPE_CHECKING:
    from gateway.core.exchanges import Binding, Exchange
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue


class StoreObserver:
    """A ``BrokerObserver`` and a ``CommitBarrier``.

    ``written`` grows by one per record; an adapter that sees it change across a publish knows
    the publish reached a durable queue and waits with ``after_commit`` before confirming.
    Queues whose names start with one of ``skip_prefixes`` are not stored (their owner keeps
    their state some other way).
    """

    def __init__(
        self,
        log: RecordLog,
        queue_ids: dict[Queue, int],
        next_queue_id: int,
        *,
        skip_prefixes: tuple[str, ...] = (),
    ) -> None:
        self._log = log
        self._append = log.append
        self._qids = queue_ids
        self._next_qid = next_queue_id
        self._skip = skip_prefixes
        self.committed = 0
        self._waiters: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()

    # -- commit barrier ----------------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._log.written

    def after_commit(self, written: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once record number ``written`` is committed."""
        if written <= self.committed:
            callback()
            return
        heapq.heappush(self._waiters, (written, next(self._order), callback))

    def committed_upto(self, upto: int) -> None:
        """The writer committed records up to ``upto`` (called on the loop, once per batch)."""
        if upto > self.committed:
            self.committed = upto
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.committed:
            heapq.heappop(waiters)[2]()

    # -- topology ----------------------------------------------------------------------------

    def on_exchange_declared(self, exchange: Exchange) -> None:
        self._append(
            (
                SQL,
                "INSERT OR REPLACE INTO exchanges"
                " (vhost, name, type, auto_delete, internal, arguments) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    exchange.vhost,
                    exchange.name,
                    exchange.type_name,
                    exchange.auto_delete,
                    exchange.internal,
                    encode_table(exchange.arguments),
                ),
            )
        )

    def on_exchange_deleted(self, exchange: Exchange) -> None:
        self._append(
            (
                SQL,
                "DELETE FROM exchanges WHERE vhost = ? AND name = ?",
                (exchange.vhost, exchange.name),
            )
        )

    def on_queue_declared(self, queue: Queue) -> None:
        if self._skip and queue.name.startswith(self._skip):
            return
        qid = self._next_qid
        self._next_qid = qid + 1
        self._qids[queue] = qid
        self._append(
            (
                SQL,
                "INSERT OR REPLACE INTO queues (id, vhost, name, auto_delete, arguments)"
                " VALUES (?, ?, ?, ?, ?)",
                (qid, queue.vhost, queue.name, queue.auto_delete, encode_table(queue.arguments)),
            )
        )

    def on_queue_deleted(self, queue: Queue) -> None:
        qid = self._qids.pop(queue, None)
        if qid is None:
            return
        self._append((SQL, "DELETE FROM queues WHERE id = ?", (qid,)))
        span = (qid << SEQ_BITS, (qid + 1) << SEQ_BITS)
        self._append((SQL, "DELETE FROM messages WHERE id >= ? AND id < ?", span))
        self._append((SQL, "DELETE FROM mqtt_inflight WHERE message_id >= ? AND message_id < ?",
                      span))  # fmt: skip

    def _binding_row(self, binding: Binding) -> tuple[object, ...]:
        return (
            binding.vhost,
            binding.source,
            binding.destination,
            binding.destination_is_queue,
            binding.routing_key,
            encode_table(binding.arguments),
        )

    def _stored_destination(self, binding: Binding) -> bool:
        skip = self._skip
        return not (skip and binding.destination_is_queue and binding.destination.startswith(skip))

    def on_binding_added(self, binding: Binding) -> None:
        if self._stored_destination(binding):
            self._append(
                (
                    SQL,
                    "INSERT OR IGNORE INTO bindings (vhost, source, destination,"
                    " destination_is_queue, routing_key, arguments) VALUES (?, ?, ?, ?, ?, ?)",
                    self._binding_row(binding),
                )
            )

    def on_binding_removed(self, binding: Binding) -> None:
        if self._stored_destination(binding):
            self._append(
                (
                    SQL,
                    "DELETE FROM bindings WHERE vhost = ? AND source = ? AND destination = ?"
                    " AND destination_is_queue = ? AND routing_key = ? AND arguments = ?",
                    self._binding_row(binding),
                )
            )

    # -- messages ----------------------------------------------------------------------------

    def on_enqueued(self, queue: Queue, entry: QueueEntry) -> None:
        qid = self._qids.get(queue)
        if qid is not None:
            self._append((INSERT, (qid << SEQ_BITS) | entry.seq, entry.message))

    def on_removed(self, queue: Queue, entry: QueueEntry) -> None:
        qid = self._qids.get(queue)
        if qid is not None:
            self._append((DELETE, (qid << SEQ_BITS) | entry.seq, None))
