"""gateway/net.py's per-listener scheduling: write coalescing and the timer wheel, on a fake
loop that records what would be scheduled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from gateway.net import FlushScheduler, MachineProtocol, TimerWheel


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.soon: list[Callable[[], None]] = []
        self.at: list[tuple[float, Callable[..., None], tuple[Any, ...], FakeHandle]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> FakeHandle:
        self.soon.append(callback)
        return FakeHandle()

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> FakeHandle:
        handle = FakeHandle()
        self.at.append((when, callback, args, handle))
        return handle

    def run_soon(self) -> None:
        callbacks, self.soon = self.soon, []
        for callback in callbacks:
            callback()


class Connection:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def flush(self) -> None:
        self.log.append(self.name)


def _scheduler(loop: FakeLoop) -> FlushScheduler[Connection]:
    return FlushScheduler(cast(asyncio.AbstractEventLoop, loop))


def test_marks_outside_a_read_are_written_once_at_the_end_of_the_loop_turn() -> None:
    loop = FakeLoop()
    flusher = _scheduler(loop)
    log: list[str] = []
    a, b = Connection(log, "a"), Connection(log, "b")
    flusher.mark(a)
    flusher.mark(b)
    flusher.mark(a)
    assert len(loop.soon) == 1
    assert log == []
    loop.run_soon()
    assert log == ["a", "b"]
    flusher.mark(b)  # a new turn schedules again
    assert len(loop.soon) == 1


def test_marks_during_a_read_are_written_when_the_read_ends_without_a_loop_callback() -> None:
    loop = FakeLoop()
    flusher = _scheduler(loop)
    log: list[str] = []
    sub1, sub2 = Connection(log, "sub1"), Connection(log, "sub2")
    flusher.reading = True
    flusher.mark(sub1)
    flusher.mark(sub2)
    flusher.mark(sub1)
    flusher.reading = False
    assert loop.soon == []
    flusher.flush_marked()
    assert log == ["sub1", "sub2"]
    flusher.flush_marked()  # nothing left
    assert log == ["sub1", "sub2"]


def test_a_mark_scheduled_before_the_read_is_written_once() -> None:
    loop = FakeLoop()
    flusher = _scheduler(loop)
    log: list[str] = []
    sub = Connection(log, "sub")
    flusher.mark(sub)  # e.g. by an AMQP publisher earlier in the turn
    flusher.reading = True
    flusher.mark(sub)
    flusher.reading = False
    flusher.flush_marked()
    loop.run_soon()
    assert log == ["sub"]


class TimedProtocol:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def _on_timer(self) -> None:
        self.log.append(self.name)


def test_the_wheel_keeps_one_loop_timer_per_occupied_tick() -> None:
    loop = FakeLoop()
    wheel = TimerWheel.of(cast(asyncio.AbstractEventLoop, loop))
    assert _scheduler(loop).wheel is wheel  # the listener's connections share it
    log: list[str] = []
    first, second, later = (
        cast(MachineProtocol, TimedProtocol(log, n)) for n in ("first", "second", "later")
    )
    tick = wheel.schedule(0.01, first)
    assert wheel.schedule(0.02, second) == tick  # same 50 ms slot
    wheel.schedule(1.0, later)
    assert len(loop.at) == 2
    when, callback, args, handle = loop.at[0]
    assert when >= loop.now + 0.02
    wheel.cancel(tick, first)
    assert not handle.cancelled  # `second` still waits on it
    callback(*args)
    assert log == ["second"]
    _, _, _, later_handle = loop.at[1]
    wheel.cancel(wheel.schedule(1.0, later), later)
    assert later_handle.cancelled
