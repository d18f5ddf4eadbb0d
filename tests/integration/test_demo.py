"""The plain-process demo (`python -m gateway.demo`, what `make demo` runs), as a user runs it:
a real gateway with mappings/demo, the aio-pika backend and the paho devices as processes on
free ports. The tests read the runner's event lines and watch the devices with a paho client.

The tests share one demo run and are written in order: telemetry and commands first, then the
devices are killed (their wills), then Ctrl-C stops the rest.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.demo.events import Event, format_event, parse_event
from tests.interop.mqtt_helpers import (
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
)

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("dev-1", "dev-2")
WAIT = 20.0
FREE_PORTS = ["--mqtt-port", "0", "--ws-port", "0", "--amqp-port", "0", "--http-port", "0"]


class DemoRun:
    """The runner process and the events it printed, read on a thread as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.demo", *FREE_PORTS, *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="demo-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = parse_event(line.rstrip("\n"))
            with self._cond:
                self.lines.append(line)
                if event is not None:
                    self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def find(self, source: str, name: str, /, **fields: str) -> Event | None:
        for event in self.events:
            if (
                event.source == source
                and event.name == name
                and all(event.fields.get(k) == v for k, v in fields.items())
            ):
                return event
        return None

    def wait_for(self, source: str, name: str, /, timeout: float = WAIT, **fields: str) -> Event:
        """The first `<source> <name>` event with these field values (waiting for it)."""
        found: list[Event] = []

        def ready() -> bool:
            event = self.find(source, name, **fields)
            if event is not None:
                found.append(event)
                return True
            return not self._reader.is_alive()

        with self._cond:
            self._cond.wait_for(ready, timeout)
        if not found:
            tail = "".join(self.lines[-40:])
            raise AssertionError(f"no `{source} {name}` {fields} in the demo output:\n{tail}")
        return found[0]

    def port(self, name: str) -> int:
        return int(self.wait_for("demo", "ready").fields[name])

    def child_pids(self) -> dict[str, int]:
        with self._cond:
            started = [e for e in self.events if e.source == "demo" and e.name == "started"]
        return {e.fields["name"]: int(e.fields["pid"]) for e in started}

    def close(self) -> None:
        """Stop the runner if a test did not, and make sure no child outlives the tests."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.child_pids().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def next_matching(
    client: Paho, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = WAIT
) -> mqtt.MQTTMessage:
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = client.next(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no matching MQTT message arrived") from None
        if predicate(message):
            return message


def status_is(device: str, payload: bytes) -> Callable[[mqtt.MQTTMessage], bool]:
    topic = f"factory/{device}/status"
    return lambda m: m.topic == topic and m.payload == payload


def wait_statuses(client: Paho, payload: bytes, timeout: float = WAIT) -> dict[str, bool]:
    """Wait until every demo device's status topic carried ``payload``, in any order; returns
    the retain flag each one had."""
    seen: dict[str, bool] = {}
    topics = {f"factory/{device}/status": device for device in DEVICES}
    deadline = time.monotonic() + timeout
    while len(seen) < len(DEVICES):
        try:
            message = client.next(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"{payload!r} seen only for {sorted(seen)}") from None
        if message.topic in topics and message.payload == payload:
            seen[topics[message.topic]] = bool(message.retain)
    return seen


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoRun]:
    # Two devices, a reading every 0.2 s, every third temperature out of range.
    run = DemoRun("--devices", "2", "--interval", "0.2", "--anomaly-every", "3",
                  "--duration", "120")  # fmt: skip
    try:
        yield run
    finally:
        run.close()


def test_the_stack_starts_in_order(demo: DemoRun) -> None:
    ready = demo.wait_for("demo", "ready")
    assert all(int(ready.fields[p]) > 0 for p in ("mqtt", "amqp", "http", "ws"))
    demo.wait_for("backend", "ready", queue="telemetry.backend", exchange="telemetry")
    for device in DEVICES:
        demo.wait_for("devices", "online", device=device)
    assert set(demo.child_pids()) == {"gateway", "backend", "devices"}


def test_telemetry_reaches_the_backend_at_both_qos_levels(demo: DemoRun) -> None:
    for device in DEVICES:
        temp = demo.wait_for("backend", "telemetry", device=device, sensor="temp")
        assert temp.fields["qos"] == "1"
        assert temp.fields["persistent"] == "true"  # QoS 1 is delivery_mode 2
        humidity = demo.wait_for("backend", "telemetry", device=device, sensor="humidity")
        assert humidity.fields["qos"] == "0"
        assert humidity.fields["persistent"] == "false"
        assert 0.0 <= float(humidity.fields["value"]) <= 100.0


def test_out_of_range_reading_commands_the_device_which_acknowledges(demo: DemoRun) -> None:
    fault = demo.wait_for("backend", "out_of_range", sensor="temp")
    device = fault.fields["device"]
    sent = demo.wait_for("backend", "command.sent", device=device)
    assert sent.fields["exchange"] == "commands"
    assert sent.fields["key"] == f"{device}.calibrate"
    correlation = sent.fields["correlation"]
    # The AMQP reply_to reached the device as an MQTT 5 Response Topic.
    received = demo.wait_for("devices", "command", correlation=correlation)
    assert received.fields["device"] == device
    assert received.fields["command"] == "calibrate"
    assert received.fields["qos"] == "1"
    assert received.fields["response_topic"].startswith("$amqp/reply/")
    demo.wait_for("devices", "command.ack", correlation=correlation, device=device)
    acked = demo.wait_for("backend", "command.acked", correlation=correlation)
    assert acked.fields["device"] == device
    assert json.loads(acked.fields["body"]) == {
        "device": device,
        "command": "calibrate",
        "status": "done",
    }


def test_device_config_request_is_answered_by_the_amqp_service(demo: DemoRun) -> None:
    for device in DEVICES:
        correlation = f"{device}-config-1"
        served = demo.wait_for("backend", "config.reply", device=device)
        assert served.fields["key"] == f"factory.{device}.replies"
        assert served.fields["correlation"] == correlation
        reply = demo.wait_for("devices", "config.reply", device=device)
        assert reply.fields["correlation"] == correlation
        config = json.loads(reply.fields["body"])
        assert config["device"] == device
        assert config["limits"]["temp"] == [-20.0, 60.0]


def test_tap_binds_like_a_topic_filter(demo: DemoRun) -> None:
    """The README's AMQP counterpart of `mosquitto_sub -t 'factory/+/telemetry/temp'`."""
    amqp_url = f"amqp://guest:guest@127.0.0.1:{demo.port('amqp')}/"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.demo.tap", "--amqp-url", amqp_url,
         "--exchange", "telemetry", "--key", "*.temp", "--count", "3"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    events = [e for e in map(parse_event, done.stdout.splitlines()) if e is not None]
    messages = [e for e in events if e.name == "message"]
    assert len(messages) == 3
    for message in messages:
        assert message.fields["exchange"] == "telemetry"
        device, sensor = message.fields["key"].split(".")
        assert (device, sensor) in {(d, "temp") for d in DEVICES}
        assert message.fields["mqtt_qos"] == "1"
        assert message.fields["delivery_mode"] == "2"
        assert "value" in json.loads(message.fields["body"])
    assert events[-1].name == "stopped"


def test_retained_status_is_visible_to_a_late_subscriber(demo: DemoRun) -> None:
    for device in DEVICES:
        demo.wait_for("devices", "online", device=device)
    late = Paho(demo.port("mqtt"))
    assert late.subscribe("factory/+/status", 1) == [1]
    assert wait_statuses(late, b"online") == dict.fromkeys(DEVICES, True)


def test_killing_the_devices_publishes_their_wills(demo: DemoRun) -> None:
    watcher = Paho(demo.port("mqtt"))
    assert watcher.subscribe("factory/+/status", 1) == [1]
    wait_statuses(watcher, b"online")
    os.kill(demo.child_pids()["devices"], signal.SIGKILL)
    wait_statuses(watcher, b"offline")
    demo.wait_for("demo", "exited", name="devices", code="-9")
    # The will crossed to AMQP too (the backend's amq.topic binding factory.*.status).
    for device in DEVICES:
        demo.wait_for("backend", "device.status", device=device, status="offline")
    # And it was retained: "offline" is what the next subscriber sees.
    later = Paho(demo.port("mqtt"))
    later.subscribe("factory/dev-1/status", 1)
    assert next_matching(later, status_is("dev-1", b"offline")).retain


def test_ctrl_c_stops_every_process(demo: DemoRun) -> None:
    pids = demo.child_pids()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(20) == 0
    demo.wait_for("backend", "stopped")
    demo.wait_for("gateway", "gateway.stopped")
    demo.wait_for("demo", "stopped")
    for name, pid in pids.items():
        assert gone_within(pid, 5), f"{name} (pid {pid}) outlived the demo"


def test_duration_stops_devices_cleanly() -> None:
    """`--duration`: devices say "offline" themselves and disconnect; no will is needed."""
    run = DemoRun("--devices", "1", "--interval", "0.2", "--duration", "4")
    try:
        assert run.proc.wait(30) == 0
        run.wait_for("devices", "online", device="dev-1")
        # Printed once the gateway PUBACKed the retained "offline" (QoS 1).
        run.wait_for("devices", "offline", device="dev-1", reason="shutdown")
        run.wait_for("devices", "stopped")
        run.wait_for("backend", "stopped")
        run.wait_for("gateway", "gateway.stopped")
        run.wait_for("demo", "stopped")
        assert run.find("demo", "exited") is None  # nothing died on its own
    finally:
        run.close()


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=40)),
)
def test_event_lines_round_trip(fields: dict[str, str]) -> None:
    """What the tests above rely on: any field value (JSON bodies, quotes, `$` topics) survives
    one printed line. Line breaks become spaces so that one event stays one line (a text-mode
    reader splits at both \\n and \\r)."""
    line = format_event("backend", "telemetry", **fields)
    assert "\n" not in line
    assert "\r" not in line
    flat = {k: v.replace("\r", " ").replace("\n", " ") for k, v in fields.items()}
    assert parse_event(line) == Event("backend", "telemetry", flat)
