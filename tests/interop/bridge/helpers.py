"""What the bridge's route-named interop tests share: a pika channel, queues bound to the MQTT
exchange, blocking waits for one AMQP message, and node (amqplib) programs from
tests/interop/js/bridge_amqp.mjs read line by line as JSON. MQTT clients are the `Paho` wrapper
of tests/interop/mqtt_helpers.py (paho-mqtt 3.1.1 and 5)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.gateway_runner import RunningGateway

TIMEOUT = 5.0
MQTT_EXCHANGE = "amq.topic"
BRIDGE_JS = Path(__file__).parent.parent / "js" / "bridge_amqp.mjs"
NODE = shutil.which("node")


def uid(prefix: str) -> str:
    """A topic prefix or queue name no other test uses (the gateway is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def amqp_channel(gateway: RunningGateway, *, confirm: bool = False) -> Iterator[BlockingChannel]:
    params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port, heartbeat=0)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        if confirm:
            channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def v5_props(message: mqtt.MQTTMessage) -> Any:
    """The MQTT 5 properties paho decoded for `message` (Any: paho sets them as attributes)."""
    properties = getattr(message, "properties", None)
    assert properties is not None, "no MQTT 5 properties on the message"
    return properties


def bound_queue(
    channel: BlockingChannel, binding_key: str, arguments: dict[str, Any] | None = None
) -> str:
    """A server-named exclusive queue bound to the MQTT exchange."""
    name: str = channel.queue_declare("", exclusive=True, arguments=arguments).method.queue
    channel.queue_bind(name, MQTT_EXCHANGE, binding_key)
    return name


def get_one(channel: BlockingChannel, queue_name: str) -> tuple[Any, pika.BasicProperties, bytes]:
    """The next message on `queue_name` (consumed with a manual ack)."""
    for method, properties, body in channel.consume(queue_name, inactivity_timeout=TIMEOUT):
        assert method is not None, f"no message reached the AMQP consumer of {queue_name}"
        channel.basic_ack(method.delivery_tag)
        channel.cancel()
        return method, properties, body
    raise AssertionError("unreachable")


class NodeProgram:
    """`node bridge_amqp.mjs MODE ARGS...`: one JSON object per output line."""

    def __init__(self, gateway: RunningGateway, *args: str) -> None:
        if NODE is None or not (BRIDGE_JS.parent / "node_modules" / "amqplib").is_dir():
            pytest.fail("node and tests/interop/js/node_modules/amqplib are required")
        self.proc = subprocess.Popen(
            [NODE, str(BRIDGE_JS), *args],
            cwd=BRIDGE_JS.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}"},
        )
        self.args = args
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next JSON line; fails with the program's stderr if it ended first."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"bridge_amqp.mjs {self.args}: no output") from None
        if line is None:
            self.proc.wait(TIMEOUT)
            assert self.proc.stderr is not None
            raise AssertionError(f"bridge_amqp.mjs exited {self.proc.returncode}: "
                                 f"{self.proc.stderr.read()}")  # fmt: skip
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


NodeRunner = Callable[..., NodeProgram]
