"""A password hasher for tests that holds every check at a gate (core/users.py
`PasswordHasher`), so "while a password is hashed" is a state a test controls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from gateway.core.users import PasswordCheck


class GatedHasher:
    """Runs each check on its own thread once `gate` opens; answers on the gateway's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.gate = threading.Event()
        self._submitted = threading.Semaphore(0)

    def submit(self, check: PasswordCheck, done: Callable[[bool], None]) -> None:
        def work() -> None:
            assert self.gate.wait(10), "the test never opened the gate"
            self.loop.call_soon_threadsafe(done, check.run())

        threading.Thread(target=work, daemon=True).start()
        self._submitted.release()

    def wait_submitted(self) -> None:
        assert self._submitted.acquire(timeout=10), "no password check reached the hasher"
