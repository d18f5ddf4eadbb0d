"""amqplib for Node against the gateway: the RabbitMQ tutorial programs (promise and callback
APIs, run as sender/receiver pairs) and a features script that reports JSON on stdout."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_runner import RunningGateway

pytestmark = pytest.mark.interop

JS = Path(__file__).parent / "js"
TUTORIAL = JS / "tutorial"
NODE = shutil.which("node")
TIMEOUT = 10.0

if NODE is None or not (JS / "node_modules" / "amqplib").is_dir():
    pytest.fail("node and tests/interop/js/node_modules/amqplib are required", pytrace=False)


class NodeScript:
    """A node program with its output read line by line (stderr folded into stdout)."""

    def __init__(self, path: Path, args: tuple[str, ...], url: str) -> None:
        assert NODE is not None
        self.name = path.name
        self.proc = subprocess.Popen(
            [NODE, str(path), *args],
            cwd=path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "AMQP_URL": url},
        )
        self.seen: list[str] = []
        self._eof = False
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next(self, timeout: float) -> str | None:
        if self._eof:
            return None
        line = self._lines.get(timeout=timeout)
        if line is None:
            self._eof = True
        else:
            self.seen.append(line)
        return line

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._next(max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"{self.name}: {text!r} not seen; output {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.name} exited before {text!r}; output {self.seen}")
            if text in line:
                return line

    def poll_line(self, timeout: float) -> str | None:
        try:
            return self._next(timeout)
        except queue.Empty:
            return None

    def finish(self, timeout: float = TIMEOUT) -> list[str]:
        """Wait for the program to exit on its own; all of its output."""
        self.proc.wait(timeout)
        while self.poll_line(TIMEOUT) is not None:
            pass
        assert self.proc.returncode == 0, (self.name, self.seen)
        return self.seen

    def stop(self) -> list[str]:
        """Ctrl+C, as the tutorials expect; all of the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        while self.poll_line(1.0) is not None:
            pass
        return self.seen


Run = Callable[..., NodeScript]


@pytest.fixture
def node(gateway: RunningGateway) -> Iterator[Run]:
    url = f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}"
    started: list[NodeScript] = []

    def run(path: Path, *args: str) -> NodeScript:
        script = NodeScript(path, args, url)
        started.append(script)
        return script

    yield run
    for script in started:
        script.stop()


APIS = ["promise", "callback_api"]


def program(api: str, name: str) -> Path:
    return (TUTORIAL if api == "promise" else TUTORIAL / "callback_api") / f"{name}.js"


@pytest.mark.parametrize("api", APIS)
def test_tutorial_1_send_receive(node: Run, api: str) -> None:
    receiver = node(program(api, "receive"))
    receiver.wait_for("Waiting")
    sent = node(program(api, "send")).finish()
    assert any("Sent 'Hello World!'" in line for line in sent)
    receiver.wait_for("Received 'Hello World!'")


@pytest.mark.parametrize("api", APIS)
def test_tutorial_2_new_task_worker(node: Run, api: str) -> None:
    workers = [node(program(api, "worker")) for _ in range(2)]
    for worker in workers:
        worker.wait_for("Waiting")
    tasks = [f"{api}-task-{i}" for i in range(4)]
    for task in tasks:
        node(program(api, "new_task"), task).finish()
    received: dict[int, list[str]] = {0: [], 1: []}
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, received.values())) < len(tasks) and time.monotonic() < deadline:
        for index, worker in enumerate(workers):
            line = worker.poll_line(0.05)
            if line is not None and "Received" in line:
                received[index].append(line.split("'")[1])
    assert sorted(received[0] + received[1]) == tasks
    # Round-robin over both workers.
    assert received[0], received
    assert received[1], received
    for worker in workers:
        worker.wait_for("Done")


@pytest.mark.parametrize("api", APIS)
def test_tutorial_3_emit_log_receive_logs(node: Run, api: str) -> None:
    receivers = [node(program(api, "receive_logs")) for _ in range(2)]
    for receiver in receivers:
        receiver.wait_for("Waiting")
    text = f"info: fanout from {api}"
    node(program(api, "emit_log"), text).finish()
    for receiver in receivers:
        receiver.wait_for(text)


@pytest.mark.parametrize("api", APIS)
def test_tutorial_4_emit_log_direct_receive_logs_direct(node: Run, api: str) -> None:
    errors = node(program(api, "receive_logs_direct"), "error")
    others = node(program(api, "receive_logs_direct"), "info", "warning")
    for receiver in (errors, others):
        receiver.wait_for("Waiting")
    node(program(api, "emit_log_direct"), "error", f"disk full {api}").finish()
    node(program(api, "emit_log_direct"), "info", f"all good {api}").finish()
    errors.wait_for(f"error:'disk full {api}'")
    others.wait_for(f"info:'all good {api}'")
    assert not any("all good" in line for line in errors.stop())
    assert not any("disk full" in line for line in others.stop())


@pytest.mark.parametrize("api", APIS)
def test_tutorial_5_emit_log_topic_receive_logs_topic(node: Run, api: str) -> None:
    users = node(program(api, "receive_logs_topic"), "user.*")
    failures = node(program(api, "receive_logs_topic"), "*.error")
    for receiver in (users, failures):
        receiver.wait_for("Waiting")
    for key in ("user.error", "user.info", "kern.error"):
        node(program(api, "emit_log_topic"), key, f"{key} from {api}").finish()
    users.wait_for(f"user.error:'user.error from {api}'")
    users.wait_for(f"user.info:'user.info from {api}'")
    failures.wait_for(f"user.error:'user.error from {api}'")
    failures.wait_for(f"kern.error:'kern.error from {api}'")
    assert not any("kern.error" in line for line in users.stop())
    assert not any("user.info" in line for line in failures.stop())


@pytest.mark.parametrize("api", APIS)
def test_tutorial_6_rpc_server_rpc_client(node: Run, api: str) -> None:
    server = node(program(api, "rpc_server"))
    server.wait_for("Awaiting RPC requests")
    output = node(program(api, "rpc_client"), "30").finish()
    assert any("Got 832040" in line for line in output), output
    server.wait_for("fib(30)")


def test_amqplib_features(node: Run) -> None:
    [line] = [x for x in node(JS / "amqp_features.mjs").finish() if x.startswith("{")]
    results = json.loads(line)
    assert results["serverProduct"] == "amqp-mqtt-gateway"
    assert results["confirmed"] is True
    assert results["returned"] == {"body": "bounced", "replyCode": 312, "replyText": "NO_ROUTE"}
    assert results["get"] == {"body": "confirmed", "messageCount": 0}
    assert results["getEmpty"] is True
    assert results["deadLettered"] == {"body": "poison", "reason": "rejected"}
    assert results["prefetch"] == {"delivered": 2, "ready": 3}
    assert results["directReply"] == {"body": "PING", "correlationId": "c1"}
    assert results["large"] == {"size": 3 * 1024 * 1024, "intact": True}
    assert results["notFound"]["code"] == 404
    assert results["afterNotFound"] is True
