"""Every program in examples/ (amqplib and MQTT.js in examples/js, aio-pika and paho-mqtt in
examples/python) runs against the gateway as a reader would run it, one command each, and must
exit 0 having printed what its pattern promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.gateway_runner import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JS = EXAMPLES / "js"
PYTHON = EXAMPLES / "python"
HOST = "127.0.0.1"
# Each example waits at most 10 s for what it expects; this only catches a hung process.
TIMEOUT = 40.0


@dataclass(frozen=True, slots=True)
class Expect:
    """Substrings that must each appear on some output line, and lines counted by substring
    (both case-insensitive: amqplib says deliveryMode where aio-pika says delivery_mode)."""

    lines: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


# Same expectations for the JavaScript and the Python version of each example.
EXPECTED: dict[str, Expect] = {
    "amqp_work_queue": Expect(
        (" [x] Sent 'First task.'", "Received Fourth task....", "task_queue is empty"),
        {"] Done": 4, "] Received ": 4},
    ),
    "amqp_publish_subscribe": Expect(
        ("Each of the 2 subscribers received all 2 logs",),
        {"'info: Hello World!'": 3, "amq.gen-": 6},
    ),
    "amqp_routing": Expect(
        (
            " [errors to disk] error: 'Run. Run. Or it will explode.'",
            " [console] info: 'Starting the report job'",
            " [console] warning: 'Disk 80% full'",
            "errors to disk got error only",
        ),
        {" [errors to disk] ": 2},  # its "Waiting" line and the one error
    ),
    "amqp_topics": Expect(
        (
            " [user.*] user.created:",
            " [user.*] user.error:",
            " [*.error] billing.error:",
            " [*.error] user.error:",
        ),
        {" [user.*] ": 3, " [*.error] ": 3},
    ),
    "amqp_json_work_queues": Expect(
        (
            " [payment worker] charged 42.50 EUR for order 1001",
            " [payment worker] charged 9.99 EUR for order 1002",
            " [email worker] sent 'order-confirmed' to ada@example.com",
            " [email worker] sent 'order-confirmed' to alan@example.com",
            "payment and email are empty",
        ),
        {" [x] Queued ": 4},
    ),
    "amqp_rpc": Expect(
        (" [x] Requesting fib(30)", " [.] Got fib(10) = 55", " [.] Got fib(30) = 832040"),
    ),
    "mqtt_work_queue": Expect(
        ("(PUBACK: the gateway has it)", "Received Fourth task.... (delivery", "is empty"),
        {"] Done": 4, "mode 2)": 4},  # QoS 1 arrives as delivery mode 2 (persistent)
    ),
    "mqtt_publish_subscribe": Expect(
        (
            " [receive-logs-1] logs 'info: Hello World!'",
            " [receive-logs-2] logs 'warning: disk almost full'",
            "Each of the 3 subscribers (2 MQTT, 1 AMQP) received all 2 logs",
        ),
        {"'info: Hello World!'": 4},
    ),
    "mqtt_routing": Expect(
        (
            " [errors-to-disk] logs/error: 'Run. Run. Or it will explode.'",
            " [amqp console] logs.info: 'Starting the report job'",
            " [amqp console] logs.warning: 'Disk 80% full'",
            " [amqp console] logs.error: 'Run. Run. Or it will explode.'",
        ),
        {" [errors-to-disk] ": 2},
    ),
    "mqtt_topics": Expect(
        (
            " [user/+] user/created: 'user 42 signed up'",
            " [user/+] user/error:",
            " [+/error] billing/error: 'card declined for invoice 7'",
            " [+/error] user/error:",
        ),
        {" [user/+] ": 3, " [+/error] ": 3},
    ),
    "mqtt_json_work_queues": Expect(
        (
            " [payment worker] charged 42.50 EUR for order 1001 (application/json,",
            " [email worker] sent 'order-confirmed' to alan@example.com (application/json,",
            "payment and email are empty",
        ),
        {"(PUBACK)": 4, "mode 2)": 4},
    ),
    "mqtt_rpc": Expect(
        (
            ' [.] fib(30), reply to amq.topic "rpc.replies.fib-client"',
            " [.] Got fib(10) = 55 on rpc/replies/fib-client",
            " [.] Got fib(30) = 832040 on rpc/replies/fib-client",
        ),
    ),
    "mqtt_rpc_server": Expect(
        (
            " [.] fib(10), Response Topic $amqp/reply/amq.rabbitmq.reply-to.",
            " [.] Got fib(10) = 55",
            " [.] Got fib(30) = 832040",
        ),
    ),
}


def example_cases() -> list[object]:
    return [
        pytest.param(path, id=f"{path.parent.name}/{path.name}")
        for stem in EXPECTED
        for path in (JS / f"{stem}.js", PYTHON / f"{stem}.py")
    ]


def test_every_example_file_has_a_case() -> None:
    files = {p.stem for p in JS.glob("*.js")} | {p.stem for p in PYTHON.glob("*.py")}
    assert files - {"common"} == set(EXPECTED)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Its own gateway: the examples use the tutorials' fixed names (task_queue, logs, ...)."""
    base = tmp_path_factory.mktemp("examples")
    (base / "mappings").mkdir()
    with running_gateway(data_dir=str(base / "data"), mappings=str(base / "mappings")) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def _node_installed() -> None:
    """The Node examples run in CI: missing node or packages is a failure, never a skip."""
    assert shutil.which("node") is not None, "node is not installed"
    for package in ("amqplib", "mqtt"):
        assert (JS / "node_modules" / package).is_dir(), "run `npm ci` in examples/js"


@pytest.mark.parametrize("path", example_cases())
def test_example(gateway: RunningGateway, path: Path) -> None:
    interpreter = shutil.which("node") if path.suffix == ".js" else sys.executable
    assert interpreter is not None
    env = {
        **os.environ,
        "AMQP_URL": f"amqp://guest:guest@{HOST}:{gateway.amqp_port}/",
        "MQTT_URL": f"mqtt://{HOST}:{gateway.mqtt_port}",
    }
    done = subprocess.run(
        [interpreter, path.name],  # as the README says: run from the example's folder
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{path.name} exited {done.returncode}:\n{output}"
    assert "FAILED" not in output, output

    lines = done.stdout.lower().splitlines()
    expect = EXPECTED[path.stem]
    for text in expect.lines:
        assert any(text.lower() in line for line in lines), f"{text!r} not in the output:\n{output}"
    for text, count in expect.counts.items():
        seen = sum(text.lower() in line for line in lines)
        assert seen == count, f"{text!r} on {seen} lines, expected {count}:\n{output}"
