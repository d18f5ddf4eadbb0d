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
from typing import Any

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
from gateway.net import (
    ConnectionRegistry,
    FlushScheduler,
    MachineProtocol,
    MemoryAlarm,
    StreamServer,
)

log = structlog.get_logger("gateway.amqp")


class AmqpProtocol(MachineProtocol):
    def __init__(
        self,
        context: AmqpContext,
        registry: ConnectionRegistry,
        flusher: FlushScheduler[AmqpProtocol],
        alarm: MemoryAlarm[AmqpProtocol],
    ) -> None:
        super().__init__(registry, flusher, alarm, context.clock)
        self.context = context
        self.handler: AmqpConnectionHandler | None = None
        self.peer = "unknown"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        host, self.peer = self._attach(transport)
        self.handler = AmqpConnectionHandler(
            self.context, host, output_ready=self._output_ready,
            pause_reading=self._pause_reading, resume_reading=self._flow_resumed,
            login_answered=self._login_answered,
        )  # fmt: skip
        self.handler.conn.start(self.clock())
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None or self._closing:
            return
        self._start_read()
        try:
            events = handler.receive(data)
            if handler.torn_down:
                # Only a closing connection has anything to log: no scan per message.
                self._log_events(events)
        except Exception:
            log.exception("amqp.internal_error", peer=self.peer)
            handler.internal_error()
        finally:
            self._stop_read()
        if handler.published:
            handler.published = False
            self.alarm.published(self)
        self._after_read(handler.conn.closed)

    def _login_answered(self, events: list[Event]) -> None:
        """A password hashed off the loop was answered (`AmqpConnectionHandler`): what a read's
        end does, for the tune or the refusal and for the input that waited."""
        handler = self.handler
        if handler is None:
            return
        if handler.torn_down:
            self._log_events(events)
        self._after_read(handler.conn.closed)

    # -- MachineProtocol hooks ---------------------------------------------------------------

    def _machine_timer(self) -> float | None:
        return None if self.handler is None else self.handler.conn.get_timer()

    def _timer_due(self, now: float) -> bool:
        handler = self.handler
        if handler is None:
            return True
        conn = handler.conn
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
        return conn.closed

    def _write_pending(self, transport: asyncio.Transport) -> None:
        if self.handler is not None:
            chunks = self.handler.conn.data_to_send_chunks()
            if chunks:
                transport.writelines(chunks)

    def _set_writable(self, writable: bool) -> None:
        if self.handler is not None:
            self.handler.set_writable(writable)

    def _lost(self) -> None:
        handler = self.handler
        if handler is not None:
            handler.connection_lost()
            # The handler holds this protocol's bound methods (output_ready, pause and resume
            # reading): without this reference cycle a dropped connection is freed by
            # reference counting at once, not by the cyclic collector, which `GC_THRESHOLDS`
            # makes rare (issue 7, as MqttProtocol._lost).
            self.handler = None

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

    # -- memory alarm (connection.blocked to clients that asked, no reads), flow control -----

    def block(self) -> None:
        if self.handler is None or self.transport is None or self._closing:
            return
        self.handler.block()
        self.flush()
        self._pause_reading()

    def unblock(self) -> None:
        if self.handler is None or self.transport is None or self._closing:
            return
        self.handler.unblock()
        self.flush()
        self._resume_reading()

    def _flow_resumed(self) -> None:
        """Flow control let this publisher go (it paused with ``_pause_reading``, no
        connection.blocked). While the memory alarm is raised the alarm takes it over instead,
        and resumes it once the queues drain below the global limit."""
        if self.alarm.alarmed:
            self.alarm.published(self)
        else:
            self.unblock()

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
        self._rearm_timer()
        self._resume_reading()  # let close-ok in


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
