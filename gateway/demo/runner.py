"""The compose stack as plain processes: `python -m gateway.demo` (and `make demo`).

Starts `gateway run --mappings mappings/demo`, waits for its `gateway.ready` event (so port 0
works), then the backend, then the devices, and prints every process's events on one stream as
`<source> <event> key=value ...` lines. Ctrl-C, SIGTERM or `--duration` stops everything in
reverse order: devices (they publish "offline" and disconnect cleanly), backend, gateway.

Children run in their own sessions so a terminal's Ctrl-C reaches only this runner, which then
stops them in order; a child that dies on its own (try `kill -9` on the devices) is reported and
the rest keeps running, which is how the demo shows wills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gateway.demo.events import emit, format_event, on_broken_pipe, parse_event, write_line

SOURCE = "demo"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 8.0
# Between stopping the devices and the backend: time for the backend to print the devices' last
# messages (their "offline" statuses), which are already on their way when the devices exit.
DRAIN_DELAY = 0.5


class Child:
    """One child process whose output lines are re-printed as events."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.seen: dict[str, asyncio.Event] = {}
        self.expected_exit = False
        # The last JSON log record per event name (the gateway's `gateway.ready` carries ports).
        self.records: dict[str, dict[str, object]] = {}
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    async def spawn(cls, name: str, argv: list[str]) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        child = cls(name, process)
        emit(SOURCE, "started", name=name, pid=process.pid)
        assert process.stdout is not None
        assert process.stderr is not None
        child._pumps = [
            asyncio.create_task(child._pump(process.stdout)),
            asyncio.create_task(child._pump(process.stderr)),
        ]
        return child

    def _event(self, name: str) -> asyncio.Event:
        return self.seen.setdefault(name, asyncio.Event())

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                continue
            name, text = self._render(line)
            self._event(name).set()
            write_line(text)

    def _render(self, line: str) -> tuple[str, str]:
        """The event name and the line to print for one line of this child's output."""
        if line.startswith("{"):
            # The gateway logs JSON lines (--log-format json): drop the timestamp, keep the rest.
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "event" in record:
                name = str(record.pop("event"))
                record.pop("timestamp", None)
                self.records[name] = dict(record)
                if record.get("level") == "info":
                    record.pop("level")
                fields = {
                    k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in record.items()
                }
                return name, format_event(self.name, name, **fields)
        event = parse_event(line)
        if event is not None and event.source == self.name:
            return event.name, line
        return "output", format_event(self.name, "output", text=line)

    async def wait_for(self, event: str, within: float, stop: asyncio.Event) -> bool:
        """True once the child printed `event`; False if it exited, the time ran out or the
        demo was stopped first."""
        waiters = [
            asyncio.create_task(self._event(event).wait()),
            asyncio.create_task(self.process.wait()),
            asyncio.create_task(stop.wait()),
        ]
        await asyncio.wait(waiters, timeout=within, return_when="FIRST_COMPLETED")
        for waiter in waiters:
            waiter.cancel()
        return self._event(event).is_set()

    async def stop(self, signum: int) -> None:
        self.expected_exit = True
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                emit(SOURCE, "killing", name=self.name, reason="did not stop in time")
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def watch(self, gateway_down: asyncio.Event | None) -> None:
        """Report an exit nobody asked for; if this is the gateway, the demo is over."""
        code = await self.process.wait()
        if not self.expected_exit:
            emit(SOURCE, "exited", name=self.name, code=code)
            if gateway_down is not None:
                gateway_down.set()


def client_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def gateway_argv(args: argparse.Namespace, data_dir: str) -> list[str]:
    return [
        sys.executable, "-m", "gateway", "run",
        "--bind", args.bind,
        "--mqtt-port", str(args.mqtt_port),
        "--ws-port", str(args.ws_port),
        "--amqp-port", str(args.amqp_port),
        "--http-port", str(args.http_port),
        "--mqtts-port", "-1",
        "--amqps-port", "-1",
        "--mappings", args.mappings,
        "--data-dir", data_dir,
        "--log-format", "json",
        "--log-level", args.log_level,
    ]  # fmt: skip


async def run_demo(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # `python -m gateway.demo | head`: when the reader goes, stop everything in order.
    on_broken_pipe(stop.set)
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as scratch:
        return await _run_children(args, args.data_dir or scratch, stop)


async def _run_children(args: argparse.Namespace, data_dir: str, stop: asyncio.Event) -> int:
    children: list[Child] = []
    gateway_down = asyncio.Event()
    watchers: list[asyncio.Task[None]] = []
    try:
        gateway = await Child.spawn("gateway", gateway_argv(args, data_dir))
        children.append(gateway)
        if not await gateway.wait_for("gateway.ready", READY_TIMEOUT, stop):
            if stop.is_set():
                return 0
            emit(SOURCE, "error", reason="the gateway did not start (see its output above)")
            return 1
        watchers.append(asyncio.create_task(gateway.watch(gateway_down)))
        ports = ready_ports(gateway)
        host = client_host(args.bind)
        emit(SOURCE, "ready", host=host, **ports)

        amqp_url = f"amqp://guest:guest@{host}:{ports['amqp']}/"
        backend = await Child.spawn(
            "backend", [sys.executable, "-m", "gateway.demo.backend", "--amqp-url", amqp_url]
        )
        children.append(backend)
        if not await backend.wait_for("ready", READY_TIMEOUT, stop):
            if stop.is_set():
                return 0
            emit(SOURCE, "error", reason="the backend did not start (see its output above)")
            return 1
        watchers.append(asyncio.create_task(backend.watch(None)))

        devices = await Child.spawn("devices", [
            sys.executable, "-m", "gateway.demo.devices",
            "--count", str(args.devices),
            "--mqtt-url", f"mqtt://{host}:{ports['mqtt']}",
            "--interval", str(args.interval),
            "--anomaly-every", str(args.anomaly_every),
        ])  # fmt: skip
        children.append(devices)
        watchers.append(asyncio.create_task(devices.watch(None)))
        if args.duration is not None:
            # Counted from here: the whole stack runs for that long, however slow the start.
            asyncio.get_running_loop().call_later(args.duration, stop.set)

        ended = [asyncio.create_task(stop.wait()), asyncio.create_task(gateway_down.wait())]
        await asyncio.wait(ended, return_when="FIRST_COMPLETED")
        for task in ended:
            task.cancel()
        return 1 if gateway_down.is_set() else 0
    finally:
        emit(SOURCE, "stopping")
        for child in reversed(children):
            # The gateway takes SIGINT like a terminal's Ctrl-C; the others their SIGTERM path.
            await child.stop(signal.SIGINT if child.name == "gateway" else signal.SIGTERM)
            if child.name == "devices":
                await asyncio.sleep(DRAIN_DELAY)
        for watcher in watchers:
            watcher.cancel()
        emit(SOURCE, "stopped")


def ready_ports(gateway: Child) -> dict[str, int]:
    """The bound ports, read back from the `gateway.ready` line (port 0 picks free ones)."""
    ports = gateway.records["gateway.ready"].get("ports")
    if not isinstance(ports, dict):
        raise RuntimeError(f"gateway.ready without ports: {gateway.records['gateway.ready']}")
    return {str(name): int(port) for name, port in ports.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo",
        description="Run the demo stack (gateway, backend, devices) as plain processes.",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="gateway address (127.0.0.1)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="0 picks a free port")
    parser.add_argument("--ws-port", type=int, default=15675)
    parser.add_argument("--amqp-port", type=int, default=5672)
    parser.add_argument("--http-port", type=int, default=15672)
    parser.add_argument("--mappings", default="mappings/demo", help="rules dir (mappings/demo)")
    parser.add_argument("--data-dir", default=None, help="gateway data dir (a temporary one)")
    parser.add_argument("--devices", type=int, default=3, help="simulated devices (3)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--anomaly-every", type=int, default=7, help="Nth reading out of range")
    parser.add_argument(
        "--duration", type=float, default=None, help="stop S seconds after everything started"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.mappings).is_dir():
        emit(SOURCE, "error", reason=f"no mapping rules directory {args.mappings}",
             hint="run from the repository root or pass --mappings DIR")  # fmt: skip
        return 2
    if args.mqtt_port < 0 or args.amqp_port < 0:
        emit(SOURCE, "error", reason="the demo needs the MQTT and AMQP listeners (port >= 0)")
        return 2
    return asyncio.run(run_demo(args))
