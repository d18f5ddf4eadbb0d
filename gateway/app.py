"""Composition root: build the core, start the listeners, run until the shutdown trigger fires.

Modelled on hypercorn's `worker_serve(shutdown_trigger=...)`: tests pass their own trigger (an
Event's `wait`) instead of sending signals; `run()` wires SIGINT/SIGTERM to the same trigger.
Shutdown is ordered: stop accepting, tell every client (AMQP close 320, MQTT 5 DISCONNECT 0x8B),
give them a grace period, then flush the store and return.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import resource
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
from gateway.bridge.mapping_rules import MappingError
from gateway.bridge.mappings import declare_exchanges
from gateway.config import Config, ConfigError, load_mapping_rules
from gateway.core.broker import Broker
from gateway.core.users import User, UserDatabase
from gateway.http.server import HttpApi, HttpServer
from gateway.log import configure_logging
from gateway.mqtt.listener import start_mqtt_server
from gateway.mqtt.packets import Will
from gateway.mqtt.session_hub import MqttHub, MqttSettings
from gateway.mqtt.websocket import start_mqtt_ws_server
from gateway.net import MemoryAlarm, make_server_ssl_context
from gateway.net_login import PasswordHasher
from gateway.store import Store, StoreError

log = structlog.get_logger("gateway")

ShutdownTrigger = Callable[[], Awaitable[object]]

# The cyclic garbage collector's generation thresholds for `gateway run` (CPython's default is
# (700, 10, 10)). Every connection allocates a few dozen container objects, so with the
# default a young collection ran every ~20 connects, and the older collections walked every
# live connection's objects again and again: most of the non-uvloop CPU of a connect in bench
# S7 (issue 7). Objects freed by reference counting never reach the collector; what it finds
# is cyclic garbage (a closed connection's protocol/handler/session cycle, a few KiB), so a
# higher young threshold bounds that garbage at a few MB while collecting ~70x less often.
GC_THRESHOLDS = (50_000, 20, 100)

# glibc's malloc (mallopt parameter numbers from malloc.h). By default an allocation above the
# mmap threshold is mmapped and unmapped on free, but freeing one raises the threshold to its
# size: the 16 MiB of the scrypt that hashes guest's password at start-up make the next scrypt
# (the first login) come from the heap, where they then stay for the life of the process
# (issue 7, S7: 3.3 of the 6.9 KiB "per connection" of 5,000 connections). A fixed threshold
# keeps such rare big buffers mmapped; below it the heap serves as before, and it keeps freed
# heap memory up to twice the threshold before trimming, as glibc's own adjustment would.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024

# The kernel's table of a process's file descriptors grows by doubling as higher fds are
# opened, and while other threads share it (the store's writer, libuv's workers) every growth
# waits for an RCU grace period (`expand_fdtable` calls `synchronize_rcu`), with the event loop
# blocked in the accept. 5,000 fresh connections spent ~70 ms there, a quarter of the first
# run of bench S7 (issue 7). Growing it once before any thread starts costs nothing later;
# 8 bytes of kernel memory per slot, so at most 512 KiB.
FD_TABLE_SLOTS = 65_536


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
    store: Store | None = None
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
        mappings = load_mapping_rules(self.config)
        try:
            declare_exchanges(self.broker.vhost(mqtt_settings.vhost), mappings)
        except MappingError as exc:
            raise ConfigError(str(exc)) from None
        self.mqtt = MqttHub(self.broker, self.users, mqtt_settings, self.clock, mappings)
        self.amqp = AmqpContext(
            self.broker,
            self.users,
            AmqpSettings(
                **msgspec.structs.asdict(self.config.amqp), memory_limit=self.config.memory_limit
            ),
            # AMQP publishers reach MQTT's retained store with header x-mqtt-retain.
            on_publish=self.mqtt.retain_from_amqp,
            hooked_exchanges=self.mqtt.topic_map.retain_exchanges,
        )
        # An MQTT 5 responder's publish to `$amqp/reply/amq.rabbitmq.reply-to...`.
        self.mqtt.direct_reply = self.amqp.deliver_reply

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
        loop = asyncio.get_running_loop()
        self.alarm = MemoryAlarm(lambda: broker.queued_bytes, self.config.memory_limit, loop)
        # Logins that need a password hashed wait for a worker thread, not the loop.
        self.users.hasher = PasswordHasher(loop)
        try:
            self._open_store(loop)
            for _name, port, factory in self._listener_plan():
                if port < 0:
                    continue
                self.servers.append(await factory(self, self.config.bind, port))
        except BaseException:
            await self.stop()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._run_broker_timers())
        open_files, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.info(
            "gateway.ready", version=__version__, bind=self.config.bind, ports=self.ports,
            open_files=open_files,
        )  # fmt: skip
        return self.ports

    def _open_store(self, loop: asyncio.AbstractEventLoop) -> None:
        """Recover the data directory into the core, then record every durable change."""
        started = time.perf_counter()
        store = Store.open(self.config.data_dir)
        hub = self.mqtt
        try:
            paging = self.config.store
            store.enable_paging(self.broker, paging.queue_memory_limit, paging.page_batch)
            counts = store.recover(self.broker)
            retained = store.load_retained(hub.clock)
            sessions, ended = store.load_sessions(hub.clock)
            wills = store.load_wills(hub.clock)
        except BaseException:
            store.close()
            raise
        for problem in counts.skipped:
            log.warning("store.recovery_skipped", problem=problem)
        for publish, expires_at in retained:
            hub.restore_retained(publish, expires_at)
        for stored in sessions:
            hub.restore_session(stored)
        for client_id, will, due in wills:
            hub.restore_will(client_id, Will(will.topic, will.payload, will.qos, will.retain,
                                             will.properties), due)  # fmt: skip
        store.attach(self.broker, loop)
        hub.retained.listener = store.retained_listener(hub.clock)
        hub.session_store = recorder = store.session_recorder(hub.clock)
        hub.will_store = store.will_recorder(hub.clock)
        for client_id in ended:
            recorder.discarded(client_id)
        hub.forget_sessionless_queues()  # recorded: the store attached first
        self.store = store
        log.info(
            "store.recovered", path=str(store.path), exchanges=counts.exchanges,
            queues=counts.queues, bindings=counts.bindings, messages=counts.messages,
            retained=len(retained), sessions=len(sessions),
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip

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
        hasher = self.users.hasher
        if isinstance(hasher, PasswordHasher):
            hasher.close()
        self.users.hasher = None
        self.servers.clear()
        if self.store is not None:
            # Clients are gone: commit what they left pending, then close the file.
            self.mqtt.retained.listener = None
            self.mqtt.session_store = None
            self.mqtt.will_store = None
            self.store.close()
            self.store = None
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

    def login_stats() -> dict[str, int]:
        hasher = gateway.users.hasher
        if isinstance(hasher, PasswordHasher):
            return hasher.stats()
        return {"hashing": 0, "hashed": 0, "hash_mismatches": 0}

    stats = {"mqtt": mqtt_stats, "amqp": amqp_stats, "logins": login_stats}
    server = HttpServer(HttpApi(gateway.broker, gateway.users, stats))
    await server.start(host, port)
    return server


def tune_malloc() -> None:
    """Pin glibc's mmap threshold (see `MMAP_THRESHOLD`); nothing elsewhere."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)


def presize_fd_table() -> int:
    """Grow the fd table to what the open-files limit allows, up to `FD_TABLE_SLOTS`, by
    duplicating a descriptor to the highest slot and closing it (the table never shrinks).
    Returns that slot count, or 0 if the kernel refused."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    slots = FD_TABLE_SLOTS if soft == resource.RLIM_INFINITY else min(soft, FD_TABLE_SLOTS)
    probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if probe >= slots - 1:
            return slots
        os.dup2(probe, slots - 1, inheritable=False)
        os.close(slots - 1)
    except OSError:  # pragma: no cover - a kernel or sandbox that caps the table lower
        return 0
    finally:
        os.close(probe)
    return slots


def tune_gc() -> None:
    """Once the gateway is up: move everything start-up made (modules, config, the recovered
    store) out of the collector's sight with `gc.freeze()`, so no collection walks it again,
    and collect less often (`GC_THRESHOLDS`). For `gateway run` only: a test process keeps
    CPython's defaults."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    config: Config,
    shutdown_trigger: ShutdownTrigger,
    *,
    after_start: Callable[[], object] | None = None,
) -> None:
    """Run a gateway until `shutdown_trigger()` returns, then shut it down in order;
    ``after_start`` runs once every listener is bound."""
    gateway = Gateway(config)
    await gateway.start()
    try:
        if after_start is not None:
            after_start()
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
    tune_malloc()  # before the users' database hashes guest's password
    presize_fd_table()  # before the store's and libuv's threads share the table

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop.wait, after_start=tune_gc)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            runner.run(main())
        except OSError as exc:
            log.error("gateway.bind_failed", error=str(exc))
            return 1
        except StoreError as exc:
            log.error("gateway.store_refused", error=str(exc))
            return 1
    return 0
