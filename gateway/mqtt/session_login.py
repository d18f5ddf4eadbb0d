"""An MQTT CONNECT's login: the credentials it carries, the user it logs in as, and the wait
for a password hash that runs off the event loop.

Most logins are decided at once (`UserDatabase.begin_login`: anonymous guest, a password
verified before, or a refusal). One that needs its password hashed waits for the database's
`hasher` (gateway/net_login.py, worker threads; scrypt takes tens of milliseconds) with the
client's socket paused, and whatever the client sent after its CONNECT is kept in
`ClientHandler.login_wait` and handled, in order, once the CONNACK is out.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from gateway.core.errors import AuthenticationFailed, CoreError
from gateway.core.users import PasswordCheck, PasswordHasher, User
from gateway.mqtt.packets import Connect, ReasonCode

if TYPE_CHECKING:
    from gateway.mqtt.session_handler import ClientHandler

__all__ = ["start_login"]


def credentials(connect: Connect) -> tuple[str, str]:
    """(user name, password) a CONNECT logs in with."""
    name = connect.username
    if name is None:
        return "guest", "guest"  # anonymous MQTT is guest, loopback only
    try:
        return name, (connect.password or b"").decode("utf-8")
    except UnicodeDecodeError:
        # Binary data no stored password can be: still compared, never matched.
        return name, "\x00" + hashlib.sha256(connect.password or b"").hexdigest()


def start_login(handler: ClientHandler, connect: Connect) -> User | None:
    """The user ``connect`` logs in as, or None: refused (the CONNACK says why and the
    connection closes), or waiting for its password hash (`_wait_for_hash`)."""
    users = handler.hub.users
    name, password = credentials(connect)
    try:
        started = users.begin_login(name, password, handler.peer_host, mechanism="MQTT")
        if isinstance(started, PasswordCheck):
            hasher = users.hasher
            if hasher is not None:
                _wait_for_hash(handler, connect, started, hasher)
                return None
            started = users.finish_login(started, started.run())  # no hasher: here
    except AuthenticationFailed as exc:
        _refuse_login(handler, exc)
        return None
    return _admitted(handler, started)


def _admitted(handler: ClientHandler, user: User) -> User | None:
    """``user`` if it may use the MQTT virtual host; refused otherwise."""
    try:
        handler.hub.users.check_vhost(user, handler.hub.settings.vhost)
    except CoreError:
        handler.refuse(ReasonCode.NOT_AUTHORIZED)
        return None
    handler.peer_host = ""  # needed for the login only: not kept by an idle connection
    return user


def _refuse_login(handler: ClientHandler, exc: AuthenticationFailed) -> None:
    # As RabbitMQ: right credentials from the wrong place are "not authorized" (3.1.1 return
    # code 5); wrong credentials are 0x86 (3.1.1 return code 4).
    handler.refuse(
        ReasonCode.NOT_AUTHORIZED if "localhost" in exc.reason
        else ReasonCode.BAD_USER_NAME_OR_PASSWORD
    )  # fmt: skip


def _wait_for_hash(
    handler: ClientHandler, connect: Connect, check: PasswordCheck, hasher: PasswordHasher
) -> None:
    """Hash off the loop; meanwhile nothing more is read, and events already decoded wait."""
    handler.login_wait = []
    owner = handler.owner
    paused = owner.can_pause_reading
    if paused:
        owner.pause_reading()

    def hashed(matched: bool) -> None:
        waiting = handler.login_wait or []
        handler.login_wait = None
        if handler.closed:
            return  # the client left, or timed out, while its password was hashed
        try:
            user = handler.hub.users.finish_login(check, matched)
        except AuthenticationFailed as exc:
            _refuse_login(handler, exc)
            return
        admitted = _admitted(handler, user)
        if admitted is None:
            return
        handler.connect_as(connect, admitted)
        if waiting and not handler.closed:
            handler.handle_events(waiting)
        owner.output_ready()
        if paused and not handler.closed:
            owner.resume_reading()

    hasher.submit(check, hashed)
