"""A password hasher for tests that holds every check at a gate (core/users.py
`PasswordHasher`), so "while a password is hashed" is a state a test controls."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

from gateway.core.users import PasswordCheck, hash_password
from tests.gateway_runner import RunningGateway, running_gateway


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


@contextlib.contextmanager
def gated_gateway() -> Iterator[tuple[RunningGateway, GatedHasher]]:
    """A gateway with user alice (password "wonderland", a cheap hash) whose logins wait at
    the gate; the gate opens on the way out so no check thread is left waiting."""
    users = [{"name": "alice", "password_hash": hash_password("wonderland", n=16)}]
    with running_gateway(users=users) as running:
        hasher = GatedHasher(running.loop)
        running.gateway.users.hasher = hasher
        try:
            yield running, hasher
        finally:
            hasher.gate.set()
