"""The brokers under test, each started on loopback with its own temporary directory.

Every broker runs in a new session (process group) so that stopping it reaches its children
(RabbitMQ's shell script, beam.smp, erl_child_setup); epmd is started by us in the foreground on
its own port for the same reason, instead of letting Erlang daemonise one. `stop()` is safe to call
twice and after a failed start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from bench.procstat import descendants

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Per-client queue limit of the MQTT brokers: above any run's backlog, so no broker drops for
# want of configuration.
QUEUED_MESSAGES = 100_000
# Unacknowledged QoS 1/2 messages a broker sends one MQTT subscriber before it waits for
# PUBACKs: the gateway's default `[mqtt] max_inflight`, given to every broker (mosquitto's own
# default is 20, RabbitMQ's mqtt.prefetch 10) so that S2 measures the brokers, not their windows.
INFLIGHT = 100


class BrokerError(Exception):
    """A broker did not start, or is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Broker(ABC):
    """Base: a process group, its log, the ports it serves and the pid whose memory we report."""

    name: str
    workdir: Path
    mqtt_port: int | None = None
    amqp_port: int | None = None
    http_port: int | None = None
    version: str = "unknown"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    start_error: str | None = None
    scenarios: frozenset[str] | None = None  # the scenarios it can run; None: all

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def main_pid(self) -> int:
        """The process that does the work (RabbitMQ: beam.smp under the start script)."""
        return self.procs[-1].pid

    @abstractmethod
    def start(self, timeout: float) -> None:
        """Start on free loopback ports; return once they accept connections."""

    def problem(self) -> str | None:
        """Why this broker cannot take a run: it failed to start, or it has exited since."""
        if self.start_error is not None:
            return self.start_error
        for proc in self.procs:
            if proc.poll() is not None:
                return f"exited with {proc.returncode}"
        if not self.procs:
            return "not started"
        return None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def _wait_ports(self, ports: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise BrokerError(
                        f"{self.name} exited with {proc.returncode}:\n{_tail(self.log_path)}"
                    )
            if all(_port_open(port) for port in ports):
                return
            time.sleep(0.2)
        raise BrokerError(f"{self.name} not listening on {ports} after {timeout:.0f} s")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each process group (newest first), SIGKILL what is left after `grace`."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self.procs.clear()


@dataclass
class GatewayBroker(Broker):
    """`python -m gateway run` on ports chosen by the gateway itself (port 0)."""

    profile_to: Path | None = None  # run under cProfile, written here at exit
    # "asyncio" hides uvloop from the gateway so that `gateway run` falls back to asyncio's loop.
    loop: str = "uvloop"
    extra_config: str = ""  # TOML appended to the config file (bench/logins.py: [[users]])

    def start(self, timeout: float) -> None:
        profiler = ["-m", "cProfile", "-o", str(self.profile_to)] if self.profile_to else []
        if self.loop == "asyncio":
            launcher = self.workdir / "gateway_asyncio.py"
            launcher.write_text(_ASYNCIO_LAUNCHER)
            entry = [str(launcher)]
        else:
            entry = ["-m", "gateway"]
        config = self.workdir / "gateway.toml"
        # The same session queue limit as mosquitto's max_queued_messages below.
        config.write_text(
            f"{self.extra_config}\n"
            f"[mqtt]\nmax_queued_messages = {QUEUED_MESSAGES}\nmax_inflight = {INFLIGHT}\n"
        )
        argv = [
            sys.executable,
            *profiler,
            *entry,
            "run",
            "--config",
            str(config),
            "--bind",
            HOST,
            "--mqtt-port",
            "0",
            "--amqp-port",
            "0",
            "--ws-port",
            "-1",
            "--http-port",
            "0",  # its /metrics feed the bounded-memory check
            "--data-dir",
            str(self.workdir / "data"),
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
        env = dict(os.environ)
        # The repo root first, so the checkout is measured even without an editable install.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        proc = self._spawn(argv, env)
        ports = self._wait_ready(proc, timeout)
        self.mqtt_port = ports.get("mqtt")
        self.amqp_port = ports.get("amqp")
        self.http_port = ports.get("http")
        from gateway import __version__

        self.version = f"{__version__} ({self.loop})"

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"gateway exited with {proc.returncode}:\n{_tail(self.log_path)}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                if '"gateway.ready"' not in line:
                    continue
                event = json.loads(line)
                return {str(k): int(v) for k, v in event.get("ports", {}).items()}
            time.sleep(0.1)
        raise BrokerError(f"gateway not ready after {timeout:.0f} s:\n{_tail(self.log_path)}")


_ASYNCIO_LAUNCHER = """\
import sys

sys.modules["uvloop"] = None  # `import uvloop` now fails: the gateway uses asyncio's own loop
from gateway.cli import main

sys.exit(main())
"""


@dataclass
class MosquittoBroker(Broker):
    extra_config: str = ""  # lines appended to mosquitto.conf (bench/logins.py: password_file)

    def start(self, timeout: float) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.mqtt_port = free_port()
        conf = self.workdir / "mosquitto.conf"
        # Queue limits above the harness window so no broker drops for want of configuration;
        # Nagle off as in the gateway and RabbitMQ.
        conf.write_text(
            f"listener {self.mqtt_port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_queued_messages {QUEUED_MESSAGES}\n"
            f"max_inflight_messages {INFLIGHT}\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            f"{self.extra_config}"
        )
        self._spawn([binary, "-c", str(conf)])
        self._wait_ports([self.mqtt_port], timeout)
        self.version = _package_version("mosquitto")


@dataclass
class RelayBroker(Broker):
    """bench/relay.py: a bare uvloop QoS 0 relay, the floor of Python + uvloop (opt-in peer)."""

    # What it can run: QoS 0 and connections only (no QoS 1, no AMQP).
    scenarios: frozenset[str] = frozenset({"S1", "S6", "S7"})

    def start(self, timeout: float) -> None:
        self.mqtt_port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._spawn([sys.executable, "-m", "bench.relay", str(self.mqtt_port)], env)
        self._wait_ports([self.mqtt_port], timeout)
        from importlib.metadata import version

        self.version = f"uvloop {version('uvloop')}"


@dataclass
class AmqttBroker(Broker):
    """amqtt (the venv's `amqtt` script): anonymous access, no logging or $SYS plugins."""

    def start(self, timeout: float) -> None:
        script = Path(sys.executable).parent / "amqtt"
        if not script.exists():
            raise BrokerError("amqtt is not installed in the venv")
        self.mqtt_port = free_port()
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {HOST}:{self.mqtt_port}\n"
            "    max_connections: 0\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        self._spawn([str(script), "-c", str(conf)])
        self._wait_ports([self.mqtt_port], timeout)
        from importlib.metadata import version

        self.version = version("amqtt")


@dataclass
class RabbitBroker(Broker):
    """RabbitMQ through the package's own start script, rabbitmq_mqtt enabled."""

    SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")

    @property
    def main_pid(self) -> int:
        server = self.procs[-1].pid
        for pid in descendants(server):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp":
                    return pid
            except OSError:
                continue
        return server

    def start(self, timeout: float) -> None:
        if not self.SCRIPT.exists():
            raise BrokerError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        epmd_port = free_port()
        dist_port = free_port()
        base = self.workdir
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = {HOST}:{self.mqtt_port}\n"
            "loopback_users.guest = true\n"
            f"mqtt.prefetch = {INFLIGHT}\n"
        )
        (base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (base / "rabbitmq-env.conf").write_text("")
        env = dict(os.environ)
        env.update(
            HOME=str(base),  # the Erlang cookie is written here
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=f"bench{self.amqp_port}@localhost",
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            ERL_EPMD_PORT=str(epmd_port),
            ERL_EPMD_ADDRESS=HOST,
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "plugins-expand"),
            RABBITMQ_PID_FILE=str(base / "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        self._spawn([epmd, "-port", str(epmd_port), "-address", HOST], env)
        self._spawn([str(self.SCRIPT)], env)
        self._wait_ports([self.amqp_port, self.mqtt_port], timeout)
        self.version = _package_version("rabbitmq-server")


def _package_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


BROKERS: dict[str, type[Broker]] = {
    "gateway": GatewayBroker,
    "mosquitto": MosquittoBroker,
    "rabbitmq": RabbitBroker,
    "amqtt": AmqttBroker,
    "relay": RelayBroker,
}
# Peers that `--brokers all` (the default) leaves out: they are not brokers.
OPT_IN = frozenset({"relay"})
