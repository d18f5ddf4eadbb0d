"""Paging: the bodies of a long durable queue live on disk, not in memory.

A durable queue whose resident body bytes pass ``queue_limit`` drops the bodies of persistent
entries that the store has already committed, newest first (the tail is what a consumer needs
last), down to half the limit. Such an entry keeps its place, sequence number and deadlines;
its ``message`` becomes the shared :data:`PAGED` placeholder (no body, no properties). When a
paged entry reaches the head, the next ``batch`` paged entries come back from the
:class:`BodySource` (the store) in one read before delivery. Byte accounting follows what is
resident: ``Queue._ready_bytes`` and ``Broker.queued_bytes`` (the memory alarm's count) drop
by what is paged out, so a backlog on disk does not block publishers.

Never paged: transient messages (they are not on disk), entries whose insert is not committed
yet (the store could not read them back), queues that a store does not keep, and queues with
``x-max-length-bytes`` (that limit counts every body; such a queue is bounded by it anyway). A
paged entry that dies (TTL, drop-head) is loaded first only when it will be dead-lettered;
otherwise it just goes.

The policy is here; the queue only calls :meth:`Pager.page_out` when its resident bytes pass
``Queue._page_at``, :meth:`Pager.page_in` when its head is paged, and :meth:`Pager.load_entry`
before dead-lettering one entry.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final, Protocol

from gateway.core.message import Message

if TYPE_CHECKING:
    from gateway.core.broker import Broker
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue

# What a paged entry holds instead of its message. Persistent, so that removing the entry
# still deletes its stored row; an empty body, so that byte counts stay resident-only.
PAGED: Final = Message("", "", b"", persistent=True)

# "Never": a queue whose ``_page_at`` is this is not checked.
NO_LIMIT: Final = sys.maxsize
DEFAULT_BATCH: Final = 1000


class BodySource(Protocol):
    """Where paged bodies come back from (the store)."""

    def pageable(self, queue: Queue) -> bool:
        """Whether the source holds ``queue``'s persistent messages."""

    def load(self, queue: Queue, entries: list[QueueEntry]) -> None:
        """Set ``entry.message`` of each entry (all :data:`PAGED`, in queue order) back to the
        stored message; an entry the source cannot find stays :data:`PAGED`."""


class Pager:
    """The broker's paging policy (one per broker; disabled until a source is set)."""

    __slots__ = ("_broker", "_committed", "batch", "lost", "paged_in", "paged_out", "queue_limit",
                 "source")  # fmt: skip

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.source: BodySource | None = None
        self.queue_limit = NO_LIMIT
        self.batch = DEFAULT_BATCH
        # Per queue: every insert with a seq up to this one is committed.
        self._committed: dict[Queue, int] = {}
        # Counters (metrics, tests): entries paged out, loaded back, and lost (no stored row).
        self.paged_out = self.paged_in = self.lost = 0

    def enable(self, source: BodySource, queue_limit: int, batch: int = DEFAULT_BATCH) -> None:
        """Page durable queues (those existing now and later) through ``source``."""
        if queue_limit < 1 or batch < 1:
            raise ValueError("paging needs a positive queue limit and batch")
        self.source = source
        self.queue_limit = queue_limit
        self.batch = batch
        for vhost in self._broker.vhosts():
            for queue in vhost.queues():
                queue._page_at = self.limit_for(queue)

    def disable(self) -> None:
        """Stop paging out (what is paged stays on disk; without a source it is lost)."""
        self.source = None
        self.queue_limit = NO_LIMIT
        for vhost in self._broker.vhosts():
            for queue in vhost.queues():
                queue._page_at = NO_LIMIT

    def limit_for(self, queue: Queue) -> int:
        """The resident byte count past which ``queue`` pages out."""
        if self.source is None or not queue.durable or queue.max_length_bytes is not None:
            return NO_LIMIT
        return self.queue_limit

    # -- paging out ----------------------------------------------------------------------------

    def page_out(self, queue: Queue) -> None:
        """``queue`` holds more than its limit: page out committed persistent entries from the
        tail down to half the limit, or wait for the commit that makes more of them pageable."""
        source = self.source
        if source is None or queue.deleted or not source.pageable(queue):
            queue._page_at = NO_LIMIT
            return
        limit = self.queue_limit
        barrier = self._broker.commit_barrier
        newest = queue._seq
        if barrier is None or barrier.committed >= barrier.written:
            # No writer yet (recovery: everything is on disk) or nothing pending.
            committed = newest
        else:
            committed = self._committed.get(queue, 0)
        target = queue._ready_bytes - limit // 2
        freed = 0
        count = 0
        for entry in reversed(queue._ready):
            message = entry.message
            if message is PAGED:
                break  # what lies beyond is paged already (or the head about to be consumed)
            if entry.seq > committed or not message.persistent:
                continue
            entry.message = PAGED
            freed += len(message.body)
            count += 1
            if freed >= target:
                break
        queue._ready_bytes -= freed
        self._broker.queued_bytes -= freed
        self.paged_out += count
        if queue._ready_bytes <= limit // 2:
            queue._page_at = limit
        elif barrier is not None and committed < newest:
            # The rest is not on disk yet: look again once it is, not at every enqueue.
            queue._page_at = NO_LIMIT
            written = barrier.written
            barrier.after_commit(written, lambda: self._committed_to(queue, newest))
        else:
            # Resident but not pageable (transient, or the loaded head): look again only after
            # another half limit arrives, so a transient backlog is not rescanned per message.
            queue._page_at = queue._ready_bytes + limit // 2

    def _committed_to(self, queue: Queue, seq: int) -> None:
        committed = self._committed
        # Drop deleted queues here (rare: once per wait), not on every queue deletion.
        for gone in [q for q in committed if q.deleted]:
            del committed[gone]
        if queue.deleted:
            return
        if seq > committed.get(queue, 0):
            committed[queue] = seq
        queue._page_at = self.limit_for(queue)
        if queue._ready_bytes > queue._page_at:
            self.page_out(queue)

    # -- paging in -----------------------------------------------------------------------------

    def page_in(self, queue: Queue) -> None:
        """The head of ``queue`` is paged: load it and the next paged entries (one batch).
        Entries the source cannot give back are dropped (counted in ``lost``)."""
        ready = queue._ready
        batch: list[QueueEntry] = []
        wanted = self.batch
        # Resident entries in between (requeued ones) are skipped, within a bounded look.
        for looked, entry in enumerate(ready):
            if entry.message is PAGED:
                batch.append(entry)
                if len(batch) >= wanted:
                    break
            elif looked >= 2 * wanted:
                break
        source = self.source
        if source is not None and batch:
            source.load(queue, batch)
        size = 0
        missing: list[QueueEntry] = []
        for entry in batch:
            if entry.message is PAGED:
                missing.append(entry)
            else:
                size += len(entry.message.body)
        queue._ready_bytes += size
        self._broker.queued_bytes += size
        self.paged_in += len(batch) - len(missing)
        if missing:
            self.lost += len(missing)
            for entry in missing:
                ready.remove(entry)
                queue._forget(entry)
        if queue._page_at != NO_LIMIT:
            queue._page_at = max(self.limit_for(queue), queue._ready_bytes + 1)

    def load_entry(self, queue: Queue, entry: QueueEntry) -> None:
        """``entry`` (out of the ready list) is about to be dead-lettered: load its message.
        Without a dead-letter exchange nothing needs it, and nothing is read."""
        if entry.message is not PAGED or queue.dead_letter_exchange is None:
            return
        source = self.source
        if source is not None:
            source.load(queue, [entry])
        if entry.message is PAGED:
            self.lost += 1
            return
        self.paged_in += 1
        self._broker.queued_bytes += len(entry.message.body)
