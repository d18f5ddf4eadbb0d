"""Nothing confirmed is lost: `gateway run` is SIGKILLed while AMQP publishers (confirms) and
MQTT publishers (QoS 1) write to a durable queue, restarted on the same data directory, and the
queue is counted. Repeated several times in one run; a clean restart keeps the topology."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pika.adapters.blocking_connection import BlockingChannel

GATEWAY = [
    sys.executable, "-m", "gateway", "run", "--bind", "127.0.0.1", "--mqtt-port", "0",
    "--ws-port", "-1", "--amqp-port", "0", "--http-port", "-1", "--log-format", "json",
]  # fmt: skip
QUEUE = "crash-q"
ROUNDS = 4


class Gateway:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [*GATEWAY, "--data-dir", str(data_dir)], stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        self.ports = self._wait_ready()
        # Keep reading stderr so a chatty gateway never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _wait_ready(self) -> dict[str, int]:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            event = json.loads(line)
            if event.get("event") == "gateway.ready":
                return dict(event["ports"])
        self.proc.kill()
        raise AssertionError("no gateway.ready; stderr:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _reap(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)  # stderr reaches EOF with the process
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._reap(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self._reap(15)


@contextmanager
def amqp_channel(port: int) -> Iterator[BlockingChannel]:
    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, socket_timeout=5)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def amqp_publisher(port: int, tag: str, confirmed: list[str], stop: threading.Event) -> None:
    """Publish persistent messages one confirm at a time until the gateway dies."""
    try:
        with amqp_channel(port) as ch:
            ch.confirm_delivery()
            i = 0
            while not stop.is_set():
                body = f"{tag}-{i}"
                ch.basic_publish("", QUEUE, body.encode(),
                                 pika.BasicProperties(delivery_mode=2), mandatory=True)  # fmt: skip
                confirmed.append(body)  # basic_publish returned: the broker acked it
                i += 1
    except Exception:  # the gateway was killed under us: expected
        return


def mqtt_publisher(port: int, tag: str, confirmed: list[str], stop: threading.Event) -> None:
    """QoS 1 to a topic bound to the durable queue; PUBACKed payloads count as confirmed."""
    sent: dict[int, str] = {}
    lock = threading.Lock()

    def on_publish(_c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with lock:
            body = sent.pop(mid, None)
        if body is not None:
            confirmed.append(body)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tag, clean_session=True)
    client.on_publish = on_publish
    client.max_inflight_messages_set(50)
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return
    client.loop_start()
    i = 0
    try:
        while (not stop.is_set() and client.is_connected()) or i == 0:
            body = f"{tag}-{i}"
            with lock:
                info = client.publish("crash/data", body.encode(), qos=1)
                sent[info.mid] = body
            i += 1
            time.sleep(0.002)  # a steady stream, not one burst into paho's own queue
    finally:
        client.loop_stop()
        client.disconnect()


def session_subscriber(port: int, *, subscribe: bool) -> tuple[bool, list[str]]:
    """A persistent MQTT 3.1.1 session on crash/#: subscribe once, or come back and collect
    what it queued meanwhile. Returns (session present, payloads received)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-sub", clean_session=False)
    present: list[bool] = []
    got: list[str] = []
    connected = threading.Event()
    subscribed = threading.Event()

    def on_connect(_c: object, _u: object, flags: object, _rc: object, _p: object) -> None:
        present.append(bool(getattr(flags, "session_present", False)))
        connected.set()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload.decode())

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10)
        if subscribe:
            client.subscribe("crash/#", qos=1)
            assert subscribed.wait(10)
        else:
            seen = -1
            while seen != len(got):  # until a quiet second
                seen = len(got)
                time.sleep(1.0)
    finally:
        client.loop_stop()
        client.disconnect()
    return present[0], got


def declare(port: int) -> None:
    with amqp_channel(port) as ch:
        ch.queue_declare(QUEUE, durable=True)
        ch.queue_bind(QUEUE, "amq.topic", "crash.#")


def drain_queue(port: int, *, ack: bool) -> list[tuple[str, bool]]:
    """Every ready message as (body, redelivered); acked (gone) or left (requeued on close)."""
    got: list[tuple[str, bool]] = []
    with amqp_channel(port) as ch:
        while True:
            method, _props, body = ch.basic_get(QUEUE, auto_ack=ack)
            if method is None:
                return got
            got.append((body.decode(), bool(method.redelivered)))


def test_sigkill_during_confirmed_publishing_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", "6"))
    confirmed: list[str] = []
    unacked_at_crash: list[str] = []
    mqtt_confirmed: list[str] = []
    gateway = Gateway(tmp_path)
    declare(gateway.ports["amqp"])
    assert session_subscriber(gateway.ports["mqtt"], subscribe=True) == (False, [])
    for round_no in range(ROUNDS):
        stop = threading.Event()
        amqp_done: list[str] = []
        mqtt_done: list[str] = []
        threads = [
            threading.Thread(target=amqp_publisher,
                             args=(gateway.ports["amqp"], f"a{round_no}", amqp_done, stop)),
            threading.Thread(target=mqtt_publisher,
                             args=(gateway.ports["mqtt"], f"m{round_no}", mqtt_done, stop)),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        holder = None
        if round_no == ROUNDS - 1:
            # Hold some messages delivered and unacked when the kill comes.
            time.sleep(0.3)
            params = pika.ConnectionParameters("127.0.0.1", gateway.ports["amqp"], heartbeat=0)
            holder = pika.BlockingConnection(params)
            ch = holder.channel()
            ch.basic_qos(prefetch_count=5)
            for method, _props, body in ch.consume(QUEUE, inactivity_timeout=2):
                if method is None:
                    break
                unacked_at_crash.append(body.decode())
                if len(unacked_at_crash) == 5:
                    break
        time.sleep(rng.uniform(0.3, 1.2))
        gateway.kill()
        stop.set()
        for thread in threads:
            thread.join(10)
        if holder is not None:
            with contextlib.suppress(Exception):  # its broker is dead
                holder.close()
        assert amqp_done, f"round {round_no}: no AMQP publish was confirmed"
        assert mqtt_done, f"round {round_no}: no MQTT publish was acknowledged"
        confirmed += amqp_done + mqtt_done
        mqtt_confirmed += mqtt_done
        gateway = Gateway(tmp_path)
        stored = drain_queue(gateway.ports["amqp"], ack=False)
        bodies = [body for body, _ in stored]
        assert len(bodies) == len(set(bodies)), "a message came back twice"
        missing = set(confirmed) - set(bodies)
        assert not missing, f"round {round_no}: {len(missing)} confirmed messages lost"
        # Each publisher's own messages keep their order.
        for tag in {b.split("-")[0] for b in bodies}:
            mine = [int(b.split("-")[1]) for b in bodies if b.split("-")[0] == tag]
            assert mine == sorted(mine)
    assert len(unacked_at_crash) == 5
    redelivered = dict(drain_queue(gateway.ports["amqp"], ack=True))
    assert all(redelivered[body] for body in unacked_at_crash)  # back, flagged redelivered
    # The persistent session kept every PUBACKed MQTT message through every kill.
    present, queued = session_subscriber(gateway.ports["mqtt"], subscribe=False)
    assert present
    assert not set(mqtt_confirmed) - set(queued)
    assert gateway.terminate() == 0
    gateway = Gateway(tmp_path)
    assert drain_queue(gateway.ports["amqp"], ack=False) == []  # acked: gone for good
    assert gateway.terminate() == 0


def test_clean_restart_keeps_topology_and_messages(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path)
    with amqp_channel(gateway.ports["amqp"]) as ch:
        ch.exchange_declare("keep-src", "topic", durable=True)
        ch.exchange_declare("keep-dst", "fanout", durable=True)
        ch.exchange_bind("keep-dst", "keep-src", "a.#")
        ch.queue_declare("keep-q", durable=True, arguments={"x-max-length": 10})
        ch.queue_bind("keep-q", "keep-dst")
        ch.queue_declare("temp-q", durable=False)
        ch.basic_publish("keep-src", "a.b", b"kept", pika.BasicProperties(delivery_mode=2))
        ch.basic_publish("keep-src", "a.b", b"transient", pika.BasicProperties(delivery_mode=1))
    assert gateway.terminate() == 0
    gateway = Gateway(tmp_path)
    with amqp_channel(gateway.ports["amqp"]) as ch:
        ch.queue_declare("keep-q", durable=True, arguments={"x-max-length": 10}, passive=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            ch.queue_declare("temp-q", passive=True)
    with amqp_channel(gateway.ports["amqp"]) as ch:
        ch.basic_publish("keep-src", "a.c", b"routed", pika.BasicProperties(delivery_mode=2))
    assert [b for b, _ in drain_queue_named(gateway.ports["amqp"], "keep-q")] == [
        "kept",
        "routed",
    ]
    assert gateway.terminate() == 0
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "store", "check", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "queues: 1" in check.stdout


def drain_queue_named(port: int, queue: str) -> list[tuple[str, bool]]:
    got: list[tuple[str, bool]] = []
    with amqp_channel(port) as ch:
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((body.decode(), bool(method.redelivered)))


def test_store_check_refuses_a_damaged_store(tmp_path: Path) -> None:
    (tmp_path / "gateway.db").write_bytes(b"garbage" * 1000)
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "store", "check", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 1
    assert "not a database" in check.stdout + check.stderr
    run = subprocess.run(
        [*GATEWAY, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode != 0
    assert "not a database" in run.stderr
    assert (tmp_path / "gateway.db").read_bytes() == b"garbage" * 1000
