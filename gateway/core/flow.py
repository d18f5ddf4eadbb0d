"""Per-queue flow control: publishers that feed a backed-up queue stop being read.

RabbitMQ's credit flow in one process. Every queue has a high and a low watermark on its ready
backlog (messages and body bytes). A queue whose backlog passes the high watermark while a
consumer *pushes back* is "over": each publish that reaches it records the queue in
``FlowControl.hits`` (a dict insert; nothing is allocated per message otherwise). An adapter
clears ``hits`` when a read batch starts and, when the batch is over, hands them to ``hold``
with the publisher's ``FlowHold``: True means "stop reading this connection". When every queue
it waits on falls to its low watermark (or stops pushing back, or goes away), the hold's
``resume`` is called and the adapter reads again.

Who pushes back, and why nothing deadlocks:

- Only a queue with a subscription whose ``pushback`` is True holds publishers. Adapters set
  it False for consumers that cannot drain by themselves: an offline persistent MQTT session,
  and every consumer of a connection that is itself held (its acks wait unread in its socket,
  so its queues must not hold anybody). A queue nobody consumes never holds publishers: it is
  bounded by its ``x-max-length`` and the global memory alarm instead.
- A publisher is never held by a queue it consumes itself (its own acks may be what the queue
  waits for).

So a chain of holds always ends at a consumer whose connection is being read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.arguments import QueueSettings
    from gateway.core.consumers import Subscription
    from gateway.core.queues import Queue

# A queue holds publishers past this many ready messages or body bytes, and releases them
# at half of it. Large enough to keep the loop busy while a consumer's socket drains (a
# lower mark left the gateway idle a third of the time in bench S5), small enough to bound
# memory. A read batch may overshoot by what one socket read carries (~3,500 small PUBLISHes).
DEFAULT_HIGH_MESSAGES = 8192
DEFAULT_HIGH_BYTES = 16 * 1024 * 1024


class FlowHold:
    """One publisher's side of flow control (one per connection, made once).

    ``owner`` is what the publisher's own subscriptions have as owner (a publisher is never
    held by a queue it consumes); ``resume`` runs when the last queue it waits on drains.
    """

    __slots__ = ("held", "owner", "queues", "resume")

    def __init__(self, owner: object, resume: Callable[[], None]) -> None:
        self.owner = owner
        self.resume = resume
        self.queues: set[Queue] = set()
        self.held = False


class FlowControl:
    """The broker-wide bookkeeping: queues over high water and the holds waiting on them."""

    __slots__ = ("_waiting", "high_bytes", "high_messages", "hits", "holds_released")

    def __init__(
        self,
        *,
        high_messages: int = DEFAULT_HIGH_MESSAGES,
        high_bytes: int = DEFAULT_HIGH_BYTES,
    ) -> None:
        if high_messages < 1 or high_bytes < 1:
            raise ValueError("flow control watermarks must be positive")
        self.high_messages = high_messages
        self.high_bytes = high_bytes
        # Over-high queues that publishes reached since the current read batch began.
        self.hits: dict[Queue, None] = {}
        self._waiting: dict[Queue, dict[FlowHold, None]] = {}
        self.holds_released = 0  # how many times a held publisher was let go (metrics)

    # -- watermarks ----------------------------------------------------------------------------

    def high_water(self, settings: QueueSettings) -> tuple[int, int]:
        """A queue's high watermarks (messages, bytes). A length limit lowers them to a quarter
        of the limit, so a live consumer's publishers pause before the queue starts dropping,
        with room for what a few publishers' last reads carry."""
        messages = self.high_messages
        if settings.max_length is not None:
            messages = max(1, min(messages, settings.max_length // 4))
        size = self.high_bytes
        if settings.max_length_bytes is not None:
            size = max(1, min(size, settings.max_length_bytes // 4))
        return messages, size

    # -- the publisher's side ------------------------------------------------------------------

    def begin(self) -> None:
        """A read batch starts: what earlier publishes (timers, other batches) hit is not ours."""
        if self.hits:
            self.hits.clear()

    def hold(self, hold: FlowHold) -> bool:
        """Wait on the over-high queues this batch's publishes reached; True while held."""
        hits = self.hits
        if hits:
            owner = hold.owner
            for queue in hits:
                if not queue._over or queue in hold.queues or _consumes(queue, owner):
                    continue
                hold.queues.add(queue)
                waiting = self._waiting.get(queue)
                if waiting is None:
                    waiting = self._waiting[queue] = {}
                waiting[hold] = None
            hits.clear()
            if hold.queues:
                hold.held = True
        return hold.held

    def release(self, hold: FlowHold) -> None:
        """The publisher went away: stop waiting (``resume`` is not called)."""
        for queue in hold.queues:
            waiting = self._waiting.get(queue)
            if waiting is not None:
                waiting.pop(hold, None)
                if not waiting:
                    del self._waiting[queue]
        hold.queues.clear()
        hold.held = False

    def set_pushback(self, subscriptions: Iterable[Subscription], pushback: bool) -> None:
        """Say whether these consumers hold their queues' publishers (see the module doc)."""
        queues: dict[Queue, None] = {}
        for sub in subscriptions:
            if sub.pushback != pushback:
                sub.pushback = pushback
                queues[sub.queue] = None
        if not pushback:
            for queue in queues:
                if queue._over and not _pushes_back(queue):
                    self._clear(queue)

    def waiting_on(self, queue: Queue) -> int:
        """How many publishers wait for ``queue`` to drain."""
        return len(self._waiting.get(queue, ()))

    # -- the queue's side (called by Queue on its slow paths only) -----------------------------

    def passed_high(self, queue: Queue) -> None:
        """``queue``'s backlog is above its high watermark: hold its publishers if a consumer
        pushes back."""
        if _pushes_back(queue):
            queue._over = True
            self.hits[queue] = None

    def drained(self, queue: Queue) -> None:
        """An over queue shrank: release its publishers at low water. Runs after every
        dispatch of an over queue, so it only compares numbers."""
        if queue.deleted or (
            len(queue._ready) <= queue._hw_messages // 2
            and queue._ready_bytes <= queue._hw_bytes // 2
        ):
            self._clear(queue)

    def consumers_changed(self, queue: Queue) -> None:
        """An over queue lost a consumer: release its publishers if none pushes back now."""
        if queue.deleted or not _pushes_back(queue):
            self._clear(queue)
        else:
            self.drained(queue)

    def _clear(self, queue: Queue) -> None:
        queue._over = False
        waiting = self._waiting.pop(queue, None)
        if not waiting:
            return
        for hold in waiting:
            hold.queues.discard(queue)
            if not hold.queues and hold.held:
                hold.held = False
                self.holds_released += 1
                hold.resume()


def _pushes_back(queue: Queue) -> bool:
    for sub in queue._subs:  # noqa: SIM110 - a loop: any() and its generator cost more here
        if sub.pushback:
            return True
    return False


def _consumes(queue: Queue, owner: object) -> bool:
    return any(sub.owner is owner for sub in queue._subs)


def _resume_nothing() -> None:
    """A closed PublisherFlow's hold: its publisher is gone, there is nothing to resume."""


class PublisherFlow:
    """What an adapter keeps per connection: claim the batch's hits, pause, resume.

    ``pause`` and ``resume`` stop and restart reading the connection's socket;
    ``subscriptions`` lists the connection's own consumers, which stop pushing back while it
    is held (their acks wait unread in its socket). Made on the first hit only, so an idle
    connection pays nothing for it.
    """

    __slots__ = ("_flow", "_pause", "_resume", "_subscriptions", "hold", "paused")

    def __init__(
        self,
        flow: FlowControl,
        owner: object,
        *,
        pause: Callable[[], None],
        resume: Callable[[], None],
        subscriptions: Callable[[], Iterable[Subscription]],
    ) -> None:
        self._flow = flow
        self._pause = pause
        self._resume = resume
        self._subscriptions = subscriptions
        self.hold = FlowHold(owner, self._released)
        self.paused = False

    def after_batch(self) -> None:
        """The read batch is over and its publishes hit over-high queues: maybe pause."""
        if self._flow.hold(self.hold):
            if not self.paused:
                self.paused = True
                self._flow.set_pushback(self._subscriptions(), False)
            # Even when already paused: something else (the memory alarm clearing) may have
            # resumed reading since; pausing twice is harmless.
            self._pause()

    def _released(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self._flow.set_pushback(self._subscriptions(), True)
        self._resume()

    def close(self) -> None:
        """The connection is gone: stop waiting, without resuming anything."""
        self._flow.release(self.hold)
        self.paused = False
        # The hold's `resume` is our bound `_released`: a reference cycle that would keep the
        # connection (the hold's owner) until the cyclic collector runs (issue 7).
        self.hold.resume = _resume_nothing
