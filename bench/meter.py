"""One run's bookkeeping: counters, the publishers' window, latency samples, completion.

Publishers and receivers live in the same process, so the harness can hold publishers back to a
window of messages that are sent but not yet settled (delivered, or acknowledged where the
scenario counts acknowledgements). That keeps every broker's queues bounded, so a QoS 0 run
measures sustainable throughput instead of how fast a broker can buffer or drop, and latency
stays a meaningful number under load.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field

# The first 8 payload bytes carry the send time (time.perf_counter_ns) for latency.
STAMP = struct.Struct(">Q")
STAMP_SIZE = STAMP.size

now_ns = time.perf_counter_ns


class RunStalled(Exception):
    """No progress for longer than the idle timeout: the run ends with what it has."""


@dataclass
class Meter:
    """Shared by every client of one run.

    `settled` counts what the throughput figure measures (deliveries, or PUBACKs/confirms), in
    receiver units: with fan-out each delivery to each subscriber counts. `delivered` counts
    deliveries to consumers, for the loss figure. The window is counted in the same units, so a
    fan-out publisher runs at most `window / fanout` messages ahead of its slowest subscribers
    on average, and every subscriber's queue stays short.
    """

    expected_settled: int
    expected_delivered: int
    window: int
    fanout: int = 1
    sent: int = 0
    settled: int = 0
    delivered: int = 0
    nacked: int = 0
    error: str | None = None  # why the run ended early (it stalled or hit its deadline)
    # CPU time this process (the load generator) spent during the run.
    client_cpu_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    first_send_ns: int = 0
    last_settle_ns: int = 0
    last_progress_ns: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    # Deliveries add to `settled` too when the scenario measures delivery.
    settle_on_delivery: bool = True
    # Deliveries carry latency samples unless the scenario samples acknowledgement round trips.
    latency_on_delivery: bool = True
    _cpu_at_start: float = field(default=0.0, init=False, repr=False)

    def start(self) -> None:
        self.first_send_ns = self.last_progress_ns = now_ns()
        self._cpu_at_start = time.process_time()

    def stop(self) -> None:
        self.client_cpu_s = time.process_time() - self._cpu_at_start

    def credit(self) -> int:
        """How many more messages the publishers may send now (at least one when idle)."""
        outstanding = self.sent * self.fanout - self.settled
        if outstanding <= 0:
            return max(1, self.window // self.fanout)
        return (self.window - outstanding) // self.fanout

    def on_delivered(self, count: int, at_ns: int) -> None:
        self.delivered += count
        self.last_progress_ns = at_ns
        if self.settle_on_delivery:
            self.settled += count
            self.last_settle_ns = at_ns
        self.progress.set()

    def on_settled(self, count: int, at_ns: int) -> None:
        """An acknowledgement (PUBACK, publisher confirm) settled `count` messages."""
        self.settled += count
        self.last_settle_ns = self.last_progress_ns = at_ns
        self.progress.set()

    @property
    def finished(self) -> bool:
        return self.settled >= self.expected_settled and self.delivered >= self.expected_delivered

    async def wait_credit(self, idle_timeout: float) -> int:
        """Wait until the window has room; raise RunStalled after `idle_timeout` without any."""
        while (credit := self.credit()) <= 0:
            await self._wait_progress(idle_timeout)
        return credit

    async def wait_finished(self, deadline: float, idle_timeout: float) -> None:
        """Return once every expected message is in, or raise RunStalled at the deadline."""
        loop = asyncio.get_running_loop()
        while not self.finished:
            left = deadline - loop.time()
            if left <= 0:
                raise RunStalled("run deadline reached")
            await self._wait_progress(min(idle_timeout, left))

    async def _wait_progress(self, idle_s: float) -> None:
        """Wait for the next delivery or acknowledgement; RunStalled after `idle_s` without."""
        self.progress.clear()
        try:
            async with asyncio.timeout(idle_s):
                await self.progress.wait()
        except TimeoutError:
            raise RunStalled(f"no progress for {idle_s:.1f} s") from None


class Pacer:
    """Spreads a run's messages over time at a fixed total rate (for latency at a given load)."""

    def __init__(self, rate: float, batch: int) -> None:
        self.rate = rate
        self.batch = batch
        self._start = 0.0
        self._issued = 0

    async def take(self, wanted: int) -> int:
        loop = asyncio.get_running_loop()
        if not self._start:
            self._start = loop.time()
        due = self._start + self._issued / self.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        n = max(1, min(wanted, self.batch))
        self._issued += n
        return n
