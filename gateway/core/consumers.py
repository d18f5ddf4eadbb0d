"""Consumers, subscriptions, deliveries and credit (prefetch) accounting.

An adapter implements ``Consumer`` and calls ``VirtualHost.consume`` to get a ``Subscription``.
Each message handed to it is a ``Delivery`` that the adapter settles with ``queue.ack`` or
``queue.reject``. A delivery needs credit from its subscription (per-consumer prefetch) and from
its ``CreditGroup`` when it has one (a channel-wide prefetch); no-ack subscriptions need none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.core.message import Message, QueueEntry
    from gateway.core.queues import Queue


class Consumer(Protocol):
    """What an adapter gives the core to receive messages through."""

    def can_accept(self) -> bool:
        """False while the connection cannot take more (its socket is paused, its window is
        full). When it may turn True again, the adapter calls ``Subscription.resume``: a queue
        that found its consumers without room does not ask again before that."""
        ...

    def deliver(self, delivery: Delivery) -> None:
        """Hand one message to the client."""
        ...

    def cancelled_by_server(self) -> None:
        """The queue went away under this consumer (the adapter tells the client)."""
        ...


class BatchConsumer(Consumer, Protocol):
    """A consumer that can also take several deliveries in one call.

    When it is the only subscription of its queue, the queue hands it its ready backlog in
    batches (core/dispatch.py): ``can_accept`` is asked once per batch, and the consumer takes
    every delivery of the batch (it has credit for them). Single messages, such as one that
    arrives at an empty queue, still come through ``deliver``.
    """

    def deliver_many(self, deliveries: list[Delivery]) -> None:
        """Hand these messages to the client, in order."""
        ...

    # Optional: ``batch_credit() -> int``, how many deliveries one batch may hold at most
    # (a window of the consumer's own, asked after ``can_accept``). Not declared here so that
    # consumers without one need not define it; the Subscription looks it up once, as it
    # does ``deliver_many``.


class Delivery:
    """One message handed out. ``subscription`` is None for a basic.get."""

    __slots__ = ("entry", "queue", "settled", "subscription")

    def __init__(self, queue: Queue, entry: QueueEntry, subscription: Subscription | None) -> None:
        self.queue = queue
        self.entry = entry
        self.subscription = subscription
        self.settled = False

    @property
    def message(self) -> Message:
        return self.entry.message

    @property
    def redelivered(self) -> bool:
        return self.entry.redelivered

    def __repr__(self) -> str:
        return f"<Delivery {self.queue.name!r} seq={self.entry.seq} settled={self.settled}>"


class CreditGroup:
    """A prefetch limit shared by several subscriptions (0 means unlimited)."""

    __slots__ = ("_subscriptions", "limit", "unacked")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.unacked = 0
        self._subscriptions: dict[Subscription, None] = {}

    def has_credit(self) -> bool:
        return self.limit == 0 or self.unacked < self.limit

    def set_limit(self, limit: int) -> None:
        was_full = not self.has_credit()
        self.limit = limit
        if was_full and self.has_credit():
            self.wake()

    def wake(self) -> None:
        """Credit was freed: let every queue this group consumes from deliver again."""
        queues: dict[Queue, None] = {sub.queue: None for sub in self._subscriptions}
        for queue in queues:
            queue.dispatch()

    def _join(self, sub: Subscription) -> None:
        self._subscriptions[sub] = None

    def _leave(self, sub: Subscription) -> None:
        self._subscriptions.pop(sub, None)


# What freeing one unit of credit asks the queue to do.
WAKE_NONE = 0
WAKE_QUEUE = 1
WAKE_GROUP = 2


class Subscription:
    """A consumer attached to a queue: the handle ``VirtualHost.consume`` returns."""

    __slots__ = (
        "_unacked",
        "active",
        "arguments",
        "batch_credit",
        "consumer",
        "credit_group",
        "deliver_many",
        "exclusive",
        "no_ack",
        "owner",
        "prefetch",
        "pushback",
        "queue",
        "tag",
    )

    def __init__(
        self,
        queue: Queue,
        consumer: Consumer,
        *,
        tag: str,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        credit_group: CreditGroup | None,
        owner: object,
        arguments: Mapping[str, object],
    ) -> None:
        self.queue = queue
        self.consumer = consumer
        self.tag = tag
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.credit_group = credit_group
        self.owner = owner
        self.arguments = dict(arguments)
        self.active = True
        # Whether a backlog waiting for this consumer holds the queue's publishers (flow
        # control, core/flow.py); change it with ``FlowControl.set_pushback``.
        self.pushback = True
        # The consumer's batch entry point, when it has one (BatchConsumer).
        self.deliver_many: Callable[[list[Delivery]], None] | None = getattr(
            consumer, "deliver_many", None
        )
        # And its own bound on a batch, when it has one (``batch_credit``, BatchConsumer).
        self.batch_credit: Callable[[], int] | None = getattr(consumer, "batch_credit", None)
        # Unsettled deliveries by queue sequence number (insertion order = delivery order).
        self._unacked: dict[int, Delivery] = {}

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def unacked_deliveries(self) -> list[Delivery]:
        return list(self._unacked.values())

    def can_take(self) -> bool:
        """Active, with credit, and the consumer's connection is not paused."""
        if not self.active:
            return False
        if not self.no_ack:
            if self.prefetch and len(self._unacked) >= self.prefetch:
                return False
            group = self.credit_group
            if group is not None and group.limit and group.unacked >= group.limit:
                return False
        return self.consumer.can_accept()

    def cancel(self, requeue_unacked: bool = False) -> None:
        """Stop consuming. Unacked deliveries stay to be settled unless requeued here."""
        self.queue._cancel(self, requeue_unacked)

    def resume(self) -> None:
        """The consumer can take messages again (its socket drained)."""
        if self.active:
            self.queue.dispatch()

    def requeue_unacked(self) -> None:
        """Return every unsettled delivery to the queue, in original order."""
        if self._unacked:
            self.queue.requeue(list(self._unacked.values()))

    def _track(self, delivery: Delivery) -> None:
        self._unacked[delivery.entry.seq] = delivery
        if self.credit_group is not None:
            self.credit_group.unacked += 1

    def _release(self, delivery: Delivery) -> int:
        """Forget a settled delivery; say what must dispatch again now that credit is free."""
        if self._unacked.pop(delivery.entry.seq, None) is None:
            return WAKE_NONE
        wake = WAKE_NONE
        if self.prefetch and len(self._unacked) + 1 == self.prefetch:
            wake = WAKE_QUEUE
        group = self.credit_group
        if group is not None:
            if group.limit and group.unacked == group.limit:
                wake = WAKE_GROUP
            group.unacked -= 1
        return wake

    def __repr__(self) -> str:
        return f"<Subscription {self.tag!r} on {self.queue.name!r} active={self.active}>"
