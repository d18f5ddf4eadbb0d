"""MQTT over WebSocket (`--ws-port`, path `/ws`, subprotocol `mqtt`), same semantics as TCP.

aiohttp does the HTTP upgrade and framing; each binary frame is fed to the same sans-I/O machine
and handler as a TCP connection (an MQTT packet may span frames, or a frame hold several).
Flow control holds a publisher as on TCP: its next frame is not read until the queues it fed
drain (aiohttp then stops reading the socket once its own small buffer is full).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import WSMsgType, web

from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.session_handler import ClientHandler
from gateway.mqtt.session_hub import MqttHub
from gateway.net import ConnectionRegistry

log = structlog.get_logger("gateway.mqtt.ws")

WS_PATH = "/ws"


class _WsConnection:
    """One WebSocket client: the machine, the handler, and a writer task draining output."""

    def __init__(self, hub: MqttHub, ws: web.WebSocketResponse, peer_host: str) -> None:
        self.ws = ws
        self.hub = hub
        self.conn = MqttConnection(
            max_packet_size=hub.settings.max_packet_size,
            connect_timeout=hub.settings.connect_timeout,
            now=hub.clock(),
        )
        self.handler = ClientHandler(hub, self.conn, peer_host, self)
        self._has_output = asyncio.Event()
        # Set while frames may be read; flow control clears it to hold a publisher.
        self.readable = asyncio.Event()
        self.readable.set()
        self._closing = False

    # -- HandlerOwner (session_owner.py) -----------------------------------------------------

    can_pause_reading = True

    def output_ready(self) -> None:
        self._has_output.set()

    def write_now(self, packet: bytes) -> bool:
        return False  # every write is a WebSocket frame, sent by `writer`

    def close_transport(self) -> None:
        self._closing = True
        self._has_output.set()
        self.readable.set()  # a held reader must see the close

    def pause_reading(self) -> None:
        if not self._closing:
            self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()

    async def writer(self) -> None:
        while True:
            await self._has_output.wait()
            self._has_output.clear()
            data = self.conn.data_to_send()
            if data and not self.ws.closed:
                self.handler.set_writable(False)
                try:
                    await self.ws.send_bytes(data)
                except ConnectionError:
                    self._closing = True
                self.handler.set_writable(True)
            if self._closing:
                await self.ws.close()
                return

    async def run_timers(self) -> None:
        while not self._closing:
            deadline = self.conn.get_timer()
            delay = 1.0 if deadline is None else max(0.0, min(1.0, deadline - self.hub.clock()))
            await asyncio.sleep(delay)
            if not self.readable.is_set():
                # Not reading is our doing: the client's PINGREQs wait unread.
                self.conn.reset_keepalive(self.hub.clock())
            events = self.conn.handle_timer(self.hub.clock())
            if events:
                self.handler.handle_events(events)
                self.close_transport()

    def shutdown(self) -> None:
        self.handler.shutdown()
        self.close_transport()

    def abort(self) -> None:
        self.close_transport()


class MqttWebSocketServer:
    """Satisfies app.Server: an aiohttp site serving MQTT at /ws."""

    def __init__(self, hub: MqttHub, name: str = "ws") -> None:
        self.name = name
        self.hub = hub
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._live = ConnectionRegistry()

    @property
    def port(self) -> int:
        return self._port

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("mqtt", "mqttv3.1"), max_msg_size=0,
                                   autoping=True)  # fmt: skip
        await ws.prepare(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host = peer[0] if isinstance(peer, tuple) else "unknown"
        live = _WsConnection(self.hub, ws, host)
        self._live.add(live)
        writer = asyncio.create_task(live.writer())
        timers = asyncio.create_task(live.run_timers())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    try:
                        events = live.conn.receive_data(msg.data, self.hub.clock())
                        if events:
                            live.handler.handle_events(events)
                    except Exception:
                        # A bug must cost this one connection, never the listener.
                        log.exception("mqtt.internal_error", client_id=live.handler.client_id)
                        live.conn.close()
                    live.output_ready()
                    if live.conn.closed:
                        live.close_transport()
                        break
                    if not live.readable.is_set():
                        await live.readable.wait()  # held by flow control
                        if live._closing:
                            break
                elif msg.type in (WSMsgType.TEXT,):
                    # MQTT over WebSocket is binary only [MQTT-6.0.0-1].
                    live.conn.close()
                    live.close_transport()
                    break
        finally:
            live.handler.connection_lost()
            live.close_transport()
            await writer
            timers.cancel()
            self._live.discard(live)
        return ws

    async def stop_accepting(self) -> None:
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()

    async def close_connections(self, grace: float) -> None:
        await self._live.close_all(grace)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_mqtt_ws_server(hub: MqttHub, host: str, port: int) -> MqttWebSocketServer:
    server = MqttWebSocketServer(hub)
    await server.start(host, port)
    return server
