"""A queue's clock: message TTL (per queue and per message) and x-expires for unused queues.

One deadline per queue is registered with the broker's timer (``Broker._schedule``): the
earlier of the head message's expiry and the unused-queue deadline. The functions take the
queue first and are installed as ``Queue`` methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.core.paging import PAGED

if TYPE_CHECKING:
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue


def touch(queue: Queue, now: float) -> None:
    """Used now (declare, get, last consumer gone): restarts the x-expires countdown."""
    queue._last_used = now
    if queue._expires_s is not None:
        arm_timer(queue)


def arm_timer(queue: Queue) -> None:
    """Register the queue's next deadline with the broker when it is earlier than the one
    already registered (a later one is found when the earlier fires)."""
    if queue.deleted:
        return
    ready = queue._ready
    deadline = ready[0].expires_at if ready else None
    if queue._expires_s is not None and not queue._subs:
        unused_until = queue._last_used + queue._expires_s
        if deadline is None or unused_until < deadline:
            deadline = unused_until
    if deadline is not None and (queue._timer_at is None or deadline < queue._timer_at):
        queue._timer_at = deadline
        queue._broker._schedule(deadline, queue)


def timer_fired(queue: Queue, deadline: float, now: float) -> None:
    """Expire the ready head that is due; delete the queue when unused past x-expires."""
    if queue._timer_at == deadline:
        queue._timer_at = None
    ready = queue._ready
    while ready:
        expires_at = ready[0].expires_at
        if expires_at is None or expires_at > now:
            break
        entry = ready.popleft()
        queue._ready_bytes -= len(entry.message.body)
        expire(queue, entry)
        if queue.deleted:
            return
    if queue._over:
        queue._broker.flow.drained(queue)
    if (
        queue._expires_s is not None
        and not queue._subs
        and now >= queue._last_used + queue._expires_s
    ):
        queue._vh._delete_queue(queue)
        return
    arm_timer(queue)


def expire(queue: Queue, entry: QueueEntry) -> None:
    """A message past its TTL leaves the queue (dead-lettered when the queue says so)."""
    queue.expired += 1
    if entry.message is PAGED:
        queue._broker.pager.load_entry(queue, entry)
    queue._forget(entry)
    queue._vh._dead_letter(queue, entry.message, "expired")
