"""HTTP side on `--http-port`: Prometheus `/metrics`, a read-only management API, health.

The API follows the shape of RabbitMQ's management plugin for what it offers
(`/api/overview`, `/api/queues`, `/api/exchanges`, `/api/bindings`), with HTTP basic auth against
the gateway's users (administrator tag required, guest only from loopback). Counters are read
from the core at scrape time; nothing on the message path knows HTTP exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from gateway import __version__
from gateway.core.broker import Broker
from gateway.core.errors import CoreError
from gateway.core.users import PasswordCheck, UserDatabase

Stats = Callable[[], dict[str, int]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_json = msgspec.json.Encoder()


def _json_response(data: object) -> web.Response:
    return web.Response(body=_json.encode(data), content_type="application/json")


# Listener stats that go up and down (the rest are counters): live connections, and password
# checks waiting for or running on the login worker (gateway/net_login.py).
_GAUGES = frozenset({"connections", "hashing"})


class HttpApi:
    def __init__(self, broker: Broker, users: UserDatabase, stats: dict[str, Stats]) -> None:
        self.broker = broker
        self.users = users
        self.stats = stats

    async def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            name, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host = peer[0] if isinstance(peer, tuple) else ""
        users = self.users
        try:
            started = users.begin_login(name, password, host, mechanism="HTTP")
            if isinstance(started, PasswordCheck):
                # A password to hash: on the database's worker thread when it has one, so the
                # brokers' clients are not kept waiting by a management login (net_login.py).
                hasher = users.hasher
                if hasher is None:
                    matched = started.run()
                else:
                    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

                    def answered(ok: bool) -> None:
                        if not answer.done():  # the request may have gone meanwhile
                            answer.set_result(ok)

                    hasher.submit(started, answered)
                    matched = await answer
                started = users.finish_login(started, matched)
        except CoreError:
            return False
        user = started
        return "administrator" in user.tags or "monitoring" in user.tags

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and not await self._authorised(request):
            return web.json_response(
                {"error": "not_authorised", "reason": "Login failed"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="gateway"'},
            )
        return await handler(request)

    async def overview(self, request: web.Request) -> web.Response:
        queues = [q for vh in self.broker.vhosts() for q in vh.queues()]
        return _json_response(
            {
                "product_name": "amqp-mqtt-gateway",
                "product_version": __version__,
                "object_totals": {
                    "queues": len(queues),
                    "exchanges": sum(len(vh.exchanges()) for vh in self.broker.vhosts()),
                    "consumers": sum(q.consumer_count for q in queues),
                },
                "queue_totals": {
                    "messages_ready": sum(q.message_count for q in queues),
                    "messages_unacknowledged": sum(q.unacked_count for q in queues),
                },
                "queued_bytes": self.broker.queued_bytes,
                "listeners": {name: stats() for name, stats in self.stats.items()},
            }
        )

    async def queues(self, request: web.Request) -> web.Response:
        return _json_response(
            [
                {
                    "name": q.name,
                    "vhost": vh.name,
                    "durable": q.durable,
                    "exclusive": q.exclusive,
                    "auto_delete": q.auto_delete,
                    "arguments": _plain(q.arguments),
                    "messages_ready": q.message_count,
                    "messages_unacknowledged": q.unacked_count,
                    "consumers": q.consumer_count,
                    "messages_dropped": q.dropped,
                    "messages_refused": q.refused,
                    "messages_expired": q.expired,
                }
                for vh in self.broker.vhosts()
                for q in vh.queues()
            ]
        )

    async def exchanges(self, request: web.Request) -> web.Response:
        return _json_response(
            [
                {
                    "name": x.name,
                    "vhost": vh.name,
                    "type": x.type_name,
                    "durable": x.durable,
                    "auto_delete": x.auto_delete,
                    "internal": x.internal,
                    "arguments": _plain(x.arguments),
                }
                for vh in self.broker.vhosts()
                for x in vh.exchanges()
            ]
        )

    async def bindings(self, request: web.Request) -> web.Response:
        return _json_response(
            [
                {
                    "source": b.source,
                    "destination": b.destination,
                    "destination_type": "queue" if b.destination_is_queue else "exchange",
                    "routing_key": b.routing_key,
                    "vhost": vh.name,
                    "arguments": _plain(b.arguments),
                }
                for vh in self.broker.vhosts()
                for b in vh.bindings()
            ]
        )

    async def health(self, request: web.Request) -> web.Response:
        return _json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# HELP gateway_queued_bytes Bytes of message bodies held in queues.",
            "# TYPE gateway_queued_bytes gauge",
            f"gateway_queued_bytes {self.broker.queued_bytes}",
            "# HELP gateway_queue_messages_ready Messages ready for delivery per queue.",
            "# TYPE gateway_queue_messages_ready gauge",
        ]
        for vh in self.broker.vhosts():
            for q in vh.queues():
                labels = f'vhost="{_label(vh.name)}",queue="{_label(q.name)}"'
                lines.append(f"gateway_queue_messages_ready{{{labels}}} {q.message_count}")
        per_queue = (
            ("messages_unacked", "gauge", "Delivered, not yet acknowledged.", "unacked_count"),
            ("dropped_total", "counter", "Dropped by x-overflow drop-head (oldest first).",
             "dropped"),
            ("refused_total", "counter", "Refused by x-overflow reject-publish.", "refused"),
            ("expired_total", "counter", "Expired by message or queue TTL.", "expired"),
        )  # fmt: skip
        for metric, kind, text, attribute in per_queue:
            lines.append(f"# HELP gateway_queue_{metric} {text}")
            lines.append(f"# TYPE gateway_queue_{metric} {kind}")
            for vh in self.broker.vhosts():
                for q in vh.queues():
                    labels = f'vhost="{_label(vh.name)}",queue="{_label(q.name)}"'
                    value = getattr(q, attribute)
                    lines.append(f"gateway_queue_{metric}{{{labels}}} {value}")
        for listener, stats in self.stats.items():
            for key, value in stats().items():
                name = f"gateway_{listener}_{key}"
                lines.append(f"# TYPE {name} {'gauge' if key in _GAUGES else 'counter'}")
                lines.append(f"{name} {value}")
        body = "\n".join(lines) + "\n"
        return web.Response(text=body, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.auth_middleware])
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/api/health/checks/alarms", self.health)
        app.router.add_get("/api/overview", self.overview)
        app.router.add_get("/api/queues", self.queues)
        app.router.add_get("/api/exchanges", self.exchanges)
        app.router.add_get("/api/bindings", self.bindings)
        return app


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _plain(arguments: Mapping[str, object]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool) else repr(v) for k, v in arguments.items()
    }


class HttpServer:
    """Satisfies app.Server."""

    def __init__(self, api: HttpApi, name: str = "http") -> None:
        self.name = name
        self._api = api
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self._api.application(), handle_signals=False,
                                     access_log=None)  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]

    async def stop_accepting(self) -> None:
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()

    async def close_connections(self, grace: float) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
