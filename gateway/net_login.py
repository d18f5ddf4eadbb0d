"""Password hashes off the event loop, for the listeners' logins.

A login that needs its password hashed (core/users.py `PasswordCheck`) costs one scrypt: tens
of milliseconds (43 ms on the 2-core bench machine) during which a loop that ran it would serve
nobody, so one wrong password a few dozen times a second would stall every client.
`PasswordHasher` runs the checks on one worker thread (scrypt releases the GIL, so the loop
keeps its core) and answers on the loop. The pool has one thread fewer than the machine has
cores (at least one): a storm of bad logins never takes the loop's core, and each check waits
its turn with its connection paused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable

import structlog

from gateway.core.users import PasswordCheck

log = structlog.get_logger("gateway")


class PasswordHasher:
    """`core.users.PasswordHasher` on a worker thread of ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, workers: int | None = None) -> None:
        self._loop = loop
        self.workers = workers if workers is not None else max(1, (os.cpu_count() or 1) - 1)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="gateway-login"
        )
        self.pending = 0  # checks submitted and not answered yet
        self.checked = 0  # checks answered
        self.mismatched = 0  # of those, passwords that did not match

    def submit(self, check: PasswordCheck, done: Callable[[bool], None]) -> None:
        self.pending += 1
        future = self._loop.run_in_executor(self._executor, check.run)

        def answer(finished: asyncio.Future[bool]) -> None:
            self.pending -= 1
            if finished.cancelled():
                return  # shutting down: the connection goes with the loop
            error = finished.exception()
            if error is not None:  # pragma: no cover - run() catches what scrypt raises
                log.error("login.check_failed", error=repr(error))
            matched = error is None and finished.result()
            self.checked += 1
            if not matched:
                self.mismatched += 1
            done(matched)

        future.add_done_callback(answer)

    def stats(self) -> dict[str, int]:
        """For /metrics: checks waiting or running now, answered, and answered "no"."""
        return {"hashing": self.pending, "hashed": self.checked, "hash_mismatches": self.mismatched}

    def close(self) -> None:
        """Stop taking checks and drop those not started (at shutdown)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
