"""`PasswordHasher` (gateway/net_login.py): a login's password hash runs on a worker thread
and its answer comes back on the event loop's thread, never from inside `submit`."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from gateway.core import users as users_module
from gateway.core.users import PasswordCheck, User, UserDatabase, hash_password
from gateway.net_login import PasswordHasher

FAST = {"n": 16, "r": 1, "p": 1}


@pytest.mark.parametrize(("password", "matched"), [("wonderland", True), ("guess", False)])
async def test_the_hash_runs_on_a_worker_and_answers_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, password: str, matched: bool
) -> None:
    hashed_on: list[str] = []
    real_verify = users_module.verify_password

    def recording_verify(candidate: str, encoded: str) -> bool:
        hashed_on.append(threading.current_thread().name)
        return real_verify(candidate, encoded)

    monkeypatch.setattr(users_module, "verify_password", recording_verify)
    db = UserDatabase([User("alice", hash_password("wonderland", **FAST))], default_guest=False)
    check = db.begin_login("alice", password, "127.0.0.1")
    assert isinstance(check, PasswordCheck)
    hasher = PasswordHasher(asyncio.get_running_loop())
    answered = asyncio.Event()
    answers: list[tuple[bool, threading.Thread]] = []

    def done(ok: bool) -> None:
        answers.append((ok, threading.current_thread()))
        answered.set()

    hasher.submit(check, done)
    assert answers == []  # never from inside submit
    assert hasher.pending == 1
    await asyncio.wait_for(answered.wait(), 10)
    hasher.close()
    assert answers == [(matched, threading.current_thread())]
    assert len(hashed_on) == 1
    assert hashed_on[0].startswith("gateway-login")
    assert hasher.pending == 0
    assert hasher.stats() == {"hashing": 0, "hashed": 1, "hash_mismatches": 0 if matched else 1}
    if matched:
        assert db.finish_login(check, True).name == "alice"
        remembered = db.begin_login("alice", password, "127.0.0.1")
        assert isinstance(remembered, User)  # no second hash


async def test_the_pool_leaves_the_loop_a_core() -> None:
    loop = asyncio.get_running_loop()
    default = PasswordHasher(loop)
    assert default.workers == max(1, (os.cpu_count() or 1) - 1)
    default.close()
    chosen = PasswordHasher(loop, workers=3)
    assert chosen.workers == 3
    chosen.close()
