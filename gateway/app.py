"""Composition root: build the core, start the listeners, run until the shutdown trigger fires.

Modelled on hypercorn's `worker_serve(shutdown_trigger=...)`: tests pass their own trigger (an
Event's `wait`) instead of sending signals; `run()` wires SIGINT/SIGTERM to the same trigger.
Shutdown is ordered: stop accepting, tell every client (AMQP close 320, MQTT 5 DISCONNECT 0x8B),
give them a grace period, then flush the store and return.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from gateway import __version__
from gateway.amqp.channel_context import AmqpContext, AmqpSettings
from gateway.amqp.listener import start_amqp_server
from gateway.config import Config
from gateway.core.broker import Broker
from gateway.core.users import User, UserDatabase
from gateway.http.server import HttpApi, HttpServer
from gateway.log import configure_logging
from gateway.mqtt.listener import start_mqtt_server
from gateway.mqtt.session_hub import MqttHub, MqttSettings
from gateway.mqtt.websocket import start_mqtt_ws_server
from gateway.net import MemoryAlarm, make_server_ssl_context

log = structlog.get_logger("gateway")

ShutdownTrigger = Callable[[], Awaitable[object]]


class Server(Protocol):
    """What every listener gives the composition root once it is bound."""

    name: str

    @property
    def port(self) -> int: ...

    async def stop_accepting(self) -> None: ...

    async def close_connections(self, grace: float) -> None: ...


ServerFactory = Callable[["Gateway", str, int], Awaitable[Server]]


@dataclass
class Gateway:
    """One running gateway: the broker, the users, and the servers bound for them."""

    config: Config
    clock: Callable[[], float] = time.monotonic
    broker: Broker = field(init=False)
    users: UserDatabase = field(init=False)
    mqtt: MqttHub = field(init=False)
    amqp: AmqpContext = field(init=False)
    servers: list[Server] = field(default_factory=list)
    alarm: MemoryAlarm[Any] | None = None
    _ticker: asyncio.Task[None] | None = None
    _tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.broker = Broker(self.clock, wall_clock=time.time)
        for name in self.config.vhosts:
            if name != "/":
                self.broker.add_vhost(name)
        self.users = UserDatabase(
            [
                User(
                    name=u.name,
                    password_hash=u.password_hash,
                    tags=frozenset(u.tags),
                    vhosts=frozenset(u.vhosts),
                    loopback_only=u.loopback_only,
                )
                for u in self.config.users
            ],
            default_guest=self.config.default_guest,
        )
        # The [mqtt] and [amqp] tables are the adapters' settings key for key, so a new
        # config key cannot be forgotten on the way (a missing field fails at start-up).
        mqtt_settings = MqttSettings(**msgspec.structs.asdict(self.config.mqtt))
        self.mqtt = MqttHub(self.broker, self.users, mqtt_settings, self.clock)
        self.amqp = AmqpContext(
            self.broker,
            self.users,
            AmqpSettings(
                **msgspec.structs.asdict(self.config.amqp), memory_limit=self.config.memory_limit
            ),
            # AMQP publishers reach MQTT's retained store with header x-mqtt-retain.
            on_publish=self.mqtt.retain_from_amqp,
            hooked_exchanges=frozenset({mqtt_settings.exchange}),
        )

    def _listener_plan(self) -> list[tuple[str, int, ServerFactory]]:
        """(name, configured port, factory) for every listener this build provides."""
        config = self.config
        plan: list[tuple[str, int, ServerFactory]] = [
            ("mqtt", config.mqtt_port, _mqtt_factory),
            ("ws", config.ws_port, _ws_factory),
            ("amqp", config.amqp_port, _amqp_factory),
            ("http", config.http_port, _http_factory),
        ]
        if config.tls_enabled:
            plan.append(("mqtts", config.mqtts_port, _mqtts_factory))
            plan.append(("amqps", config.amqps_port, _amqps_factory))
        return plan

    def tls_context(self) -> ssl.SSLContext:
        """One server TLS context for mqtts and amqps: the certificate is read once."""
        if self._tls is None:
            tls = self.config.tls
            assert tls.certfile is not None
            assert tls.keyfile is not None
            self._tls = make_server_ssl_context(tls.certfile, tls.keyfile, tls.cafile)
        return self._tls

    @property
    def ports(self) -> dict[str, int]:
        return {server.name: server.port for server in self.servers}

    async def start(self) -> dict[str, int]:
        """Bind every enabled listener; log `gateway.ready` with the bound ports."""
        broker = self.broker
        self.alarm = MemoryAlarm(
            lambda: broker.queued_bytes, self.config.memory_limit, asyncio.get_running_loop()
        )
        try:
            for _name, port, factory in self._listener_plan():
                if port < 0:
                    continue
                self.servers.append(await factory(self, self.config.bind, port))
        except BaseException:
            await self.stop()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._run_broker_timers())
        log.info("gateway.ready", version=__version__, bind=self.config.bind, ports=self.ports)
        return self.ports

    async def _run_broker_timers(self) -> None:
        """Expire messages and unused queues, end MQTT sessions, send delayed wills."""
        timed = (self.broker, self.mqtt)
        while True:
            deadlines = [d for d in (t.next_timer() for t in timed) if d is not None]
            delay = 1.0 if not deadlines else max(0.0, min(1.0, min(deadlines) - self.clock()))
            await asyncio.sleep(delay)
            for owner in timed:
                owner.handle_timer()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop_accepting()
        await asyncio.gather(
            *(server.close_connections(self.config.shutdown_grace) for server in self.servers)
        )
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.alarm is not None:
            self.alarm.close()
        self.servers.clear()
        log.info("gateway.stopped")


async def _mqtt_factory(gateway: Gateway, host: str, port: int) -> Server:
    return await start_mqtt_server(gateway.mqtt, host, port, alarm=gateway.alarm)


async def _mqtts_factory(gateway: Gateway, host: str, port: int) -> Server:
    return await start_mqtt_server(
        gateway.mqtt, host, port, name="mqtts", ssl_context=gateway.tls_context(),
        alarm=gateway.alarm,
    )  # fmt: skip


async def _ws_factory(gateway: Gateway, host: str, port: int) -> Server:
    return await start_mqtt_ws_server(gateway.mqtt, host, port)


async def _amqp_factory(gateway: Gateway, host: str, port: int) -> Server:
    return await start_amqp_server(gateway.amqp, host, port, alarm=gateway.alarm)


async def _amqps_factory(gateway: Gateway, host: str, port: int) -> Server:
    return await start_amqp_server(
        gateway.amqp, host, port, name="amqps", ssl_context=gateway.tls_context(),
        alarm=gateway.alarm,
    )  # fmt: skip


async def _http_factory(gateway: Gateway, host: str, port: int) -> Server:
    def mqtt_stats() -> dict[str, int]:
        return {**gateway.mqtt.stats, "connections": gateway.mqtt.connections}

    def amqp_stats() -> dict[str, int]:
        return {"connections": gateway.amqp.connections}

    stats = {"mqtt": mqtt_stats, "amqp": amqp_stats}
    server = HttpServer(HttpApi(gateway.broker, gateway.users, stats))
    await server.start(host, port)
    return server


async def serve(config: Config, shutdown_trigger: ShutdownTrigger) -> None:
    """Run a gateway until `shutdown_trigger()` returns, then shut it down in order."""
    gateway = Gateway(config)
    await gateway.start()
    try:
        await shutdown_trigger()
    finally:
        await gateway.stop()


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux/macOS dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(config: Config) -> int:
    """Blocking entry point for `gateway run`: signals trigger an orderly shutdown, exit 0."""
    configure_logging(config.log_level, config.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop.wait)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            runner.run(main())
        except OSError as exc:
            log.error("gateway.bind_failed", error=str(exc))
            return 1
    return 0
