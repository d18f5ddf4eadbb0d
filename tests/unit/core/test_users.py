"""Password hashing and the login check."""

from __future__ import annotations

import hashlib

import pytest

from gateway.core import users as users_module
from gateway.core.errors import AuthenticationFailed, NotAllowed
from gateway.core.users import (
    User,
    UserDatabase,
    hash_password,
    is_loopback,
    verify_password,
)

FAST = {"n": 16, "r": 1, "p": 1}  # tiny scrypt parameters keep the tests fast


def test_hash_format_and_verify() -> None:
    encoded = hash_password("s3cret", **FAST)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "1", "1")
    assert salt
    assert digest
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)
    assert hash_password("s3cret", **FAST) != encoded  # salted


def test_default_parameters() -> None:
    encoded = hash_password("x")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("x", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$16$1$1$AAAA$AAAA",
        "scrypt$16$1$1$AAAA",
        "scrypt$15$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # n not a power of 2
        "scrypt$x$1$1$AAAA$AAAA",
        "scrypt$16$1$1$not base64!$AAAAAAAAAAAAAAAAAAAAAA==",
        "scrypt$16$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # digest too short
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # too costly
        "scrypt$16$0$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
    ],
)
def test_malformed_encodings_are_rejected_cleanly(encoded: str) -> None:
    assert verify_password("anything", encoded) is False


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def db() -> UserDatabase:
    return UserDatabase(
        [User("alice", hash_password("wonderland", **FAST), vhosts=frozenset({"/", "lab"}))],
        guest_password_hash=hash_password("guest", **FAST),
    )


def test_authenticate(db: UserDatabase) -> None:
    user = db.authenticate("alice", "wonderland", "10.1.2.3")
    assert user.name == "alice"
    assert db.authenticate("guest", "guest", "127.0.0.1").name == "guest"
    assert db.authenticate("guest", "guest", "::1").name == "guest"


@pytest.mark.parametrize(
    ("name", "password", "host", "reason"),
    [
        ("alice", "nope", "10.0.0.1", "user 'alice' - invalid credentials"),
        ("mallory", "x", "10.0.0.1", "user 'mallory' - invalid credentials"),
        ("guest", "guest", "192.168.1.5", "user 'guest' can only connect via localhost"),
        ("guest", "wrong", "127.0.0.1", "user 'guest' - invalid credentials"),
    ],
)
def test_authentication_failures(
    db: UserDatabase, name: str, password: str, host: str, reason: str
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        db.authenticate(name, password, host)
    assert info.value.reason == reason
    assert info.value.code == 403
    assert info.value.hard
    assert info.value.text == (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile."
    )


def test_mechanism_named_in_text(db: UserDatabase) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        db.authenticate("alice", "x", "10.0.0.1", mechanism="AMQPLAIN")
    assert "mechanism AMQPLAIN" in info.value.text


def test_user_without_password_cannot_log_in() -> None:
    db = UserDatabase([User("svc", None)], default_guest=False)
    with pytest.raises(AuthenticationFailed):
        db.authenticate("svc", "", "127.0.0.1")
    assert db.get("guest") is None


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords `verify_password` (the scrypt) was asked to check, in order."""
    calls: list[str] = []
    real = users_module.verify_password

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return real(password, encoded)

    monkeypatch.setattr(users_module, "verify_password", counting)
    return calls


def test_successful_checks_are_cached(db: UserDatabase, verified: list[str]) -> None:
    calls = verified
    for _ in range(5):
        db.authenticate("alice", "wonderland", "10.0.0.1")
    assert calls == ["wonderland"]
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            db.authenticate("alice", "bad", "10.0.0.1")
    assert calls == ["wonderland", "bad", "bad"]  # failures are never cached


def test_check_vhost(db: UserDatabase) -> None:
    alice = db.authenticate("alice", "wonderland", "10.0.0.1")
    db.check_vhost(alice, "lab")
    with pytest.raises(NotAllowed) as info:
        db.check_vhost(alice, "prod")
    assert info.value.text == "NOT_ALLOWED - access to vhost 'prod' refused for user 'alice'"
    admin = User("root", None, vhosts=frozenset({"*"}))
    db.check_vhost(admin, "anything")


def test_configured_guest_replaces_default() -> None:
    db = UserDatabase([User("guest", hash_password("other", **FAST))])
    assert db.authenticate("guest", "other", "10.0.0.9").name == "guest"
    assert [u.name for u in db.users()] == ["guest"]


def test_the_default_guest_login_is_not_even_hashed_once_verified(
    db: UserDatabase, verified: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[bytes] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(data: bytes) -> object:
        hashed.append(data)
        return real_sha256(data)

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    for _ in range(5):
        assert db.authenticate("guest", "guest", "127.0.0.1").name == "guest"
    assert verified == ["guest"]
    assert hashed == [b"guest"]  # the first login's cache key only
    # The loopback rule and wrong passwords are still checked every time.
    with pytest.raises(AuthenticationFailed) as refused:
        db.authenticate("guest", "guest", "10.0.0.1")
    assert "localhost" in refused.value.reason
    for _ in range(2):
        with pytest.raises(AuthenticationFailed) as refused:
            db.authenticate("guest", "Guest", "127.0.0.1")
        assert "invalid credentials" in refused.value.reason
    assert verified == ["guest", "Guest", "Guest"]


def test_the_default_guest_hashed_by_the_database_needs_no_check_at_all(
    verified: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a given hash the database hashes the public pair itself: even the first login
    # runs no scrypt (it stalled the event loop for tens of ms). A given hash is checked once
    # (the test above), and a wrong password is checked every time.
    real_hash = users_module.hash_password
    monkeypatch.setattr(users_module, "hash_password", lambda pw: real_hash(pw, **FAST))
    db = UserDatabase([])
    for _ in range(3):
        assert db.authenticate("guest", "guest", "127.0.0.1").name == "guest"
    assert verified == []
    with pytest.raises(AuthenticationFailed) as refused:
        db.authenticate("guest", "Guest", "127.0.0.1")
    assert "invalid credentials" in refused.value.reason
    with pytest.raises(AuthenticationFailed) as refused:
        db.authenticate("guest", "guest", "10.0.0.1")
    assert "localhost" in refused.value.reason
    assert verified == ["Guest"]


def test_a_configured_guest_with_another_password_never_takes_the_default_pair() -> None:
    db = UserDatabase([User("guest", hash_password("other", **FAST))])
    with pytest.raises(AuthenticationFailed):
        db.authenticate("guest", "guest", "10.0.0.9")
    assert db.authenticate("guest", "other", "10.0.0.9").name == "guest"
    with pytest.raises(AuthenticationFailed):
        db.authenticate("guest", "guest", "10.0.0.9")


def test_the_default_pair_verified_for_one_database_means_nothing_to_another() -> None:
    first = UserDatabase([], guest_password_hash=hash_password("guest", **FAST))
    assert first.authenticate("guest", "guest", "::1").name == "guest"
    other = UserDatabase([User("guest", hash_password("changed", **FAST))])
    with pytest.raises(AuthenticationFailed):
        other.authenticate("guest", "guest", "::1")


def test_every_users_last_good_password_is_remembered_however_many_users(
    verified: list[str],
) -> None:
    # A fleet with a password per device: after one login each, reconnects hash nothing, and a
    # wrong password neither evicts nor replaces the remembered one. (A cache that cleared at
    # 1,024 entries made a fleet larger than that hash again and again.)
    fleet = [User(f"device-{i}", hash_password(f"pw-{i}", **FAST)) for i in range(3000)]
    db = UserDatabase(fleet, default_guest=False)
    for i in range(3000):
        db.authenticate(f"device-{i}", f"pw-{i}", "10.0.0.1")
    assert len(verified) == 3000
    with pytest.raises(AuthenticationFailed):
        db.authenticate("device-7", "wrong", "10.0.0.1")
    assert len(verified) == 3001  # a wrong password is always hashed
    for i in range(3000):
        db.authenticate(f"device-{i}", f"pw-{i}", "10.0.0.1")
    assert len(verified) == 3001
