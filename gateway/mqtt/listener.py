"""MQTT over TCP (and TLS): an asyncio.Protocol around the sans-I/O machine and the handler.

Per read: feed the machine, let the handler act, write what the machine has in one call.
Deliveries caused by other connections mark this one dirty; all dirty connections are flushed
together on the next loop turn, so a fan-out of N messages costs one write per subscriber.
Back-pressure is the socket's: `pause_writing` makes the session refuse deliveries.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

import structlog

from gateway.mqtt.connection import MqttConnection, ProtocolViolation
from gateway.mqtt.session_handler import ClientHandler
from gateway.mqtt.session_hub import MqttHub
from gateway.net import ConnectionRegistry, FlushScheduler, MemoryAlarm, StreamServer

log = structlog.get_logger("gateway.mqtt")


class MqttProtocol(asyncio.Protocol):
    def __init__(
        self,
        hub: MqttHub,
        registry: ConnectionRegistry,
        flusher: FlushScheduler[MqttProtocol],
        alarm: MemoryAlarm[MqttProtocol],
    ) -> None:
        self.hub = hub
        self.registry = registry
        self.flusher = flusher
        self.alarm = alarm
        self._reading_paused = False
        self.transport: asyncio.Transport | None = None
        self.conn: MqttConnection | None = None
        self.handler: ClientHandler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_receive = False
        self._closing = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else "unix"
        settings = self.hub.settings
        now = self.hub.clock()
        self.conn = MqttConnection(
            max_packet_size=settings.max_packet_size,
            server_keep_alive=None,
            connect_timeout=settings.connect_timeout,
            now=now,
        )
        self.handler = ClientHandler(
            self.hub, self.conn, host, on_output=self._output_ready,
            close_transport=self._close_after_flush,
        )  # fmt: skip
        self.registry.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        conn, handler = self.conn, self.handler
        if conn is None or handler is None or self._closing:
            return
        self._in_receive = True
        try:
            events = conn.receive_data(data, self.hub.clock())
            if events:
                for event in events:
                    if type(event) is ProtocolViolation:
                        log.info("mqtt.protocol_violation", client_id=handler.client_id,
                                 reason=event.reason_code.name, text=event.text)  # fmt: skip
                handler.handle_events(events)
        except Exception:
            log.exception("mqtt.internal_error", client_id=handler.client_id)
            conn.close()
            handler.connection_lost()
        finally:
            self._in_receive = False
        # One int comparison per read unless the alarm is raised.
        if self.alarm.alarmed or self.hub.broker.queued_bytes > self.alarm.limit:
            self.alarm.published(self)
        self.flush()
        if conn.closed:
            self._close_after_flush()
            return
        # CONNECT may have set a keep-alive shorter than the connect timeout being waited on.
        deadline = conn.get_timer()
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
        self.alarm.discard(self)
        self.registry.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.set_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.set_writable(True)

    # -- output ------------------------------------------------------------------------------

    def _output_ready(self) -> None:
        if not self._in_receive:
            self.flusher.mark(self)

    def flush(self) -> None:
        if self.conn is None or self.transport is None:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def _close_after_flush(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()  # flushes buffered data first

    # -- memory alarm ------------------------------------------------------------------------

    def block(self) -> None:
        """MQTT has no "blocked" packet: the publisher simply is not read (TCP back-pressure)."""
        if self.transport is not None and not self._reading_paused and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def unblock(self) -> None:
        if self.transport is not None and self._reading_paused and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- timers (keep-alive, connect timeout) -----------------------------------------------

    def _arm_timer(self) -> None:
        conn = self.conn
        if conn is None:
            return
        deadline = conn.get_timer()
        self._timer_at = deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # Machine time is hub.clock() (monotonic); loop.time() is too on Linux, but convert.
        delay = max(0.0, deadline - self.hub.clock())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        conn, handler = self.conn, self.handler
        if conn is None or handler is None or self._closing:
            return
        if self._reading_paused:
            # Not reading is our doing: the client's PINGREQs wait in the socket.
            conn.reset_keepalive(self.hub.clock())
        events = conn.handle_timer(self.hub.clock())
        if events:
            # `event` is structlog's own key: the timeout kind goes under another name.
            log.info("mqtt.timeout", client_id=handler.client_id, kind=type(events[0]).__name__)
            try:
                handler.handle_events(events)
            except Exception:
                log.exception("mqtt.internal_error", client_id=handler.client_id)
                handler.connection_lost()
            self.flush()
            self._close_after_flush()
            return
        self._arm_timer()

    # -- LiveConnection (shutdown) -----------------------------------------------------------

    def shutdown(self) -> None:
        if self.handler is not None:
            self.handler.shutdown()
        self._close_after_flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def start_mqtt_server(
    hub: MqttHub,
    host: str,
    port: int,
    *,
    name: str = "mqtt",
    ssl_context: ssl.SSLContext | None = None,
    alarm: MemoryAlarm[Any] | None = None,
    memory_limit: int = 512 * 1024 * 1024,
) -> StreamServer:
    loop = asyncio.get_running_loop()
    flusher: FlushScheduler[MqttProtocol] = FlushScheduler(loop)
    if alarm is None:
        broker = hub.broker
        alarm = MemoryAlarm(lambda: broker.queued_bytes, memory_limit, loop)
    shared = alarm
    server = StreamServer(name, lambda registry: MqttProtocol(hub, registry, flusher, shared))
    await server.start(host, port, ssl_context)
    return server
