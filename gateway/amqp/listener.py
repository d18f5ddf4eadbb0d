"""AMQP 0-9-1 over TCP (and TLS): an asyncio.Protocol around the connection handler.

Per read: feed the machine, let the handler act, write what the machine has in one
``writelines`` call. Deliveries caused by other connections mark this one dirty; dirty
connections are flushed together on the next loop turn. Back-pressure both ways is the
socket's: ``pause_writing`` stops this connection's consumers, and while the broker holds more
than ``memory_limit`` bytes of queued bodies, connections that publish stop being read (and
clients that asked for it get ``connection.blocked``).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

import structlog

from gateway.amqp.channel_connection import AmqpConnectionHandler
from gateway.amqp.channel_context import AmqpContext
from gateway.amqp.connection_events import (
    ConnectionClosed,
    Event,
    HandshakeTimedOut,
    HardErrorRaised,
    HeartbeatTimedOut,
    ProtocolHeaderRejected,
)
from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm, StreamServer

log = structlog.get_logger("gateway.amqp")


class AmqpProtocol(asyncio.Protocol):
    def __init__(
        self,
        context: AmqpContext,
        registry: ConnectionRegistry,
        flusher: FlushScheduler[AmqpProtocol],
        monitor: MemoryAlarm[AmqpProtocol],
    ) -> None:
        self.context = context
        self.registry = registry
        self.flusher = flusher
        self.monitor = monitor
        self.transport: asyncio.Transport | None = None
        self.handler: AmqpConnectionHandler | None = None
        self.peer = "unknown"
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_receive = False
        self._marked = False
        self._closing = False
        self._reading_paused = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else "unix"
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]}:{peer[1]}"
        self.handler = AmqpConnectionHandler(self.context, host, output_ready=self._output_ready)
        self.handler.conn.start(self.context.clock())
        self.registry.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None or self._closing:
            return
        self._in_receive = True
        try:
            events = handler.receive(data)
            if handler.torn_down:
                # Only a closing connection has anything to log: no scan per message.
                self._log_events(events)
        except Exception:
            log.exception("amqp.internal_error", peer=self.peer)
            handler.internal_error()
        finally:
            self._in_receive = False
        if handler.published:
            handler.published = False
            self.monitor.published(self)
        self.flush()
        if handler.conn.closed:
            self._close_after_flush()
            return
        # tune-ok may have set a heartbeat that is due before the handshake timeout.
        deadline = handler.conn.get_timer()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._arm_timer()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.handler is not None:
            self.handler.connection_lost()
        self.monitor.discard(self)
        self.registry.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.set_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.set_writable(True)
            self._output_ready()

    # -- logging (connection events only, never per message) ---------------------------------

    def _log_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, HardErrorRaised):
                log.info("amqp.protocol_error", peer=self.peer, error=str(event.error))
            elif isinstance(event, ConnectionClosed):
                handler = self.handler
                refusal = handler.refusal if handler is not None else None
                if refusal is not None:
                    log.info("amqp.connection_refused", peer=self.peer, reason=refusal)
                elif not event.by_peer:
                    log.info("amqp.connection_closed", peer=self.peer, reason=event.reply_text)
            elif isinstance(event, HeartbeatTimedOut | HandshakeTimedOut | ProtocolHeaderRejected):
                log.info("amqp.connection_dropped", peer=self.peer, reason=type(event).__name__)

    # -- output ------------------------------------------------------------------------------

    def _output_ready(self) -> None:
        if not self._in_receive and not self._marked:
            self._marked = True
            self.flusher.mark(self)

    def flush(self) -> None:
        self._marked = False
        handler, transport = self.handler, self.transport
        if handler is None or transport is None:
            return
        chunks = handler.conn.data_to_send_chunks()
        if chunks:
            transport.writelines(chunks)

    def _close_after_flush(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()  # flushes buffered data first

    # -- memory alarm ------------------------------------------------------------------------

    def block(self) -> None:
        handler, transport = self.handler, self.transport
        if handler is None or transport is None or self._closing:
            return
        handler.block()
        self.flush()
        if not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()

    def unblock(self) -> None:
        handler, transport = self.handler, self.transport
        if handler is None or transport is None or self._closing:
            return
        handler.unblock()
        self.flush()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # -- timers (heartbeats, handshake and close timeouts) -----------------------------------

    def _arm_timer(self) -> None:
        handler = self.handler
        if handler is None:
            return
        deadline = handler.conn.get_timer()
        self._timer_at = deadline
        if deadline is None:
            return
        delay = max(0.0, deadline - self.context.clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        handler = self.handler
        if handler is None or self._closing:
            return
        conn = handler.conn
        now = self.context.clock()
        if self._reading_paused:
            # Not reading is our doing: the client's heartbeats wait in the socket.
            conn.reset_heartbeat_monitor(now)
        try:
            events = conn.handle_timer(now)
            if events:
                self._log_events(events)
                handler.handle_events(events)
        except Exception:
            log.exception("amqp.internal_error", peer=self.peer)
            handler.internal_error()
        self.flush()
        if conn.closed:
            self._close_after_flush()
            return
        self._arm_timer()

    # -- LiveConnection (shutdown) -----------------------------------------------------------

    def shutdown(self) -> None:
        handler = self.handler
        if handler is None:
            return
        handler.shutdown()
        self.flush()
        if handler.conn.closed:
            self._close_after_flush()
            return
        # The close timeout is now the deadline that matters.
        if self._timer is not None:
            self._timer.cancel()
        self._arm_timer()
        if self._reading_paused and self.transport is not None:
            # Let close-ok in.
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def start_amqp_server(
    context: AmqpContext,
    host: str,
    port: int,
    *,
    name: str = "amqp",
    ssl_context: ssl.SSLContext | None = None,
    alarm: MemoryAlarm[Any] | None = None,
) -> StreamServer:
    """Bind an AMQP listener for ``context`` (several listeners may share one context and one
    memory alarm; without one, the listener gets its own)."""
    loop = asyncio.get_running_loop()
    flusher: FlushScheduler[AmqpProtocol] = FlushScheduler(loop)
    if alarm is None:
        broker = context.broker
        alarm = MemoryAlarm(lambda: broker.queued_bytes, context.settings.memory_limit, loop)
    monitor = alarm
    server = StreamServer(name, lambda registry: AmqpProtocol(context, registry, flusher, monitor))
    await server.start(host, port, ssl_context)
    return server
