"""One OS process per role: start the roles, release them together, collect what they report.

Every role (a publisher, a subscriber, a group of idle connections) runs in its own forked
process with blocking sockets, so a generator never shares a core's time slice with another
role's Python and its own CPU time can be reported beside the broker's. The roles share a few
counters in shared memory (`Shared.counters`): the receiving role publishes how many messages
it has counted, and windowed publishers read it to stay at most `window` messages ahead.

`run_roles` forks, waits until every role has connected and said "ready", stamps the start
(time.monotonic_ns, the same clock in every process), releases them all at once, and waits for
the decisive roles' results (or a deadline); then it tells the rest to stop and reaps them.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

_MP = multiprocessing.get_context("fork")

# Shared counter slots.
DELIVERED = 0  # messages counted by the receiving role
CONNECTED = 1  # first of the per-connector slots of idle connections established (S7)
SLOTS = 16

Result = dict[str, Any]


class Shared:
    def __init__(self) -> None:
        self.counters = _MP.RawArray("q", SLOTS)
        self.go = _MP.Event()
        self.stop = _MP.Event()


class RoleContext:
    """What a role function gets: the shared counters and the start/stop signals."""

    def __init__(self, shared: Shared, conn: Connection) -> None:
        self.counters = shared.counters
        self._shared = shared
        self._conn = conn
        self.cpu_at_go = 0.0
        self.go_ns = 0

    def ready(self, timeout: float = 60.0) -> None:
        """Set-up done: report it and block until every role is released."""
        self._conn.send(("ready", None))
        if not self._shared.go.wait(timeout):
            raise TimeoutError("no start signal")
        self.go_ns = time.monotonic_ns()
        self.cpu_at_go = time.process_time()

    @property
    def stopped(self) -> bool:
        return self._shared.stop.is_set()

    def cpu_since_go(self) -> float:
        return time.process_time() - self.cpu_at_go


RoleFn = Callable[..., Result]


@dataclass
class Role:
    name: str
    fn: RoleFn
    kwargs: dict[str, Any] = field(default_factory=dict)
    decisive: bool = True  # the run ends when every decisive role has reported


@dataclass
class Outcome:
    go_ns: int
    results: dict[str, Result]
    error: str | None = None
    dropped: int | None = None  # the gateway's drop counters at the end of the run


def _child(role: Role, shared: Shared, conn: Connection) -> None:
    ctx = RoleContext(shared, conn)
    try:
        result = role.fn(ctx, **role.kwargs)
        result.setdefault("cpu_s", ctx.cpu_since_go())
        if result.get("error") is None:
            result.pop("error", None)
    except BaseException as exc:  # reported to the parent; a role never raises past here
        result = {"error": f"{role.name}: {type(exc).__name__}: {exc}"}
    try:
        conn.send(("result", result))
        conn.close()
    finally:
        os._exit(0)


def run_roles(
    roles: list[Role],
    *,
    setup_timeout: float,
    run_timeout: float,
    tick: Callable[[Shared], bool] | None = None,
    tick_every: float = 1.0,
    before_stop: Callable[[], None] | None = None,
) -> Outcome:
    """Fork every role, release them together, return their results by role name.

    `tick` runs every `tick_every` seconds during the run; returning True ends the run (the
    roles are told to stop and report). `before_stop` runs once the run is over but before
    the roles disconnect (to read the broker's counters while the run's queues still exist).
    """
    shared = Shared()
    procs: dict[str, Any] = {}
    pipes: dict[Connection, str] = {}
    results: dict[str, Result] = {}
    try:
        for role in roles:
            parent, child = _MP.Pipe(duplex=False)
            proc = _MP.Process(target=_child, args=(role, shared, child), daemon=True)
            proc.start()
            child.close()
            procs[role.name] = proc
            pipes[parent] = role.name
        error = _wait_ready(pipes, results, setup_timeout)
        if error is not None:
            shared.stop.set()
            shared.go.set()
            _collect(pipes, results, time.monotonic() + 5.0)
            return Outcome(0, results, error)
        go_ns = time.monotonic_ns()
        shared.go.set()
        decisive = {r.name for r in roles if r.decisive}
        deadline = time.monotonic() + run_timeout
        next_tick = time.monotonic() + tick_every
        # Without decisive roles the run lasts until `tick` ends it (or the deadline).
        while time.monotonic() < deadline and not (decisive and decisive <= results.keys()):
            _collect(pipes, results, min(deadline, next_tick), once=True)
            if time.monotonic() >= next_tick:
                next_tick += tick_every
                if tick is not None and tick(shared):
                    break
        timed_out = time.monotonic() >= deadline
        if not procs.keys() <= results.keys():
            _linger(shared, deadline)
        if before_stop is not None:
            before_stop()
        shared.stop.set()
        _collect(pipes, results, time.monotonic() + 10.0)
        missing = sorted(set(procs) - results.keys())
        errors = [str(r["error"]) for r in results.values() if r.get("error")]
        if missing:
            errors.append(f"no report from {missing}")
        if timed_out:
            errors.append("run deadline reached")
        return Outcome(go_ns, results, "; ".join(errors) or None)
    finally:
        shared.stop.set()
        shared.go.set()
        for proc in procs.values():
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in pipes:
            conn.close()


def _linger(shared: Shared, deadline: float, quiet_s: float = 2.0) -> None:
    """Before stopping the other roles, let deliveries still in flight arrive: wait until the
    DELIVERED counter has not moved for `quiet_s` (S2's subscriber after the publishers)."""
    seen = shared.counters[DELIVERED]
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.05)
        now = shared.counters[DELIVERED]
        if now != seen:
            seen = now
            quiet_since = time.monotonic()


def _wait_ready(
    pipes: dict[Connection, str], results: dict[str, Result], timeout: float
) -> str | None:
    waiting = set(pipes)
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"roles not ready after {timeout:.0f} s: {sorted(pipes[c] for c in waiting)}"
        for conn in wait(list(waiting), left):
            assert isinstance(conn, Connection)
            try:
                kind, payload = conn.recv()
            except EOFError:
                return f"{pipes[conn]} exited during set-up"
            waiting.discard(conn)
            if kind == "result":
                results[pipes[conn]] = payload
                return str(payload.get("error") or f"{pipes[conn]} ended during set-up")
    return None


def _collect(
    pipes: dict[Connection, str], results: dict[str, Result], until: float, once: bool = False
) -> None:
    """Receive results until every role has reported or `until` (one wait only if `once`)."""
    while True:
        open_pipes = [c for c, name in pipes.items() if name not in results]
        left = until - time.monotonic()
        if not open_pipes or left <= 0:
            return
        for conn in wait(open_pipes, left):
            assert isinstance(conn, Connection)
            name = pipes[conn]
            try:
                kind, payload = conn.recv()
            except EOFError:
                results[name] = {"error": f"{name} exited without a report"}
                continue
            if kind == "result":
                results[name] = payload
        if once:
            return
