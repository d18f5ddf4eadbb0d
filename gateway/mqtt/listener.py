"""MQTT over TCP (and TLS): an asyncio.Protocol around the sans-I/O machine and the handler.

Per read: feed the machine, let the handler act, write what the machine has in one call.
Deliveries caused by other connections mark this one dirty; all dirty connections are flushed
together at the end of the read that caused them (or of the loop turn, when the other listener's
client or a timer caused them), so a fan-out of N messages costs one write per subscriber.
Back-pressure is the socket's: `pause_writing` makes the session refuse deliveries.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import Any

import structlog

from gateway.mqtt.connection import MqttConnection, ProtocolViolation
from gateway.mqtt.session_handler import ClientHandler
from gateway.mqtt.session_hub import MqttHub
from gateway.net import (
    ConnectionRegistry,
    FlushScheduler,
    MachineProtocol,
    MemoryAlarm,
    StreamServer,
)

log = structlog.get_logger("gateway.mqtt")

# How long a closed connection keeps draining what the client still sends (below).
LINGER_SECONDS = 2.0
# Output chunks (two per PUBLISH) after which deliveries are written at once instead of at
# the end of the loop turn: the write is what tells a slow client's session to stop taking
# messages (pause_writing), so without it a resumed session could take a whole queue backlog
# into memory in one dispatch, and the loop would spend seconds on it.
FLUSH_EARLY_CHUNKS = 2048


class MqttProtocol(MachineProtocol):
    __slots__ = ("_linger", "conn", "handler", "hub")

    def __init__(
        self,
        hub: MqttHub,
        registry: ConnectionRegistry,
        flusher: FlushScheduler[MqttProtocol],
        alarm: MemoryAlarm[MqttProtocol],
    ) -> None:
        super().__init__(registry, flusher, alarm, hub.clock)
        self.hub = hub
        self.conn: MqttConnection | None = None
        self.handler: ClientHandler | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        host = self._attach_host(transport)
        hub = self.hub
        settings = hub.settings
        timeout = settings.connect_timeout
        now = self.clock()
        self.conn = conn = MqttConnection(
            max_packet_size=settings.max_packet_size,
            server_keep_alive=None,
            connect_timeout=timeout,
            now=now,
        )
        self.handler = ClientHandler(hub, conn, host, self)
        if timeout is not None:  # the machine's only deadline yet: CONNECT by now + timeout
            self._arm_timer_at(now + timeout, max(timeout, 0.0))

    def data_received(self, data: bytes) -> None:
        conn, handler = self.conn, self.handler
        if conn is None or handler is None or self._closing:
            return
        fanout = handler.raw_fanout
        if (
            fanout is not None
            and data[0] == 0x30
            and not self.alarm.alarmed
            and self.hub.broker.queued_bytes <= self.alarm.limit
        ):
            # A lone QoS 0 PUBLISH to the topic of the last ones goes where they went when
            # nothing that decided that has changed (session_fanout.py). It queues nothing
            # and has no answer: of the steps below it needs only the flush of what it gave
            # subscribers that could not be written the publisher's bytes at once.
            flusher = self.flusher
            flusher.reading = True
            try:
                forwarded = fanout.forward(data)
            except Exception:
                forwarded = True
                self._internal_error(conn, handler)
            finally:
                flusher.reading = False
            if forwarded:
                flusher.flush_marked()
                if conn.closed:
                    self._after_read(True)
                return
        # `_start_read`, inlined: what this read delivers to others waits for its end.
        self._in_receive = self.flusher.reading = True
        single = None
        try:
            # A publisher at a low rate sends each QoS 0 PUBLISH alone: such a read skips the
            # event list and the general decoder (issue 7, S6: the per-message latency).
            single = conn.receive_qos0(data, self.clock()) if data[0] == 0x30 else None
            if single is not None:
                handler.on_single_qos0(single[0], single[1], data)
            else:
                if conn.protocol_level is not None:
                    events = conn.receive_data(data, self.clock())
                else:  # the first read: most often a CONNECT alone (issue 7, S7)
                    events = conn.receive_connect(data, self.clock())
                if events:
                    # The machine stops at a violation: only the last event can be one (a
                    # read of PUBLISHes is not walked twice).
                    last = events[-1]
                    if type(last) is ProtocolViolation:
                        log.info("mqtt.protocol_violation", client_id=handler.client_id,
                                 reason=last.reason_code.name, text=last.text)  # fmt: skip
                    handler.handle_events(events)
        except Exception:
            self._internal_error(conn, handler)
        finally:
            self._in_receive = self.flusher.reading = False  # `_stop_read`
        # One int comparison per read unless the alarm is raised.
        if self.alarm.alarmed or self.hub.broker.queued_bytes > self.alarm.limit:
            self.alarm.published(self)
        if single is None or conn.closed:
            self._after_read(conn.closed)
            return
        # `_after_read` for a connected client's QoS 0 PUBLISH: it has output only if it
        # subscribed to its own topic, and its keep-alive deadline moved later, never earlier.
        if conn.pending_chunks:
            self.flush()
        self.flusher.flush_marked()

    def _internal_error(self, conn: MqttConnection, handler: ClientHandler) -> None:
        log.exception("mqtt.internal_error", client_id=handler.client_id)
        conn.close()
        handler.connection_lost()

    # -- HandlerOwner (session_owner.py): the handler holds this protocol, not callbacks --------

    can_pause_reading = True

    def output_ready(self) -> None:
        if self._in_receive:
            return  # this read's own output is written at its end
        conn = self.conn
        if conn is not None and conn.pending_chunks > FLUSH_EARLY_CHUNKS:
            self.flush()
        elif not self._marked:  # `_output_ready`, inlined: once per delivery at low rates
            self._marked = True
            self.flusher.mark(self)

    def write_now(self, packet: bytes) -> bool:
        conn, transport = self.conn, self.transport
        if transport is None or self._closing or conn is None or conn.pending_chunks:
            return False
        transport.write(packet)  # uvloop tries the socket at once; back-pressure as any write
        return True

    # -- MachineProtocol hooks ---------------------------------------------------------------

    def _machine_timer(self) -> float | None:
        return None if self.conn is None else self.conn.get_timer()

    def _timer_due(self, now: float) -> bool:
        conn, handler = self.conn, self.handler
        if conn is None or handler is None:
            return True
        if self._reading_paused:
            # Not reading is our doing: the client's PINGREQs wait in the socket.
            conn.reset_keepalive(now)
        events = conn.handle_timer(now)
        if events:
            # `event` is structlog's own key: the timeout kind goes under another name.
            log.info("mqtt.timeout", client_id=handler.client_id, kind=type(events[0]).__name__)
            try:
                handler.handle_events(events)
            except Exception:
                log.exception("mqtt.internal_error", client_id=handler.client_id)
                handler.connection_lost()
            return True
        return conn.closed

    def _write_pending(self, transport: asyncio.Transport) -> None:
        if self.conn is not None:
            data = self.conn.data_to_send()
            if data:
                transport.write(data)

    def _set_writable(self, writable: bool) -> None:
        if self.handler is not None:
            self.handler.set_writable(writable)

    def _lost(self) -> None:
        handler = self.handler
        if handler is not None:
            handler.connection_lost()
            # The handler holds this protocol as its owner: without this reference cycle a
            # dropped connection is freed by reference counting at once, not by the cyclic
            # collector, which `GC_THRESHOLDS` makes rare (S7: ~0.9 KiB of RSS per connection
            # stayed behind after each round of 5,000 connects and disconnects).
            self.handler = None

    # -- lingering close -------------------------------------------------------------------

    def _close_after_flush(self) -> None:
        """Close after a DISCONNECT (or CONNACK refusal) without losing it to a reset.

        Closing a socket that still holds unread input makes the kernel answer with RST, and
        the client's kernel then drops what it had not read yet: the DISCONNECT and its reason
        code. A client still sending (PUBRELs, pipelined PUBLISHes) hits this every time. So
        half-close instead: flush, send FIN, end the session now, then read and discard until
        the client closes too or `LINGER_SECONDS` pass. TLS cannot half-close; it closes.
        """
        transport = self.transport
        if self._closing or transport is None or not transport.can_write_eof():
            super()._close_after_flush()
            return
        self._closing = True
        self.flush()
        self._lost()  # wills, session detach: not delayed by the linger
        transport.write_eof()
        self._resume_reading()  # data_received discards while closing
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    close_transport = _close_after_flush

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        # The transport is gone: the handler's ending must not start a lingering close on
        # it (a 2 s timer keeping each dropped connection alive, and an EOF to nobody).
        self._closing = True
        super().connection_lost(exc)

    # -- memory alarm, flow control: MQTT has no "blocked" packet, the client is not read ------

    def block(self) -> None:
        self._pause_reading()

    def unblock(self) -> None:
        if not self._closing:
            self._resume_reading()

    def pause_reading(self) -> None:
        self._pause_reading()

    def resume_reading(self) -> None:
        """Flow control let this publisher go. While the memory alarm is raised the alarm
        takes it over instead, and resumes it once the queues drain below the global limit."""
        if self.alarm.alarmed:
            self.alarm.published(self)
        else:
            self.unblock()

    # -- LiveConnection (shutdown) -----------------------------------------------------------

    def shutdown(self) -> None:
        if self.handler is not None:
            self.handler.shutdown()
        self._close_after_flush()


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
    # partial(partial(...), registry) flattens: no Python frame but the protocol's own per accept.
    factory = functools.partial(MqttProtocol, hub, flusher=flusher, alarm=alarm)
    server = StreamServer(name, factory)
    await server.start(host, port, ssl_context)
    return server
