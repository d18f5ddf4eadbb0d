"""The asyncio side shared by the listeners: bound servers, live connections, ordered shutdown.

A protocol listener provides an `asyncio.Protocol` factory whose protocols register themselves
here while they are connected. Shutdown is the STYLE.md order: stop accepting, ask every live
connection to say goodbye in its own protocol (AMQP close 320, MQTT 5 DISCONNECT 0x8B), wait up
to a grace period for them to go, then abort whatever is left.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

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

    def mark(self, connection: F) -> None:
        self._dirty[connection] = None
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty = self._dirty
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


class ConnectionRegistry:
    """Live connections of one listener, so shutdown can reach each of them."""

    def __init__(self) -> None:
        self._live: set[LiveConnection] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._live))

    def add(self, connection: LiveConnection) -> None:
        self._live.add(connection)
        self._empty.clear()

    def discard(self, connection: LiveConnection) -> None:
        self._live.discard(connection)
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
            lambda: self._protocol_factory(self.connections),
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
