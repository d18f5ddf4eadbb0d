"""The asyncio side shared by the listeners: bound servers, live connections, ordered shutdown.

A protocol listener provides an `asyncio.Protocol` factory whose protocols register themselves
here while they are connected. Shutdown is the STYLE.md order: stop accepting, ask every live
connection to say goodbye in its own protocol (AMQP close 320, MQTT 5 DISCONNECT 0x8B), wait up
to a grace period for them to go, then abort whatever is left.
"""

from __future__ import annotations

import asyncio
import functools
import math
import ssl
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import structlog

log = structlog.get_logger("gateway")

# How often a raised memory alarm looks whether the queues have drained below the limit.
ALARM_POLL_INTERVAL = 0.05


class LiveConnection(Protocol):
    """What a listener's protocol object offers the server for shutdown."""

    def shutdown(self) -> None:
        """Tell the peer the server is going away, flush, and close the transport."""

    def abort(self) -> None:
        """Drop the transport without ceremony (the grace period is over)."""


class Flushable(Protocol):
    def flush(self) -> None: ...


class Blockable(Protocol):
    def block(self) -> None:
        """Stop reading from this client (and tell it, where the protocol can)."""

    def unblock(self) -> None: ...


F = TypeVar("F", bound=Flushable)
B = TypeVar("B", bound=Blockable)


class FlushScheduler(Generic[F]):
    """Connections with pending output, flushed together once per loop turn: a fan-out of N
    deliveries caused by one read costs one write per receiving connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: dict[F, None] = {}
        self._scheduled = False
        # The listener's connections reach their loop's timer wheel through here: looked up
        # once, not per connect (issue 7, S7).
        self.wheel = TimerWheel.of(loop)

        # True while one of this listener's connections handles a read: what the read
        # delivers to the others is written at its end (`flush_marked`), not a loop turn
        # later. A read carries every message the socket had, so this coalesces as well
        # under load and saves a scheduled callback per message at low rates (S6 latency).
        self.reading = False

    def mark(self, connection: F) -> None:
        self._dirty[connection] = None
        if not self._scheduled and not self.reading:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self.flush_marked()

    def flush_marked(self) -> None:
        """Write every marked connection now."""
        dirty = self._dirty
        if dirty:
            self._dirty = {}
            for connection in dirty:
                connection.flush()


class MemoryAlarm(Generic[B]):
    """One alarm for the whole gateway: while queued bodies exceed `limit` bytes, every
    connection that publishes stops being read until the queues drain (DESIGN.md section 9)."""

    def __init__(
        self, queued_bytes: Callable[[], int], limit: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._queued_bytes = queued_bytes
        self.limit = limit
        self._loop = loop
        self.alarmed = False
        self._blocked: dict[B, None] = {}
        self._poll: asyncio.TimerHandle | None = None

    def over_limit(self) -> bool:
        return self._queued_bytes() > self.limit

    def published(self, connection: B) -> None:
        """`connection` just published: block it if the alarm is (or now goes) off."""
        if not self.alarmed:
            if self._queued_bytes() <= self.limit:
                return
            self.alarmed = True
            log.warning("memory_alarm.raised", queued_bytes=self._queued_bytes(), limit=self.limit)
            self._poll = self._loop.call_later(ALARM_POLL_INTERVAL, self._check)
        if connection not in self._blocked:
            self._blocked[connection] = None
            connection.block()

    def discard(self, connection: B) -> None:
        self._blocked.pop(connection, None)

    def _check(self) -> None:
        self._poll = None
        if self.over_limit():
            self._poll = self._loop.call_later(ALARM_POLL_INTERVAL, self._check)
            return
        self.alarmed = False
        log.info("memory_alarm.cleared", queued_bytes=self._queued_bytes())
        blocked = list(self._blocked)
        self._blocked.clear()
        for connection in blocked:
            connection.unblock()

    def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None


class TimerWheel:
    """The connections' machine timers on one loop, rounded up to `RESOLUTION` seconds: one
    loop timer per occupied tick instead of a TimerHandle per connection. Keep-alive, connect
    timeout and heartbeat deadlines need no finer grain, and an idle connection's timer costs
    a dict entry (issue 7, S7: thousands of idle MQTT connections)."""

    RESOLUTION = 0.05
    _wheels: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel]] = (
        weakref.WeakKeyDictionary()
    )

    # A weak reference to the loop: a strong one would keep its own entry in `_wheels` alive.
    __slots__ = ("_handles", "_last_tick", "_loop", "_ticks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._ticks: dict[int, dict[MachineProtocol, None]] = {}
        self._handles: dict[int, asyncio.TimerHandle] = {}
        # The tick last occupied, handed out again for the same tick: each protocol keeps its
        # tick, and one int object shared by a burst of connects is 32 bytes less each (S7).
        self._last_tick = 0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> TimerWheel:
        wheel = cls._wheels.get(loop)
        if wheel is None:
            wheel = cls._wheels[loop] = cls(loop)
        return wheel

    def schedule(self, delay: float, protocol: MachineProtocol) -> int:
        """Call `protocol._on_timer()` at least `delay` seconds from now; returns the tick."""
        loop = self._loop()
        assert loop is not None, "the wheel outlived its loop"
        tick = math.ceil((loop.time() + delay) / self.RESOLUTION)
        members = self._ticks.get(tick)
        if members is None:
            members = self._ticks[tick] = {}
            self._handles[tick] = loop.call_at(tick * self.RESOLUTION, self._fire, tick)
            self._last_tick = tick
        elif tick == self._last_tick:
            tick = self._last_tick
        members[protocol] = None
        return tick

    def cancel(self, tick: int, protocol: MachineProtocol) -> None:
        members = self._ticks.get(tick)
        if members is None:
            return
        members.pop(protocol, None)
        if not members:
            del self._ticks[tick]
            self._handles.pop(tick).cancel()

    def _fire(self, tick: int) -> None:
        self._handles.pop(tick, None)
        for protocol in self._ticks.pop(tick, {}):
            try:
                protocol._on_timer()
            except Exception:  # one connection's failure must not skip the others' timers
                log.exception("connection_timer_failed")


class MachineProtocol(asyncio.Protocol):
    """The asyncio side of one sans-I/O connection, shared by the MQTT and AMQP listeners.

    It owns what is the same for both protocols: registration for shutdown, write coalescing
    (`_output_ready` marks the connection for one flush per loop turn), write back-pressure
    (`_set_writable`), read pausing for the memory alarm, and one timer that follows the
    machine's `get_timer()`. Subclasses say how to drain the machine, run its timer and react
    to a lost transport.
    """

    # One per client connection: slots keep an idle connection small (issue 7, S7). The event
    # loop may hold weak references to protocols.
    __slots__ = (
        "__weakref__",
        "_closing",
        "_in_receive",
        "_marked",
        "_reading_paused",
        "_timer",
        "_timer_at",
        "alarm",
        "clock",
        "flusher",
        "registry",
        "transport",
    )

    def __init__(
        self,
        registry: ConnectionRegistry,
        flusher: FlushScheduler[Any],
        alarm: MemoryAlarm[Any],
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.flusher = flusher
        self.alarm = alarm
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self._timer: int | None = None  # the TimerWheel tick the machine's timer is due at
        self._timer_at: float | None = None
        self._in_receive = False
        self._marked = False
        self._closing = False
        self._reading_paused = False

    # -- what a protocol supplies --------------------------------------------------------------

    def _machine_timer(self) -> float | None:
        """The machine's next deadline (`get_timer()`), or None."""
        raise NotImplementedError

    def _timer_due(self, now: float) -> bool:
        """Run the machine's timer; True when the connection is now closed."""
        raise NotImplementedError

    def _write_pending(self, transport: asyncio.Transport) -> None:
        """Write whatever the machine has queued."""
        raise NotImplementedError

    def _set_writable(self, writable: bool) -> None:
        """Socket back-pressure: stop (or resume) giving this client messages."""
        raise NotImplementedError

    def _lost(self) -> None:
        """The transport is gone: end the protocol session."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """The gateway is stopping: say goodbye in the protocol, flush, close."""
        raise NotImplementedError

    # -- asyncio callbacks ---------------------------------------------------------------------

    def _attach(self, transport: asyncio.BaseTransport) -> tuple[str, str]:
        """Keep the transport and register; returns (peer host, "host:port")."""
        peer = self._attach_peer(transport)
        if isinstance(peer, tuple):
            return str(peer[0]), f"{peer[0]}:{peer[1]}"
        return "unix", "unix"

    def _attach_host(self, transport: asyncio.BaseTransport) -> str:
        """`_attach` for a protocol that needs the peer host only (no "host:port" string)."""
        # `_attach_peer` inlined: this runs once per connect (issue 7, S7).
        self.transport = transport  # type: ignore[assignment]  # as in _attach_peer
        self.registry.add(self)
        peer = transport.get_extra_info("peername")
        return str(peer[0]) if type(peer) is tuple else "unix"

    def _attach_peer(self, transport: asyncio.BaseTransport) -> object:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.registry.add(self)
        return transport.get_extra_info("peername")

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self.flusher.wheel.cancel(self._timer, self)
            self._timer = None
        self._lost()
        self.alarm.discard(self)
        self.registry.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._set_writable(False)

    def resume_writing(self) -> None:
        self._set_writable(True)
        self._output_ready()

    # -- output --------------------------------------------------------------------------------

    def _output_ready(self) -> None:
        if not self._in_receive and not self._marked:
            self._marked = True
            self.flusher.mark(self)

    def flush(self) -> None:
        self._marked = False
        transport = self.transport
        if transport is not None:
            self._write_pending(transport)

    def _close_after_flush(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()  # flushes buffered data first

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _start_read(self) -> None:
        """A read begins: what it delivers to this listener's other connections waits for
        `_after_read` instead of a loop callback (FlushScheduler.reading)."""
        self._in_receive = True
        self.flusher.reading = True

    def _stop_read(self) -> None:
        self._in_receive = False
        self.flusher.reading = False

    def _after_read(self, closed: bool) -> None:
        """End of one read: flush this connection and those the read delivered to, close if
        the machine closed, follow an earlier deadline."""
        self.flush()
        self.flusher.flush_marked()
        if closed:
            self._close_after_flush()
            return
        # The handshake may have set a keep-alive/heartbeat due before the current timer.
        deadline = self._machine_timer()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._rearm_timer()

    # -- reading (memory alarm) ------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- the machine's timer ---------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self._machine_timer()
        self._timer_at = deadline
        if deadline is None:
            return
        self._timer = self.flusher.wheel.schedule(max(0.0, deadline - self.clock()), self)

    def _arm_timer_at(self, deadline: float, delay: float) -> None:
        """`_arm_timer` when the caller knows the machine's deadline and how far it is (a
        connect timeout just set: no need to ask the machine and the clock again)."""
        self._timer_at = deadline
        self._timer = self.flusher.wheel.schedule(delay, self)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closing:
            return
        closed = self._timer_due(self.clock())
        self.flush()
        if closed:
            self._close_after_flush()
            return
        self._arm_timer()

    def _rearm_timer(self) -> None:
        if self._timer is not None:
            self.flusher.wheel.cancel(self._timer, self)
            self._timer = None
        self._arm_timer()


class ConnectionRegistry:
    """Live connections of one listener, so shutdown can reach each of them."""

    def __init__(self) -> None:
        # A dict as an ordered set: at thousands of idle connections its table costs about
        # half a set's (S7).
        self._live: dict[LiveConnection, None] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._live))

    def add(self, connection: LiveConnection) -> None:
        live = self._live
        if not live:
            self._empty.clear()  # set exactly while `_live` is empty
        live[connection] = None

    def discard(self, connection: LiveConnection) -> None:
        self._live.pop(connection, None)
        if not self._live:
            self._empty.set()

    async def close_all(self, grace: float) -> None:
        for connection in list(self._live):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout=grace)
        except TimeoutError:
            for connection in list(self._live):
                connection.abort()
            # Give connection_lost callbacks one loop turn to run.
            await asyncio.sleep(0)


class StreamServer:
    """A bound TCP (or TLS) listener with its live connections; satisfies app.Server."""

    def __init__(
        self,
        name: str,
        protocol_factory: Callable[[ConnectionRegistry], asyncio.Protocol],
    ) -> None:
        self.name = name
        self.connections = ConnectionRegistry()
        self._protocol_factory = protocol_factory
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            # A partial, not a lambda: one Python frame less per accepted connection (S7).
            functools.partial(self._protocol_factory, self.connections),
            host=host,
            port=port,
            ssl=ssl_context,
            reuse_address=True,
            backlog=1024,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close_connections(self, grace: float) -> None:
        await self.connections.close_all(grace)
        self._server = None


def make_server_ssl_context(certfile: str, keyfile: str, cafile: str | None) -> ssl.SSLContext:
    """TLS for mqtts/amqps; client certificates are verified only when a CA file is given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
