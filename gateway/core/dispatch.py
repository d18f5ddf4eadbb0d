"""Dispatch: handing a queue's ready messages to its subscriptions.

The functions take the queue first and are installed as ``Queue`` methods (``queue.dispatch()``);
they live here so that queues.py keeps enqueue, subscriptions and deletion.

Two ways out of the ready backlog:

- per delivery: round-robin over the subscriptions that can take a message, asking each
  consumer ``can_accept`` before every message;
- in batches, for the lone subscription of a consumer that has ``deliver_many`` (an AMQP
  channel, an MQTT session): its credit is computed once, up to that many entries become
  deliveries, and the consumer gets them in one call. This is the refill after a
  ``basic.ack(multiple)`` or a read of MQTT PUBACKs, where a consumer at its limit takes up to
  the whole freed credit at once (an MQTT session's in-flight window bounds the batch through
  its ``batch_credit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from gateway.core.consumers import Delivery
from gateway.core.paging import PAGED

if TYPE_CHECKING:
    from gateway.core.consumers import Subscription
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue

# The most deliveries handed to ``deliver_many`` in one call (bounds one encoded write).
BATCH_MAX: Final = 1024

_new_delivery = object.__new__


def can_take(sub: Subscription) -> bool:
    """``Subscription.can_take``, as a plain function: the dispatch loop calls it per message."""
    if not sub.active:
        return False
    if not sub.no_ack:
        prefetch = sub.prefetch
        if prefetch and len(sub._unacked) >= prefetch:
            return False
        group = sub.credit_group
        if group is not None and group.limit and group.unacked >= group.limit:
            return False
    return sub.consumer.can_accept()


def credit_of(sub: Subscription) -> int:
    """How many messages ``sub`` can take now (at most :data:`BATCH_MAX`); 0 when none.

    A consumer with a window of its own (an MQTT session's in-flight window) bounds it
    further with ``batch_credit()`` (``BatchConsumer``), asked once per batch."""
    if not sub.active:
        return 0
    credit = BATCH_MAX
    if not sub.no_ack:
        prefetch = sub.prefetch
        if prefetch:
            credit = min(credit, prefetch - len(sub._unacked))
        group = sub.credit_group
        if group is not None and group.limit:
            credit = min(credit, group.limit - group.unacked)
        if credit <= 0:
            return 0
    if not sub.consumer.can_accept():
        return 0
    own = sub.batch_credit
    if own is not None:
        return max(0, min(credit, own()))
    return credit


def dispatch(queue: Queue) -> None:
    """Hand ready messages to subscriptions that can take them.

    Every call asks the subscriptions again: it clears ``Queue._blocked``, which the round
    sets again when it stops for want of a subscription with room."""
    queue._blocked = False
    if queue._dispatching:
        queue._dispatch_again = True
        return
    if not queue._ready or not queue._subs:
        return
    queue._dispatching = True
    try:
        again = True
        while again:
            queue._dispatch_again = False
            dispatch_ready(queue)
            again = queue._dispatch_again
    finally:
        queue._dispatching = False
    ready = queue._ready
    if ready and ready[0].expires_at is not None:
        queue._arm_timer()
    if queue._over:
        queue._broker.flow.drained(queue)


def dispatch_ready(queue: Queue) -> None:
    """One round of :func:`dispatch`: until the backlog is empty or nobody can take more
    (then the queue is marked blocked: publishes skip the dispatch until the next call)."""
    ready = queue._ready
    now: float | None = None
    unacked = queue._unacked
    while ready:
        subs = queue._subs  # re-read: a deliver() may cancel or delete
        if len(subs) == 1:
            sub = subs[0]
            many = sub.deliver_many
            if many is not None:
                credit = credit_of(sub)
                if not credit:
                    queue._blocked = True
                    return
                if not queue.single_active_consumer:
                    queue._rr = 1
                batch = take_batch(queue, sub, credit)
                if batch:
                    many(batch)
                continue
            if not can_take(sub):
                queue._blocked = True
                return
            if not queue.single_active_consumer:
                queue._rr = 1
        elif subs:
            picked = pick(queue)
            if picked is None:
                queue._blocked = True
                return
            sub = picked
        else:
            return
        if ready[0].message is PAGED:
            queue._broker.pager.page_in(queue)
            continue
        entry = ready.popleft()
        queue._ready_bytes -= len(entry.message.body)
        expires_at = entry.expires_at
        if expires_at is not None:
            if now is None:
                now = queue._clock()
            if expires_at <= now:
                queue._expire(entry)
                continue
        # deliver(queue, sub, entry), inlined: this runs per message.
        entry.delivery_count += 1
        delivery = _new_delivery(Delivery)
        delivery.queue = queue
        delivery.entry = entry
        delivery.subscription = sub
        if sub.no_ack:
            delivery.settled = True
            settle_no_ack(queue, entry)
        else:
            delivery.settled = False
            seq = entry.seq
            unacked[seq] = delivery
            sub._unacked[seq] = delivery
            group = sub.credit_group
            if group is not None:
                group.unacked += 1
        sub.consumer.deliver(delivery)


def take_batch(queue: Queue, sub: Subscription, credit: int) -> list[Delivery]:
    """Up to ``credit`` ready messages as deliveries to ``sub``, with the bookkeeping of
    :func:`deliver` done for each; the caller hands them to the consumer."""
    ready = queue._ready
    popleft = ready.popleft
    taken: list[Delivery] = []
    append = taken.append
    now: float | None = None
    no_ack = sub.no_ack
    unacked = queue._unacked
    sub_unacked = sub._unacked
    group = sub.credit_group
    broker = queue._broker
    durable = queue.durable
    while credit and ready:
        entry = popleft()
        message = entry.message
        if message is PAGED:
            ready.appendleft(entry)
            broker.pager.page_in(queue)
            continue
        size = len(message.body)
        queue._ready_bytes -= size
        expires_at = entry.expires_at
        if expires_at is not None:
            if now is None:
                now = queue._clock()
            if expires_at <= now:
                queue._expire(entry)
                continue
        entry.delivery_count += 1
        # Delivery(queue, entry, sub) without the constructor call: this runs per message.
        delivery = _new_delivery(Delivery)
        delivery.queue = queue
        delivery.entry = entry
        delivery.subscription = sub
        delivery.settled = no_ack
        if no_ack:
            broker.queued_bytes -= size
            if durable and message.persistent:
                for observer in broker.observers:
                    observer.on_removed(queue, entry)
        else:
            seq = entry.seq
            unacked[seq] = delivery
            sub_unacked[seq] = delivery
            if group is not None:
                group.unacked += 1
        append(delivery)
        credit -= 1
    return taken


def pick(queue: Queue) -> Subscription | None:
    subs = queue._subs
    if queue.single_active_consumer:
        first = subs[0]
        return first if can_take(first) else None
    n = len(subs)
    start = queue._rr if queue._rr < n else 0
    for i in range(n):
        idx = start + i
        if idx >= n:
            idx -= n
        sub = subs[idx]
        if can_take(sub):
            queue._rr = idx + 1
            return sub
    return None


def settle_no_ack(queue: Queue, entry: QueueEntry) -> None:
    """A no-ack delivery leaves the queue as it is handed out (the backlog's path; ``deliver``
    keeps its own copy inline)."""
    message = entry.message
    broker = queue._broker
    broker.queued_bytes -= len(message.body)
    if queue.durable and message.persistent:
        for observer in broker.observers:
            observer.on_removed(queue, entry)


def deliver(queue: Queue, sub: Subscription, entry: QueueEntry) -> None:
    entry.delivery_count += 1
    # Delivery(queue, entry, sub) without the constructor call, as in take_batch.
    delivery = _new_delivery(Delivery)
    delivery.queue = queue
    delivery.entry = entry
    delivery.subscription = sub
    if sub.no_ack:
        delivery.settled = True
        message = entry.message
        broker = queue._broker
        broker.queued_bytes -= len(message.body)
        if queue.durable and message.persistent:
            for observer in broker.observers:
                observer.on_removed(queue, entry)
    else:
        delivery.settled = False
        seq = entry.seq
        queue._unacked[seq] = delivery
        sub._unacked[seq] = delivery  # Subscription._track, inlined
        group = sub.credit_group
        if group is not None:
            group.unacked += 1
    sub.consumer.deliver(delivery)
