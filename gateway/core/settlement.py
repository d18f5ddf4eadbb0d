"""Settling a queue's deliveries: ack, reject, requeue at the original place, purge.

The functions take the queue first and are installed as ``Queue`` methods (``queue.ack(d)``);
they live here so that queues.py keeps enqueue and subscriptions. ``ack_many`` settles a
batch (basic.ack with multiple=true) in one loop and lets each queue it touched dispatch once at
the end, so a consumer at its prefetch limit is refilled with one batch.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

from gateway.core.consumers import WAKE_GROUP, WAKE_QUEUE, CreditGroup, Delivery

if TYPE_CHECKING:
    from gateway.core.consumers import Subscription
    from gateway.core.message import QueueEntry
    from gateway.core.observers import BrokerObserver
    from gateway.core.queues import Queue

_seq_of = attrgetter("seq")


def ack(queue: Queue, delivery: Delivery) -> bool:
    """The client is done with it. False when already settled (e.g. the queue was deleted)."""
    if delivery.settled:
        return False
    delivery.settled = True
    entry = delivery.entry
    seq = entry.seq
    queue._unacked.pop(seq, None)
    message = entry.message
    broker = queue._broker
    broker.queued_bytes -= len(message.body)
    if queue.durable and message.persistent:
        for observer in broker.observers:
            observer.on_removed(queue, entry)
    # Subscription._release and release(), inlined: this runs once per message.
    sub = delivery.subscription
    if sub is None:
        return True
    unacked = sub._unacked
    if unacked.pop(seq, None) is None:
        return True
    prefetch = sub.prefetch
    group = sub.credit_group
    if group is not None:
        limit = group.limit
        if limit and group.unacked == limit:
            group.unacked -= 1
            group.wake()
            if not sub.active:
                queue.dispatch()
            return True
        group.unacked -= 1
    if prefetch and len(unacked) + 1 == prefetch:
        queue.dispatch()
    return True


def ack_each(deliveries: Iterable[Delivery]) -> None:
    """:func:`ack` for each delivery in order, in one loop (an MQTT read of PUBACKs): the same
    bookkeeping, and a dispatch or credit group wake-up exactly where :func:`ack` would make
    one, which for a subscription without prefetch or group limit is never. The queue's and
    the subscription's fields are looked up once per run of deliveries sharing them."""
    queue: Queue | None = None
    sub: Subscription | None = None
    queue_unacked: dict[int, Delivery] = {}
    sub_unacked: dict[int, Delivery] = {}
    observers: list[BrokerObserver] | None = None
    group: CreditGroup | None = None
    prefetch = 0
    for delivery in deliveries:
        if delivery.settled:
            continue
        delivery.settled = True
        if delivery.queue is not queue:
            queue = delivery.queue
            queue_unacked = queue._unacked
            broker = queue._broker
            observers = broker.observers if queue.durable else None
        entry = delivery.entry
        seq = entry.seq
        queue_unacked.pop(seq, None)
        message = entry.message
        broker.queued_bytes -= len(message.body)
        if observers is not None and message.persistent:
            for observer in observers:
                observer.on_removed(queue, entry)
        if delivery.subscription is not sub:
            sub = delivery.subscription
            if sub is None:
                continue
            sub_unacked = sub._unacked
            group = sub.credit_group
            prefetch = sub.prefetch
        elif sub is None:
            continue
        if sub_unacked.pop(seq, None) is None:
            continue
        if group is not None:
            limit = group.limit
            if limit and group.unacked == limit:
                group.unacked -= 1
                group.wake()
                if not sub.active:
                    queue.dispatch()
                continue
            group.unacked -= 1
        if prefetch and len(sub_unacked) + 1 == prefetch:
            queue.dispatch()


def ack_many(deliveries: Iterable[Delivery]) -> None:
    """Ack each delivery (basic.ack with multiple=true), then let every queue of the batch
    dispatch once, and wake the credit groups that were full.

    :func:`ack` inlined for a batch: no dispatch request per freed credit, the queue's
    bookkeeping looked up once per run of deliveries from the same queue. Dispatching a queue
    whose consumers have no credit is a cheap no-op, so each touched queue gets one.
    """
    queues: dict[Queue, None] = {}
    groups: dict[CreditGroup, None] = {}
    last: Queue | None = None
    queue_unacked: dict[int, Delivery] = {}
    durable = False
    freed = 0
    for delivery in deliveries:
        if delivery.settled:
            continue
        delivery.settled = True
        queue = delivery.queue
        if queue is not last:
            if last is not None:
                last._broker.queued_bytes -= freed
                freed = 0
            last = queue
            queue_unacked = queue._unacked
            durable = queue.durable
            queues[queue] = None
        entry = delivery.entry
        seq = entry.seq
        queue_unacked.pop(seq, None)
        message = entry.message
        freed += len(message.body)
        if durable and message.persistent:
            for observer in queue._broker.observers:
                observer.on_removed(queue, entry)
        sub = delivery.subscription
        if sub is not None and sub._unacked.pop(seq, None) is not None:
            group = sub.credit_group
            if group is not None:
                limit = group.limit
                if limit and group.unacked == limit:
                    groups[group] = None
                group.unacked -= 1
    if last is not None:
        last._broker.queued_bytes -= freed
    # A queue already dispatching (an ack from inside a consumer's deliver) only notes the
    # request; its running loop picks it up.
    for queue in queues:
        queue.dispatch()
    for group in groups:
        group.wake()


def reject(queue: Queue, delivery: Delivery, requeue: bool) -> bool:
    """basic.reject / single nack: back to its original place, or dead-lettered."""
    if delivery.settled:
        return False
    if requeue:
        requeue_deliveries(queue, (delivery,))
        return True
    delivery.settled = True
    entry = delivery.entry
    queue._unacked.pop(entry.seq, None)
    forget(queue, entry)
    queue._vh._dead_letter(queue, entry.message, "rejected")
    release(queue, delivery)
    return True


def requeue_deliveries(queue: Queue, deliveries: Iterable[Delivery]) -> None:
    """Return unsettled deliveries to the queue at their original positions, redelivered."""
    entries: list[QueueEntry] = []
    groups: dict[CreditGroup, None] = {}
    for delivery in deliveries:
        if delivery.settled or delivery.queue is not queue:
            continue
        delivery.settled = True
        entry = delivery.entry
        queue._unacked.pop(entry.seq, None)
        sub = delivery.subscription
        if sub is not None and sub._release(delivery) == WAKE_GROUP:
            assert sub.credit_group is not None
            groups[sub.credit_group] = None
        entry.redelivered = True
        entries.append(entry)
    if not entries:
        return
    if len(entries) == 1:
        queue._insert(entries[0])
    else:
        entries.sort(key=_seq_of)
        ready = queue._ready
        queue._ready_bytes += sum(len(e.message.body) for e in entries)
        if not ready or entries[-1].seq < ready[0].seq:
            ready.extendleft(reversed(entries))
        else:
            # Rebuild in place: a dispatch loop up the stack may hold this deque.
            merged = list(heapq.merge(ready, entries, key=_seq_of))
            ready.clear()
            ready.extend(merged)
    if queue._limited:
        queue._trim()
    for group in groups:
        group.wake()
    queue.dispatch()
    queue._arm_timer()


def release(queue: Queue, delivery: Delivery) -> None:
    """Return the delivery's credit to its subscription, waking whoever waited for it."""
    sub = delivery.subscription
    if sub is None:
        return
    wake = sub._release(delivery)
    if wake == WAKE_GROUP:
        assert sub.credit_group is not None
        sub.credit_group.wake()
        if not sub.active:
            queue.dispatch()
    elif wake == WAKE_QUEUE:
        queue.dispatch()


def forget(queue: Queue, entry: QueueEntry) -> None:
    """The entry left this queue for good (acked, dropped, expired, purged)."""
    message = entry.message
    queue._broker.queued_bytes -= len(message.body)
    if queue.durable and message.persistent:
        for observer in queue._broker.observers:
            observer.on_removed(queue, entry)


def purge(queue: Queue) -> int:
    """Drop every ready message (unacked ones stay); returns how many were dropped."""
    ready = queue._ready
    count = len(ready)
    if count:
        entries = list(ready)
        ready.clear()
        queue._ready_bytes = 0
        for entry in entries:
            forget(queue, entry)
    if queue._over:
        queue._broker.flow.drained(queue)
    return count
