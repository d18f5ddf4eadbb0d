"""Run the real gateway on free loopback ports in a background thread, for tests whose clients
are blocking (paho, pika) or live in other processes (MQTT.js, amqplib).

The gateway gets its own event loop and thread, exactly as `gateway run` builds it, minus signal
handling: tests stop it with the same shutdown trigger `run()` uses.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec

from gateway.app import Gateway, new_event_loop
from gateway.config import Config, load_config

T = TypeVar("T")

DEFAULT_DATA_DIR = Config().data_dir

FREE_PORTS = {
    "bind": "127.0.0.1",
    "mqtt_port": 0,
    "ws_port": 0,
    "amqp_port": 0,
    "http_port": 0,
    # Only bound when [tls] has a certificate; never the real 8883/5671 in a test.
    "mqtts_port": 0,
    "amqps_port": 0,
}


class RunningGateway:
    def __init__(self, config: Config) -> None:
        # Every test gateway gets its own data directory (never ./data), removed at stop,
        # unless the test names one (restart tests reuse theirs).
        self._data_dir: str | None = None
        if config.data_dir == DEFAULT_DATA_DIR:
            self._data_dir = tempfile.mkdtemp(prefix="gateway-test-")
            config = msgspec.structs.replace(config, data_dir=self._data_dir)
        self.config = config
        self.loop = new_event_loop()  # uvloop, as `gateway run` uses
        self.gateway = Gateway(config)
        self.ports: dict[str, int] = {}
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.ports = await self.gateway.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.gateway.stop()

    def start(self) -> RunningGateway:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        if self._data_dir is not None and not self._thread.is_alive():
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the gateway's loop (the core is single-threaded) and return its result."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    @property
    def mqtt_port(self) -> int:
        return self.ports["mqtt"]

    @property
    def ws_port(self) -> int:
        return self.ports["ws"]

    @property
    def amqp_port(self) -> int:
        return self.ports["amqp"]


def make_config(**overrides: Any) -> Config:
    """Defaults plus free loopback ports; nested sections as dicts, e.g. mqtt={...}."""
    import msgspec

    base = msgspec.to_builtins(load_config(environ={}))
    base.update(FREE_PORTS)
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return msgspec.convert(base, Config)


@contextmanager
def running_gateway(**overrides: Any) -> Iterator[RunningGateway]:
    running = RunningGateway(make_config(**overrides)).start()
    try:
        yield running
    finally:
        running.stop()
