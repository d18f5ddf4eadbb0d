"""Queues: ready messages, dispatch to subscriptions, length limits.

Ready messages sit in a deque ordered by a queue-local sequence number, so a requeued message
goes back to its original place. Dispatch is synchronous and round-robin over subscriptions
that have credit and whose consumer can accept; it runs when a message arrives, a consumer is
added, credit is freed, or an adapter says its socket drained. A dispatch triggered from inside
a consumer's ``deliver`` (say, it acks at once) is folded into the running loop. A message
that no subscription can take (the lone one is at its prefetch limit, say) joins the backlog
without a dispatch, and so do the ones after it until something may have given a subscription
room again (see ``_blocked``).
Dispatch (core/dispatch.py, with the batches for consumers that take several messages per
call), settlement (ack, reject, requeue, purge: core/settlement.py) and the TTL / x-expires
clock (core/expiry.py) are installed here as methods.
"""

from __future__ import annotations

import bisect
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, ClassVar

from gateway.core import dispatch as dispatching
from gateway.core import expiry, settlement
from gateway.core.arguments import QueueSettings
from gateway.core.consumers import WAKE_GROUP, CreditGroup, Delivery, Subscription
from gateway.core.dispatch import can_take
from gateway.core.message import Message, QueueEntry
from gateway.core.paging import PAGED

if TYPE_CHECKING:
    from gateway.core.exchanges import Binding, SourceKey
    from gateway.core.sinks import DirectConsumer
    from gateway.core.vhost import VirtualHost

_seq_of = attrgetter("seq")
_new_entry = object.__new__


class Queue:
    is_queue: ClassVar[bool] = True

    __slots__ = (
        "_blocked",
        "_broker",
        "_clock",
        "_direct",
        "_dispatch_again",
        "_dispatching",
        "_drop_head",
        "_exclusive_consumer",
        "_expires_s",
        "_hw_bytes",
        "_hw_messages",
        "_keep_bytes",
        "_keep_messages",
        "_last_used",
        "_limited",
        "_over",
        "_page_at",
        "_ready",
        "_ready_bytes",
        "_rr",
        "_seq",
        "_sources",
        "_subs",
        "_timer_at",
        "_ttl_ms",
        "_unacked",
        "_vh",
        "admit",
        "arguments",
        "auto_delete",
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "deleted",
        "dropped",
        "durable",
        "exclusive",
        "expired",
        "max_length",
        "max_length_bytes",
        "name",
        "overflow",
        "owner",
        "refused",
        "single_active_consumer",
        "vhost",
    )

    def __init__(
        self,
        vhost: VirtualHost,
        name: str,
        *,
        durable: bool,
        exclusive: bool,
        owner: object,
        auto_delete: bool,
        arguments: Mapping[str, object],
        settings: QueueSettings,
        now: float,
    ) -> None:
        self.name = name
        self.vhost = vhost.name
        self._vh = vhost
        self._broker = vhost.broker
        self._clock = vhost.broker.clock
        self.durable = durable
        self.exclusive = exclusive
        self.owner = owner if exclusive else None
        self.auto_delete = auto_delete
        self.arguments: dict[str, object] = dict(arguments)
        self._ttl_ms = settings.message_ttl_ms
        self._expires_s = None if settings.expires_ms is None else settings.expires_ms / 1000
        self.max_length = settings.max_length
        self.max_length_bytes = settings.max_length_bytes
        self._limited = self.max_length is not None or self.max_length_bytes is not None
        self.overflow = settings.overflow
        self._drop_head = settings.overflow == "drop-head"
        # drop-head: what the backlog may hold before ``_trim`` has work (compared inline on
        # every enqueue, so a queue under its limit pays no call).
        self._keep_messages = sys.maxsize
        self._keep_bytes = sys.maxsize
        if self._drop_head:
            if self.max_length is not None:
                self._keep_messages = self.max_length
            if self.max_length_bytes is not None:
                self._keep_bytes = self.max_length_bytes
        self.dead_letter_exchange = settings.dead_letter_exchange
        self.dead_letter_routing_key = settings.dead_letter_routing_key
        self.single_active_consumer = settings.single_active_consumer
        # Direct delivery (core/sinks.py): a consumer that takes messages without an entry.
        self._direct: DirectConsumer | None = None
        # Flow control (core/flow.py): over the high watermark with a consumer pushing back.
        self._over = False
        self._hw_messages, self._hw_bytes = vhost.broker.flow.high_water(settings)
        self._ready: deque[QueueEntry] = deque()
        self._ready_bytes = 0
        self._unacked: dict[int, Delivery] = {}
        self._seq = 0
        self._subs: list[Subscription] = []
        self._rr = 0
        self._exclusive_consumer = False
        self._last_used = now
        self._timer_at: float | None = None
        self._dispatching = False
        self._dispatch_again = False
        # The last dispatch stopped because no subscription could take a message (no credit,
        # or the consumer said no). Publishes join the backlog without asking again until
        # ``dispatch()`` runs, which every path that can give a subscription room calls: an
        # ack or reject freeing prefetch or group credit, a requeue, ``Subscription.resume``
        # (the consumer's socket drained or its window opened), a subscription added or gone.
        self._blocked = False
        self._sources: dict[SourceKey, Binding] = {}
        self.deleted = False
        # What left without being consumed (metrics): dropped by drop-head, refused by
        # reject-publish, expired by TTL.
        self.dropped = self.refused = self.expired = 0
        # Optional admission policy of the queue's owner (e.g. an offline MQTT session takes no
        # QoS 0): a message it declines counts as delivered to this queue and dropped.
        self.admit: Callable[[Message], bool] | None = None
        # Resident body bytes past which persistent bodies are paged out (core/paging.py).
        self._page_at = vhost.broker.pager.limit_for(self)

    # -- state -------------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Ready messages (what queue.declare-ok and basic.get-ok report)."""
        return len(self._ready)

    @property
    def consumer_count(self) -> int:
        return len(self._subs)

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    @property
    def ready_bytes(self) -> int:
        return self._ready_bytes

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    def ready_entries(self) -> list[QueueEntry]:
        return list(self._ready)

    # -- enqueue -----------------------------------------------------------------------------

    def offer(self, message: Message) -> bool:
        """Enqueue a message without routing (store recovery, direct sends). False: rejected."""
        return self._offer(message, self._clock())

    def _offer(self, message: Message, now: float) -> bool:
        if self.deleted:
            return False
        ready = self._ready
        if not ready:
            direct = self._direct
            if direct is not None and direct.deliver_direct(self, message):
                return True
        admit = self.admit
        if admit is not None and not admit(message):
            self.dropped += 1
            return True
        size = len(message.body)
        if self._limited and not self._drop_head:
            max_len = self.max_length
            max_bytes = self.max_length_bytes
            if (max_len is not None and len(ready) >= max_len) or (
                max_bytes is not None and self._ready_bytes + size > max_bytes
            ):
                if self.overflow == "reject-publish-dlx":
                    self._vh._dead_letter(self, message, "maxlen")
                self.refused += 1
                return False
        ttl = self._ttl_ms
        per_message = message.expiration_ms
        if per_message is not None and (ttl is None or per_message < ttl):
            ttl = per_message
        seq = self._seq = self._seq + 1
        # QueueEntry(message, seq, now, expires_at) without the constructor call: per message.
        entry: QueueEntry = _new_entry(QueueEntry)
        entry.message = message
        entry.seq = seq
        entry.enqueued_at = now
        entry.expires_at = None if ttl is None else now + ttl / 1000
        entry.redelivered = False
        entry.delivery_count = 0
        broker = self._broker
        broker.queued_bytes += size
        if self.durable and message.persistent:
            for observer in broker.observers:
                observer.on_enqueued(self, entry)
        subs = self._subs
        if subs and not ready and not self._dispatching and not self._blocked:
            # Nothing waiting: hand it straight to a consumer that can take it.
            if len(subs) == 1:
                # One consumer (the common case): no round-robin scan.
                only = subs[0]
                if can_take(only):
                    sub: Subscription | None = only
                    if not self.single_active_consumer:
                        self._rr = 1
                else:
                    sub = None
            else:
                sub = self._pick()
            if sub is None:
                self._blocked = True  # nobody can take it: the dispatch below is skipped
            else:
                self._dispatching = True  # publishes from inside deliver() queue up behind
                try:
                    self._deliver(sub, entry)
                finally:
                    self._dispatching = False
                if ready:
                    self.dispatch()
                return True
        if ttl == 0:
            # RabbitMQ: a zero TTL message goes to a consumer that can take it now, or expires.
            self._expire(entry)
            return True
        ready.append(entry)
        ready_bytes = self._ready_bytes = self._ready_bytes + size
        if ready_bytes > self._page_at:
            broker.pager.page_out(self)
        if self._over:
            broker.flow.hits[self] = None
        elif subs and (len(ready) > self._hw_messages or ready_bytes > self._hw_bytes):
            broker.flow.passed_high(self)
        # Subscriptions that had no room at the last dispatch (a consumer behind on acks, the
        # usual reason for a backlog) take nothing: skip the dispatch that would find that out
        # again.
        if subs and not self._blocked:
            self.dispatch()
        if len(ready) > self._keep_messages or self._ready_bytes > self._keep_bytes:
            self._trim()
        if ttl is not None:
            self._arm_timer()
        return True

    def restore(self, items: Iterable[tuple[int, Message]]) -> None:
        """Store recovery: append messages as ``(seq, message)`` in seq order, marked
        redelivered, without telling observers (the store already has them)."""
        now = self._clock()
        queue_ttl = self._ttl_ms
        ready = self._ready
        size = 0
        seq = self._seq
        for seq, message in items:
            ttl = message.expiration_ms
            if ttl is None or (queue_ttl is not None and queue_ttl < ttl):
                ttl = queue_ttl
            expires_at = None if ttl is None else now + ttl / 1000
            ready.append(QueueEntry(message, seq, now, expires_at, True))
            size += len(message.body)
        self._seq = max(self._seq, seq)
        self._ready_bytes += size
        self._broker.queued_bytes += size
        if self._ready_bytes > self._page_at:
            self._broker.pager.page_out(self)
        self._arm_timer()
        self.dispatch()

    def _trim(self) -> None:
        """drop-head: drop (and dead-letter) the oldest ready messages while over a limit."""
        if not self._drop_head:
            return
        ready = self._ready
        max_len = self.max_length
        max_bytes = self.max_length_bytes
        while ready and (
            (max_len is not None and len(ready) > max_len)
            or (max_bytes is not None and self._ready_bytes > max_bytes)
        ):
            entry = ready.popleft()
            self._ready_bytes -= len(entry.message.body)
            if entry.message is PAGED:
                self._broker.pager.load_entry(self, entry)
            self._forget(entry)
            self.dropped += 1
            self._vh._dead_letter(self, entry.message, "maxlen")

    def _insert(self, entry: QueueEntry) -> None:
        ready = self._ready
        seq = entry.seq
        if not ready or seq < ready[0].seq:
            ready.appendleft(entry)
        elif seq > ready[-1].seq:
            ready.append(entry)
        else:
            ready.insert(bisect.bisect_left(ready, seq, key=_seq_of), entry)
        self._ready_bytes += len(entry.message.body)

    # -- dispatch (core/dispatch.py) ----------------------------------------------------------

    dispatch = dispatching.dispatch
    _dispatch_ready = dispatching.dispatch_ready
    _pick = dispatching.pick
    _deliver = dispatching.deliver

    def get(self, no_ack: bool) -> tuple[Delivery, int] | None:
        """basic.get: the head message and how many remain, or None when empty."""
        now = self._clock()
        self._touch(now)
        ready = self._ready
        while ready:
            if ready[0].message is PAGED:
                self._broker.pager.page_in(self)
                continue
            entry = ready.popleft()
            self._ready_bytes -= len(entry.message.body)
            if entry.expires_at is not None and entry.expires_at <= now:
                self._expire(entry)
                continue
            entry.delivery_count += 1
            delivery = Delivery(self, entry, None)
            if no_ack:
                delivery.settled = True
                self._forget(entry)
            else:
                self._unacked[entry.seq] = delivery
            if ready and ready[0].expires_at is not None:
                self._arm_timer()
            if self._over:
                self._broker.flow.drained(self)
            return delivery, len(ready)
        return None

    # -- settlement (core/settlement.py) ------------------------------------------------------

    ack = settlement.ack
    reject = settlement.reject
    requeue = settlement.requeue_deliveries
    purge = settlement.purge
    _release = settlement.release
    _forget = settlement.forget

    # -- subscriptions -----------------------------------------------------------------------

    def _add_subscription(self, sub: Subscription) -> None:
        self._subs.append(sub)
        if sub.exclusive:
            self._exclusive_consumer = True
        if sub.credit_group is not None:
            sub.credit_group._join(sub)
        self.dispatch()

    def _cancel(self, sub: Subscription, requeue_unacked: bool) -> None:
        if sub.active:
            sub.active = False
            self._subs.remove(sub)
            if sub.exclusive:
                self._exclusive_consumer = False
            if sub.credit_group is not None:
                sub.credit_group._leave(sub)
            self._vh._forget_subscription(sub)
            if not self._subs and self.auto_delete and not self.deleted:
                self._vh._delete_queue(self)
                return
        if requeue_unacked:
            sub.requeue_unacked()
        if self._over:
            self._broker.flow.consumers_changed(self)  # the one that pushed back may be gone
        if self.deleted:
            return
        if self._subs:
            self.dispatch()  # a single active consumer may have handed over
        elif self._expires_s is not None:
            self._touch(self._clock())

    @property
    def has_exclusive_consumer(self) -> bool:
        return self._exclusive_consumer

    # -- timers and expiry (core/expiry.py) ---------------------------------------------------

    _touch = expiry.touch
    _arm_timer = expiry.arm_timer
    _timer_fired = expiry.timer_fired
    _expire = expiry.expire

    # -- deletion ----------------------------------------------------------------------------

    def _destroy(self) -> tuple[int, list[Subscription], list[CreditGroup]]:
        """Drop all state for deletion; returns (ready count, cancelled subs, groups to wake)."""
        self.deleted = True
        if self._over:
            self._broker.flow.drained(self)
        count = len(self._ready)
        subs = self._subs
        self._subs = []
        self._exclusive_consumer = False
        for sub in subs:
            sub.active = False
            if sub.credit_group is not None:
                sub.credit_group._leave(sub)
        freed = self._ready_bytes
        groups: dict[CreditGroup, None] = {}
        for delivery in self._unacked.values():
            delivery.settled = True
            freed += len(delivery.entry.message.body)
            holder = delivery.subscription
            if holder is not None and holder._release(delivery) == WAKE_GROUP:
                assert holder.credit_group is not None
                groups[holder.credit_group] = None
        self._broker.queued_bytes -= freed
        self._ready.clear()
        self._ready_bytes = 0
        self._unacked.clear()
        return count, subs, list(groups)

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} vhost={self.vhost!r} ready={len(self._ready)}>"
