"""The server side of an AMQP 0-9-1 connection, sans I/O.

Bytes go in through :meth:`AMQPConnection.receive_data`, which returns events; everything the
machine wants to send is buffered for :meth:`~AMQPConnection.data_to_send`. Time is an
argument: :meth:`~AMQPConnection.get_timer` says when to call
:meth:`~AMQPConnection.handle_timer` (heartbeats, handshake and close timeouts).

The machine owns the handshake (protocol header, start, tune, open), heartbeats, connection
and channel open/close bookkeeping and content assembly. Everything else on a channel comes out
as :class:`MethodReceived` or :class:`ContentReceived` for the channel layer. Once ``closed`` is
true the shell flushes :meth:`~AMQPConnection.data_to_send` and closes the transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pamqp.commands import Connection

from gateway.amqp.codec import parse_credentials
from gateway.amqp.connection_channels import ChannelTable
from gateway.amqp.connection_events import (
    ConnectionClosed,
    ConnectionState,
    Event,
    HandshakeTimedOut,
    HardErrorRaised,
    HeartbeatTimedOut,
    LoginRequested,
    OpenRequested,
    ProtocolHeaderRejected,
)
from gateway.amqp.connection_handshake import (
    HANDSHAKE_METHOD,
    LOGIN_PENDING,
    MAX_BODY_SIZE,
    MECHANISMS,
    NOT_READING,
    SERVER_CAPABILITIES,
    Authenticator,
    negotiate,
    shortstr_text,
)
from gateway.amqp.connection_output import ConnectionOutput
from gateway.amqp.fastpath import HEARTBEAT_FRAME
from gateway.amqp.frames import (
    BodyFrame,
    Frame,
    FrameDecoder,
    HeaderFrame,
    HeartbeatFrame,
    Method,
    MethodFrame,
    encode_method,
    method_ids,
)
from gateway.amqp.spec import (
    ACCESS_REFUSED,
    CLASS_CONNECTION,
    CONNECTION_FORCED,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    AMQPError,
    ChannelError,
    NotImplemented_,
    UnexpectedFrame,
)

# Enum member access costs ~130 ns on Python 3.11 (a descriptor call); the per-frame and
# per-delivery state checks compare against these instead.
_OPEN: Final = ConnectionState.OPEN
_CLOSED: Final = ConnectionState.CLOSED


class AMQPConnection(ConnectionOutput):
    """One client connection, server side (what it sends: :class:`ConnectionOutput`).

    ``authenticate(mechanism, username, password)`` returns the user (kept as ``user``), None
    to refuse, or ``LOGIN_PENDING`` to decide later. Without it, or when it decides later, the
    machine emits :class:`LoginRequested` and waits for :meth:`accept_login` or
    :meth:`refuse_login`, so the check can run off the event loop.
    :class:`OpenRequested` is always answered with :meth:`open_ok` or :meth:`refuse_open`.
    """

    def __init__(
        self,
        *,
        server_properties: Mapping[str, object] | None = None,
        channel_max: int = 2047,
        frame_max: int = 131072,
        heartbeat: int = 60,
        authenticate: Authenticator | None = None,
        handshake_timeout: float = 10.0,
        close_timeout: float = 3.0,
        max_body_size: int = MAX_BODY_SIZE,
    ) -> None:
        if frame_max and frame_max < FRAME_MIN_SIZE:
            raise ValueError(f"frame_max must be 0 or at least {FRAME_MIN_SIZE}")
        if not 0 <= channel_max <= 0xFFFF or not 0 <= heartbeat <= 0xFFFF:
            raise ValueError("channel_max and heartbeat must fit 16 bits")
        super().__init__()
        props: dict[str, object] = {"capabilities": dict(SERVER_CAPABILITIES)}
        props.update(server_properties or {})
        self._server_properties = props
        self._channel_max_limit = channel_max
        self._frame_max_limit = frame_max
        self._heartbeat_offer = heartbeat
        self._authenticate = authenticate
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout

        self.state = ConnectionState.AWAITING_HEADER
        # Negotiated values; until tune-ok the spec's minimum frame size applies.
        self.channel_max = channel_max
        self.frame_max = FRAME_MIN_SIZE
        self.heartbeat = 0
        self.mechanism: str | None = None
        self.user: object | None = None
        self.virtual_host: str | None = None
        self.client_properties: dict[str, object] = {}
        self.client_capabilities: dict[str, object] = {}

        self._decoder = FrameDecoder(frame_max=FRAME_MIN_SIZE)
        # The table answers with the frames to send instead of holding our `_write`: a bound
        # method there would make a reference cycle that only the cyclic collector frees.
        self._channels = ChannelTable(max_body_size)
        self._now: float | None = None
        self._last_received = 0.0
        self._next_heartbeat: float | None = None
        self._started = False
        self._handshake_deadline: float | None = None
        self._close_deadline: float | None = None
        self._close_reason: tuple[int, str, int, int] = (0, "", 0, 0)

    # -- status --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def open_channels(self) -> list[int]:
        return self._channels.open_numbers()

    # -- input ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The transport connected: start the handshake timeout (else the first data does)."""
        self._now = now
        if not self._started:
            self._started = True
            self._handshake_deadline = now + self._handshake_timeout

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if not self._started:
            self.start(now)
        self._now = now
        events: list[Event] = []
        if self.state is _CLOSED:
            return events
        if data:
            self._last_received = now
            self._decoder.append(data)
        self._pump(events)
        return events

    def _pump(self, events: list[Event]) -> None:
        decoder = self._decoder
        channels = self._channels
        while True:
            state = self.state
            # OPEN first: hashing an Enum member for the set lookup runs Python code.
            if state is not _OPEN and state in NOT_READING:
                return
            try:
                if state is _OPEN:
                    # Whole publishes in one go; anything else frame by frame. Only an
                    # exception (handled below) changes the state in on_contents.
                    contents = decoder.next_publishes()
                    if contents is not None:
                        next_publishes = decoder.next_publishes
                        on_contents = channels.on_contents
                        while contents is not None:
                            on_contents(contents, events)
                            contents = next_publishes()
                        continue
                frame = decoder.next_frame()
                if frame is None:
                    return
                self._handle(frame, events)
            except AMQPError as err:
                self._fail(err, events)

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        if isinstance(frame, MethodFrame):
            if not frame.channel:
                self._on_connection_method(frame.method, events)
            elif self._channel_frames_allowed(frame):
                reply = self._channels.on_method(frame.channel, frame.method, events)
                if reply is not None:
                    self._write(reply)
        elif isinstance(frame, BodyFrame):
            if self._channel_frames_allowed(frame):
                self._channels.on_body(frame.channel, frame.payload, events)
        elif isinstance(frame, HeaderFrame):
            if self._channel_frames_allowed(frame):
                self._channels.on_header(frame.channel, frame.header, events)
        elif isinstance(frame, HeartbeatFrame):
            if frame.channel:
                raise UnexpectedFrame(f"heartbeat frame on channel {frame.channel}")
        else:
            self._on_protocol_header(frame.raw, events)

    def _channel_frames_allowed(self, frame: MethodFrame | HeaderFrame | BodyFrame) -> bool:
        if self.state is _OPEN and frame.channel:
            return True
        if frame.channel == 0:
            raise UnexpectedFrame("content frame on channel 0")
        if self.state is ConnectionState.CLOSING:
            return False  # everything but connection.close/close-ok is discarded
        raise UnexpectedFrame(f"frame on channel {frame.channel} before connection.open-ok")

    # -- connection class ----------------------------------------------------------------

    def _on_protocol_header(self, raw: bytes, events: list[Event]) -> None:
        if raw != PROTOCOL_HEADER:
            self._write(PROTOCOL_HEADER)
            self.state = ConnectionState.CLOSED
            events.append(ProtocolHeaderRejected(raw))
            return
        start = Connection.Start(
            0,
            9,
            server_properties=self._server_properties,  # type: ignore[arg-type]
            mechanisms=MECHANISMS,
            locales="en_US",
        )
        self._write(encode_method(0, start))
        self.state = ConnectionState.STARTING

    def _on_connection_method(self, method: Method, events: list[Event]) -> None:
        if isinstance(method, Connection.Close):
            self._write(encode_method(0, Connection.CloseOk()))
            self._channels.clear()
            self.state = ConnectionState.CLOSED
            events.append(
                ConnectionClosed(
                    method.reply_code or 0,
                    method.reply_text or "",
                    method.class_id or 0,
                    method.method_id or 0,
                    by_peer=True,
                )
            )
            return
        state = self.state
        if state is ConnectionState.CLOSING:
            if isinstance(method, Connection.CloseOk):
                self._finish_close(events)
            return
        expected = HANDSHAKE_METHOD.get(state)
        if expected is not None and isinstance(method, expected):
            if isinstance(method, Connection.StartOk):
                self._on_start_ok(method, events)
            elif isinstance(method, Connection.TuneOk):
                self._on_tune_ok(method)
            elif isinstance(method, Connection.Open):
                self.virtual_host = method.virtual_host
                self.state = ConnectionState.OPEN_PENDING
                events.append(OpenRequested(method.virtual_host))
            return
        if state is ConnectionState.OPEN and isinstance(method, Connection.UpdateSecret):
            raise NotImplemented_("connection.update_secret is not supported", *method_ids(method))
        raise ChannelError(
            f"unexpected method {method.name} in connection state {state.value}",
            *method_ids(method),
        )

    def _on_start_ok(self, method: Connection.StartOk, events: list[Event]) -> None:
        client_properties: object = method.client_properties
        if isinstance(client_properties, dict):
            self.client_properties = client_properties
            capabilities = client_properties.get("capabilities")
            if isinstance(capabilities, dict):
                self.client_capabilities = capabilities
        self.mechanism = method.mechanism
        response: object = method.response
        username, password = parse_credentials(method.mechanism, response)
        user = (
            LOGIN_PENDING
            if self._authenticate is None
            else self._authenticate(method.mechanism, username, password)
        )
        if user is LOGIN_PENDING:
            self.state = ConnectionState.AUTHENTICATING
            events.append(LoginRequested(method.mechanism, username, password))
            return
        if user is None:
            self._refuse_login(events)
        else:
            self._accept_login(user)

    def _accept_login(self, user: object) -> None:
        self.user = user
        tune = Connection.Tune(
            channel_max=self._channel_max_limit,
            frame_max=self._frame_max_limit,
            heartbeat=self._heartbeat_offer,
        )
        self._write(encode_method(0, tune))
        self.state = ConnectionState.TUNING

    def _refuse_login(self, events: list[Event]) -> None:
        text = (
            f"ACCESS_REFUSED - Login was refused using authentication mechanism "
            f"{self.mechanism}. For details see the broker logfile."
        )
        # As RabbitMQ: only a client that announced authentication_failure_close is told why;
        # older clients just see the socket close.
        if self.client_capabilities.get("authentication_failure_close") is True:
            self._write(encode_method(0, Connection.Close(ACCESS_REFUSED, text, 0, 0)))
        self._close_reason = (ACCESS_REFUSED, text, 0, 0)
        self._finish_close(events)

    def _on_tune_ok(self, method: Connection.TuneOk) -> None:
        channel_max = negotiate("channel_max", method.channel_max, 1, self._channel_max_limit)
        frame_max = negotiate("frame_max", method.frame_max, FRAME_MIN_SIZE, self._frame_max_limit)
        self.channel_max = channel_max or 0xFFFF
        self._channels.channel_max = self.channel_max
        self.frame_max = frame_max
        self._decoder.frame_max = frame_max
        # The client's tune-ok value is the one in force (it picks the lower non-zero offer).
        self.heartbeat = method.heartbeat
        if self.heartbeat and self._now is not None:
            self._last_received = self._now
            self._next_heartbeat = self._now + self.heartbeat / 2
        self.state = ConnectionState.OPENING

    # -- answers from the shell ----------------------------------------------------------

    def _awaiting(self, state: ConnectionState) -> bool:
        if self.state is state:
            return True
        if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            return False  # the connection died while the shell was deciding
        raise RuntimeError(f"not waiting for that answer in state {self.state.value}")

    def accept_login(self, user: object) -> list[Event]:
        events: list[Event] = []
        if self._awaiting(ConnectionState.AUTHENTICATING):
            self._accept_login(user)
            self._pump(events)
        return events

    def refuse_login(self) -> list[Event]:
        events: list[Event] = []
        if self._awaiting(ConnectionState.AUTHENTICATING):
            self._refuse_login(events)
        return events

    def open_ok(self) -> list[Event]:
        """Grant the requested virtual host; returns events for input that was waiting."""
        events: list[Event] = []
        if self._awaiting(ConnectionState.OPEN_PENDING):
            self._write(encode_method(0, Connection.OpenOk()))
            self.state = ConnectionState.OPEN
            self._handshake_deadline = None
            self._pump(events)
        return events

    def refuse_open(self, text: str, code: int = NOT_ALLOWED) -> None:
        """Refuse the virtual host, e.g. ``"NOT_ALLOWED - vhost x not found"``."""
        if self._awaiting(ConnectionState.OPEN_PENDING):
            self.close(code, text, CLASS_CONNECTION, 40)

    def reset_heartbeat_monitor(self, now: float) -> None:
        """Count the client as heard from at ``now``.

        For a shell that stopped reading on purpose (connection.blocked): the client's
        heartbeats wait unread in the socket, which is no reason to declare it dead.
        """
        self._last_received = now

    # -- closing -------------------------------------------------------------------------

    def close_channel(
        self, channel: int, code: int, text: str, class_id: int = 0, method_id: int = 0
    ) -> bool:
        """Send channel.close (a soft error); the channel is gone once the client confirms."""
        if not self.is_channel_open(channel):
            return False
        frame = self._channels.close(channel, code, shortstr_text(text), class_id, method_id)
        if frame is None:
            return False
        self._write(frame)
        return True

    def close(
        self,
        code: int = CONNECTION_FORCED,
        text: str = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        class_id: int = 0,
        method_id: int = 0,
        *,
        now: float | None = None,
    ) -> None:
        """Send connection.close (hard error or shutdown) and wait for close-ok."""
        if now is not None:
            self._now = now
        if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            return
        if self.state is ConnectionState.AWAITING_HEADER:
            self.state = ConnectionState.CLOSED  # nothing can be said before the header
            return
        text = shortstr_text(text)
        self._write(encode_method(0, Connection.Close(code, text, class_id, method_id)))
        self._close_reason = (code, text, class_id, method_id)
        self._channels.clear()
        self.state = ConnectionState.CLOSING
        self._handshake_deadline = None  # the close timeout governs from here
        if self._now is not None:
            self._close_deadline = self._now + self._close_timeout

    def _fail(self, err: AMQPError, events: list[Event]) -> None:
        broken = self._decoder.broken is not None
        if self.state is ConnectionState.CLOSING:
            if broken:
                self._finish_close(events)
            return
        events.append(HardErrorRaised(err))
        self.close(err.code, err.reply_text, err.class_id, err.method_id)
        if broken:
            # The stream lost its framing: no close-ok can be read from it.
            self._finish_close(events)

    def _finish_close(self, events: list[Event]) -> None:
        self._channels.clear()
        self.state = ConnectionState.CLOSED
        self._close_deadline = None
        events.append(ConnectionClosed(*self._close_reason, by_peer=False))

    # -- timers --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        state = self.state
        if state is ConnectionState.CLOSED:
            return None
        deadlines: list[float] = []
        if self._close_deadline is not None:
            deadlines.append(self._close_deadline)
        if self._handshake_deadline is not None:
            deadlines.append(self._handshake_deadline)
        if self.heartbeat and self._next_heartbeat is not None:
            deadlines.append(self._next_heartbeat)
            deadlines.append(self._last_received + 2 * self.heartbeat)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Event]:
        self._now = now
        events: list[Event] = []
        state = self.state
        if state is ConnectionState.CLOSED:
            return events
        if self._close_deadline is not None and now >= self._close_deadline:
            self._finish_close(events)
            return events
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self.state = ConnectionState.CLOSED
            events.append(HandshakeTimedOut(state))
            return events
        if self.heartbeat and self._next_heartbeat is not None:
            # Two heartbeat intervals without a single octet from the client.
            if now - self._last_received >= 2 * self.heartbeat:
                self._channels.clear()
                self.state = ConnectionState.CLOSED
                events.append(HeartbeatTimedOut(self.heartbeat))
                return events
            if now >= self._next_heartbeat:
                # As RabbitMQ: a heartbeat only when nothing else went out in the last half
                # interval.
                if not self._sent_since_tick:
                    self._out.append(HEARTBEAT_FRAME)
                self._sent_since_tick = False
                self._next_heartbeat = now + self.heartbeat / 2
        return events
