"""Users, password hashes and the login check both listeners call.

Passwords are stored as "scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>". The last successful check
of each user is remembered (sha256 of the password, and the stored hash) so a reconnect storm
pays scrypt once per user, not once per connection (the public default guest/guest not even
hashed); failures are never remembered.

A hash takes tens of milliseconds. The listeners log in with `begin_login`, which decides
whatever it can without hashing and otherwise returns a `PasswordCheck`: with a `hasher` set
(`gateway run` sets one, gateway/net_login.py `PasswordHasher`) the check runs on worker
threads, where scrypt releases the GIL, and the event loop goes on serving every other client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from gateway.core.errors import AuthenticationFailed, NotAllowed

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# Encoded parameters come from configuration; bound them so a bad entry cannot eat the host.
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=length)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    if not all(part.isascii() and part.isdigit() for part in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        return None
    if 128 * r * (n + p) > _MAX_SCRYPT_MEMORY:
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(digest) <= 128:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check; False (never an exception) for a malformed encoding."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


# Asked on every login of a loopback-only user (guest): parsing the address costs more than
# the rest of an MQTT CONNECT's authentication, and a client's peer hosts repeat.
@lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x); a zone id is ignored."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class User:
    """``vhosts`` may contain "*" for every virtual host. No hash: password logins fail."""

    name: str
    password_hash: str | None
    tags: frozenset[str] = field(default_factory=frozenset)
    vhosts: frozenset[str] = frozenset({"/"})
    loopback_only: bool = False


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """A login `UserDatabase.begin_login` could not decide without hashing the password:
    `run()` anywhere (it touches nothing shared), then `UserDatabase.finish_login` on the
    thread that owns the database."""

    user: User
    password: str
    mechanism: str
    digest: bytes  # sha256 of the password: the key a success is remembered by

    def run(self) -> bool:
        stored = self.user.password_hash
        return stored is not None and verify_password(self.password, stored)


class PasswordHasher(Protocol):
    """Runs password checks away from the caller and answers on the caller's thread
    (gateway/net_login.py `PasswordHasher`)."""

    def submit(self, check: PasswordCheck, done: Callable[[bool], None]) -> None:
        """Call ``done(check.run())`` later, on the event loop; never ``done`` from inside."""


class UserDatabase:
    """The configured users, plus guest/guest limited to loopback unless ``default_guest`` is
    False or a user named guest is configured."""

    def __init__(
        self,
        users: Iterable[User] = (),
        *,
        default_guest: bool = True,
        guest_password_hash: str | None = None,
    ) -> None:
        self._users: dict[str, User] = {user.name: user for user in users}
        # User name -> (sha256 of the password last verified for it, the stored hash it was
        # verified against). One entry per configured user, so no eviction: a fleet of devices
        # with a password each is remembered whole, and a wrong password never replaces one.
        self._verified: dict[str, tuple[bytes, str]] = {}
        # The stored hash the default guest/guest last passed against: logins with it (and
        # anonymous MQTT, which is guest/guest) then cost no hashing at all (issue 7, S7).
        # The pair is public, so nothing secret is kept; a failure is never remembered.
        self._guest_verified: str | None = None
        # Where the listeners run a `PasswordCheck`: None runs it in the caller (tests, tools).
        self.hasher: PasswordHasher | None = None
        if default_guest and "guest" not in self._users:
            if guest_password_hash is None:
                # Hashed here from the public password, so it needs no check: the first
                # login would otherwise run one more scrypt (16 MiB, tens of ms) with the
                # event loop stopped, a quarter of the first 5,000 connects of bench S7.
                guest_password_hash = self._guest_verified = hash_password("guest")
            self._users["guest"] = User(
                "guest",
                guest_password_hash,
                tags=frozenset({"administrator"}),
                vhosts=frozenset({"/"}),
                loopback_only=True,
            )

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def users(self) -> list[User]:
        return list(self._users.values())

    def authenticate(
        self, name: str, password: str, peer_host: str, *, mechanism: str = "PLAIN"
    ) -> User:
        """The whole login check in the caller, hash included: `begin_login` and
        `finish_login` in one call."""
        started = self.begin_login(name, password, peer_host, mechanism=mechanism)
        if isinstance(started, User):
            return started
        return self.finish_login(started, started.run())

    def begin_login(
        self, name: str, password: str, peer_host: str, *, mechanism: str = "PLAIN"
    ) -> User | PasswordCheck:
        """The login check up to the hash: the user when nothing needs hashing (a password
        verified before, or the default guest/guest), a `PasswordCheck` to run when the
        password must be hashed. Raises `AuthenticationFailed` for what is refused without
        hashing (an unknown user, the wrong place, no password set)."""
        user = self._users.get(name)
        if user is None:
            raise AuthenticationFailed(f"user '{name}' - invalid credentials", mechanism=mechanism)
        if user.loopback_only and not is_loopback(peer_host):
            raise AuthenticationFailed(
                f"user '{name}' can only connect via localhost", mechanism=mechanism
            )
        stored = user.password_hash
        if stored is None:
            raise AuthenticationFailed(f"user '{name}' - invalid credentials", mechanism=mechanism)
        if stored is self._guest_verified and password == "guest" and name == "guest":
            return user
        digest = hashlib.sha256(password.encode()).digest()
        cached = self._verified.get(name)
        if cached is not None and cached[0] == digest and cached[1] == stored:
            return user
        return PasswordCheck(user, password, mechanism, digest)

    def finish_login(self, check: PasswordCheck, matched: bool) -> User:
        """The end of a login `begin_login` could not decide, with what `check.run()` said:
        the user, remembered for the next login, or `AuthenticationFailed`."""
        user = check.user
        if not matched:
            raise AuthenticationFailed(
                f"user '{user.name}' - invalid credentials", mechanism=check.mechanism
            )
        stored = user.password_hash
        assert stored is not None  # begin_login refuses a user without one
        self._verified[user.name] = (check.digest, stored)
        if check.password == "guest" and user.name == "guest":
            self._guest_verified = stored
        return user

    def check_vhost(self, user: User, vhost: str) -> None:
        if vhost not in user.vhosts and "*" not in user.vhosts:
            raise NotAllowed(f"access to vhost '{vhost}' refused for user '{user.name}'")
