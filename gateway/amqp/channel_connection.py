"""One AMQP client connection on the core: login, virtual host, channels, teardown.

The handler owns the sans-I/O :class:`~gateway.amqp.connection.AMQPConnection` and turns its
events into core calls; it never touches a socket. The shell feeds it bytes, flushes the
machine's output after every read (and when ``output_ready`` says another connection's
activity wrote here), and closes the transport once ``conn.closed`` is true.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from gateway.amqp.channel import AmqpChannel
from gateway.amqp.channel_context import AmqpContext
from gateway.amqp.connection import AMQPConnection
from gateway.amqp.connection_events import (
    ChannelClosed,
    ChannelOpened,
    ConnectionClosed,
    ContentReceived,
    Event,
    HandshakeTimedOut,
    HardErrorRaised,
    HeartbeatTimedOut,
    LoginRequested,
    MethodReceived,
    OpenRequested,
    ProtocolHeaderRejected,
)
from gateway.amqp.connection_handshake import LOGIN_PENDING
from gateway.amqp.spec import INTERNAL_ERROR, NOT_ALLOWED
from gateway.core.consumers import Subscription
from gateway.core.errors import AuthenticationFailed, CoreError
from gateway.core.flow import PublisherFlow
from gateway.core.users import PasswordCheck, PasswordHasher, User, UserDatabase
from gateway.core.vhost import VirtualHost

BLOCKED_REASON = "low on memory"

_ENDINGS = (
    HardErrorRaised,
    ConnectionClosed,
    HeartbeatTimedOut,
    HandshakeTimedOut,
    ProtocolHeaderRejected,
)


class PeerLogin:
    """The credentials check the connection machine calls, for one client. Keeps why the
    connection was refused (the login here; the virtual host or the connection limit, set by
    the handler) for the shell's log line: the wire text stays vague.

    A plain object, not a bound method of the handler: the machine holds it and the handler
    holds the machine, so a bound method would make a reference cycle that keeps a dropped
    connection in memory until the (rarely run) cyclic collector frees it (issue 7).
    """

    __slots__ = ("peer_host", "pending", "refusal", "users")

    def __init__(self, users: UserDatabase, peer_host: str) -> None:
        self.users = users
        self.peer_host = peer_host
        self.refusal: str | None = None
        # A password to hash off the loop, and where (`LOGIN_PENDING`); the handler takes it.
        self.pending: tuple[PasswordCheck, PasswordHasher] | None = None

    def __call__(self, mechanism: str, username: str, password: str) -> object | None:
        users = self.users
        try:
            started = users.begin_login(username, password, self.peer_host, mechanism=mechanism)
            if isinstance(started, PasswordCheck):
                hasher = users.hasher
                if hasher is not None:
                    self.pending = (started, hasher)
                    return LOGIN_PENDING
                started = users.finish_login(started, started.run())  # no hasher: here
        except AuthenticationFailed as exc:
            self.refusal = exc.reason
            return None
        return started


class AmqpConnectionHandler:
    """The adapter for one connection; ``output_ready`` tells the shell there is output.

    ``pause_reading`` / ``resume_reading`` stop and restart reading the client's socket: flow
    control (core/flow.py) holds a publisher whose messages reach a backed-up queue. Without
    them the publisher is bounded by queue limits and the memory alarm only.

    Once :meth:`teardown` has run, no reference cycle goes through the handler: the shell's
    callbacks are its only way back to the shell, so a shell that drops the handler when the
    transport is lost frees the whole connection by reference counting (issue 7).
    """

    def __init__(
        self,
        context: AmqpContext,
        peer_host: str,
        *,
        output_ready: Callable[[], None],
        pause_reading: Callable[[], None] | None = None,
        resume_reading: Callable[[], None] | None = None,
        login_answered: Callable[[list[Event]], None] | None = None,
    ) -> None:
        settings = context.settings
        self.context = context
        self.peer_host = peer_host
        self.output_ready = output_ready
        self._pause_reading = pause_reading
        self._resume_reading = resume_reading
        # After a login decided off the loop: the shell flushes, and closes a refused one.
        self._login_answered = login_answered
        self._login = PeerLogin(context.users, peer_host)
        self.conn = AMQPConnection(
            server_properties=context.server_properties,
            channel_max=settings.channel_max,
            frame_max=settings.frame_max,
            heartbeat=settings.heartbeat,
            authenticate=self._login,
            handshake_timeout=settings.handshake_timeout,
            close_timeout=settings.close_timeout,
        )
        self.vhost: VirtualHost | None = None
        self.user: User | None = None
        self.channels: dict[int, AmqpChannel] = {}
        # False while the socket's write buffer is full: consumers stop receiving.
        self.writable = True
        # Set by every publish; the shell checks the memory limit and clears it.
        self.published = False
        self.blocked = False
        self.cancel_notify = False
        self.torn_down = False
        self._counted = False
        self.confirm_dirty: list[AmqpChannel] = []
        # Flow control (core/flow.py), made when a publish first reaches a backed-up queue.
        self._flow: PublisherFlow | None = None

    # -- events ------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes to the machine and act on what comes out; returns the events."""
        events = self.conn.receive_data(data, self.context.clock())
        if events:
            hits = self.context.broker.flow.hits
            if hits:
                hits.clear()  # reached by earlier publishes, not by this batch
            self.handle_events(events)
            if hits:
                self._flow_hit()
        return events

    def handle_events(self, events: Sequence[Event]) -> None:
        channels = self.channels
        for event in events:
            # Most common first: a publish, then an ack.
            if type(event) is ContentReceived:
                ch = channels.get(event.channel)
                if ch is not None and ch.open:
                    ch.handle_contents(event.contents)
            elif isinstance(event, MethodReceived):
                ch = channels.get(event.channel)
                if ch is not None and ch.open:
                    ch.handle_method(event.method)
            elif isinstance(event, ChannelOpened):
                if not self.torn_down:
                    channels[event.channel] = AmqpChannel(self, event.channel)
            elif isinstance(event, ChannelClosed):
                closed = channels.pop(event.channel, None)
                if closed is not None:
                    closed.teardown()
            elif isinstance(event, OpenRequested):
                self._on_open(event.virtual_host)
            elif isinstance(event, LoginRequested):
                self._hash_password()
            elif isinstance(event, _ENDINGS):
                # The machine has closed (or is closing) the connection: its channels are gone.
                self.teardown()
        if self.confirm_dirty:
            self.flush_confirms()

    def flush_confirms(self) -> None:
        dirty = self.confirm_dirty
        self.confirm_dirty = []
        for ch in dirty:
            ch.flush_confirms()

    # -- login and virtual host --------------------------------------------------------------

    @property
    def refusal(self) -> str | None:
        """Why the login or the virtual host was refused, for the shell's log line."""
        return self._login.refusal

    def _hash_password(self) -> None:
        """Hash the login's password off the loop (`PeerLogin` said `LOGIN_PENDING`); the
        machine keeps what the client sends meanwhile, and reading stops."""
        pending = self._login.pending
        assert pending is not None  # `PeerLogin` said LOGIN_PENDING
        self._login.pending = None
        check, hasher = pending
        if self._pause_reading is not None:
            self._pause_reading()
        hasher.submit(check, functools.partial(self._password_hashed, check))

    def _password_hashed(self, check: PasswordCheck, matched: bool) -> None:
        conn = self.conn
        if self.torn_down or conn.closed:
            return  # the client left, or timed out, while its password was hashed
        try:
            user = self.context.users.finish_login(check, matched)
        except AuthenticationFailed as exc:
            self._login.refusal = exc.reason
            events = conn.refuse_login()
        else:
            events = conn.accept_login(user)  # and what the client sent meanwhile
        self.handle_events(events)
        if self._resume_reading is not None and not conn.closed:
            self._resume_reading()
        if self._login_answered is not None:
            self._login_answered(events)
        else:
            self.output_ready()

    def _on_open(self, name: str) -> None:
        context = self.context
        conn = self.conn
        user = conn.user
        assert isinstance(user, User)
        try:
            vhost = context.broker.vhost(name)
            context.users.check_vhost(user, name)
        except CoreError as exc:
            self._login.refusal = exc.explanation
            conn.refuse_open(exc.text, exc.code)
            return
        limit = context.settings.max_connections
        if context.connections >= limit:
            self._login.refusal = "connection limit reached"
            conn.refuse_open(
                f"NOT_ALLOWED - connection refused: node connection limit ({limit}) is reached",
                NOT_ALLOWED,
            )
            return
        self.vhost = vhost
        self.user = user
        context.connections += 1
        self._counted = True
        self.cancel_notify = conn.client_capabilities.get("consumer_cancel_notify") is True
        events = conn.open_ok()
        if events:
            self.handle_events(events)

    # -- flow control ------------------------------------------------------------------------

    def set_writable(self, writable: bool) -> None:
        self.writable = writable
        if writable:
            for ch in list(self.channels.values()):
                ch.resume_consumers()

    def block(self, reason: str = BLOCKED_REASON) -> None:
        """connection.blocked (to clients that announced the capability)."""
        if not self.blocked:
            self.blocked = True
            self.conn.send_blocked(reason)

    def unblock(self) -> None:
        if self.blocked:
            self.blocked = False
            self.conn.send_unblocked()

    def _flow_hit(self) -> None:
        """This batch published into queues over high water: stop reading until they drain.
        connection.blocked stays the memory alarm's: per-queue flow only stops reading."""
        if self.torn_down:
            self.context.broker.flow.hits.clear()
            return
        flow = self._flow
        if flow is None:
            pause, resume = self._pause_reading, self._resume_reading
            if pause is None or resume is None:
                self.context.broker.flow.hits.clear()  # no way to pause
                return
            flow = self._flow = PublisherFlow(
                self.context.broker.flow, self, pause=pause, resume=resume,
                subscriptions=self._subscriptions,
            )  # fmt: skip
        flow.after_batch()

    def _subscriptions(self) -> list[Subscription]:
        return [
            consumer.subscription
            for ch in self.channels.values()
            for consumer in ch.consumers.values()
            if consumer.subscription is not None
        ]

    # -- closing -----------------------------------------------------------------------------

    def close_connection(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        """A hard error: connection.close, and the channels are gone right away."""
        self.conn.close(code, text, class_id, method_id, now=self.context.clock())
        self.teardown()

    def internal_error(self) -> None:
        self.close_connection(INTERNAL_ERROR, "INTERNAL_ERROR - internal error")

    def shutdown(self) -> None:
        """The gateway is stopping: connection.close 320 CONNECTION_FORCED."""
        self.conn.close(now=self.context.clock())
        self.teardown()

    def teardown(self) -> None:
        """Cancel consumers, requeue unacked deliveries, drop exclusive queues (idempotent)."""
        if self.torn_down:
            return
        self.torn_down = True
        flow = self._flow
        if flow is not None:
            # It holds this handler (as owner, and through `_subscriptions`): a cycle.
            self._flow = None
            flow.close()
        channels = list(self.channels.values())
        self.channels.clear()
        self.confirm_dirty.clear()
        for ch in channels:
            ch.teardown()
        if self.vhost is not None:
            self.vhost.owner_closed(self)
        if self._counted:
            self._counted = False
            self.context.connections -= 1

    def connection_lost(self) -> None:
        self.teardown()
