"""The broker: virtual hosts, the shared clock, memory accounting and the timer wheel.

The shell owns the event loop; the core only needs to be told the time. ``next_timer`` gives
the earliest deadline (a message TTL at some queue head, or an unused queue's ``x-expires``);
the shell calls ``handle_timer`` at or after it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.errors import NotAllowed
from gateway.core.flow import FlowControl
from gateway.core.paging import Pager
from gateway.core.vhost import VirtualHost

if TYPE_CHECKING:
    from gateway.core.observers import BrokerObserver, CommitBarrier
    from gateway.core.queues import Queue


class Broker:
    """``clock`` returns monotonic seconds; ``wall_clock`` (epoch seconds) stamps ``x-death``
    entries and defaults to ``clock`` for tests."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        wall_clock: Callable[[], float] | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        self.clock = clock
        # Per-queue watermarks and the publishers they hold (core/flow.py).
        self.flow = FlowControl() if flow is None else flow
        self.wall_clock = clock if wall_clock is None else wall_clock
        self.observers: list[BrokerObserver] = []
        # Set by a store: adapters confirm what it recorded only after it commits.
        self.commit_barrier: CommitBarrier | None = None
        # Body bytes held by all queues (ready and unacked; a message in two queues counts twice).
        self.queued_bytes = 0
        # Pages persistent bodies of long durable queues out to a store (core/paging.py).
        self.pager = Pager(self)
        self._vhosts: dict[str, VirtualHost] = {}
        self._timers: list[tuple[float, int, Queue]] = []
        self._timer_order = itertools.count()
        self.add_vhost("/")

    def vhost(self, name: str) -> VirtualHost:
        found = self._vhosts.get(name)
        if found is None:
            raise NotAllowed(f"vhost {name} not found")
        return found

    def add_vhost(self, name: str) -> VirtualHost:
        found = self._vhosts.get(name)
        if found is None:
            found = self._vhosts[name] = VirtualHost(self, name)
        return found

    def vhosts(self) -> list[VirtualHost]:
        return list(self._vhosts.values())

    def next_timer(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].deleted:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self) -> None:
        """Expire due queue heads (dead-lettering them) and delete queues unused past x-expires."""
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, queue = heapq.heappop(timers)
            if not queue.deleted:
                queue._timer_fired(deadline, now)

    def _schedule(self, deadline: float, queue: Queue) -> None:
        heapq.heappush(self._timers, (deadline, next(self._timer_order), queue))
