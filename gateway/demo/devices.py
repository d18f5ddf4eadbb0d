"""Simulated factory sensors over MQTT 5 (paho-mqtt): `python -m gateway.demo.devices`.

Each device is its own MQTT client (`dev-1` ... `dev-N`) and shows one MQTT habit:
  - telemetry `factory/<id>/telemetry/temp` at QoS 1 and `.../humidity` at QoS 0, JSON bodies,
    with an out-of-range temperature every `--anomaly-every` readings;
  - a retained `factory/<id>/status` = "online", and a retained will "offline" that the gateway
    publishes when the connection dies without a DISCONNECT (kill -9, cable pulled);
  - commands arrive on `factory/<id>/commands/<command>`; each is acknowledged by publishing to the
    command's Response Topic with its Correlation Data (MQTT 5 request/response);
  - at connect, a config request to `services/config/get` with Response Topic
    `factory/<id>/replies`: an AMQP service answers it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.demo.events import die_on_broken_pipe, emit

SOURCE = "devices"
CONFIG_REQUEST_TOPIC = "services/config/get"
# A reading above this is what the backend treats as a fault (it checks the same range).
ANOMALY_TEMPERATURE = 95.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """`mqtt://[user[:password]@]host[:port]` (port 1883 when omitted)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"expected an mqtt:// URL, got {url!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return BrokerAddress(parts.hostname or "127.0.0.1", parts.port or 1883, username, password)


def publish_properties() -> Any:
    # paho's Properties constructor carries no annotations.
    return Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def status_topic(device: str) -> str:
    return f"factory/{device}/status"


def telemetry_topic(device: str, sensor: str) -> str:
    return f"factory/{device}/telemetry/{sensor}"


def command_prefix(device: str) -> str:
    return f"factory/{device}/commands/"


def reply_topic(device: str) -> str:
    return f"factory/{device}/replies"


class Device:
    """One simulated sensor: its own MQTT 5 connection, network thread and counters."""

    def __init__(
        self,
        device_id: str,
        index: int,
        broker: BrokerAddress,
        *,
        anomaly_every: int,
        verbose: bool,
        rng: random.Random,
    ) -> None:
        self.id = device_id
        self.index = index
        self.broker = broker
        self.anomaly_every = anomaly_every
        self.verbose = verbose
        self.rng = rng
        self.seq = 0
        self.requests = 0
        self.online = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        # Sent by the gateway only if this connection ends without a DISCONNECT.
        client.will_set(status_topic(device_id), b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client: Any = client

    def start(self) -> None:
        # connect_async + loop_start: the network thread retries until the gateway is up.
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        """Say "offline" ourselves (a clean DISCONNECT discards the will), then disconnect."""
        if self.online.is_set():
            info = self.client.publish(status_topic(self.id), b"offline", qos=1, retain=True)
            # paho raises if the connection went away meanwhile: then the will says it instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
            self.online.clear()  # a disconnect we asked for: not worth a `disconnected` line
            self.client.disconnect()
            emit(SOURCE, "offline", device=self.id, reason="shutdown")
        self.client.loop_stop()

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            emit(SOURCE, "connect.refused", device=self.id, reason=str(reason_code))
            return
        client.publish(status_topic(self.id), b"online", qos=1, retain=True)
        client.subscribe([(command_prefix(self.id) + "#", 1), (reply_topic(self.id), 1)])
        self.online.set()
        emit(SOURCE, "online", device=self.id, status_topic=status_topic(self.id))
        self._request_config()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self.online.is_set():
            self.online.clear()
            emit(SOURCE, "disconnected", device=self.id, reason=str(reason_code))

    def _request_config(self) -> None:
        self.requests += 1
        correlation = f"{self.id}-config-{self.requests}"
        props = publish_properties()
        props.ResponseTopic = reply_topic(self.id)
        props.CorrelationData = correlation.encode()
        props.ContentType = "application/json"
        body = json.dumps({"device": self.id}).encode()
        self.client.publish(CONFIG_REQUEST_TOPIC, body, qos=1, properties=props)
        emit(
            SOURCE,
            "config.request",
            device=self.id,
            topic=CONFIG_REQUEST_TOPIC,
            response_topic=reply_topic(self.id),
            correlation=correlation,
        )

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic: str = message.topic
        props = getattr(message, "properties", None)
        correlation_data: bytes | None = getattr(props, "CorrelationData", None)
        correlation = correlation_data.decode("utf-8", "replace") if correlation_data else ""
        if topic == reply_topic(self.id):
            emit(
                SOURCE,
                "config.reply",
                device=self.id,
                correlation=correlation,
                body=message.payload.decode("utf-8", "replace"),
            )
            return
        if not topic.startswith(command_prefix(self.id)):
            return
        command = topic[len(command_prefix(self.id)) :]
        response_topic: str | None = getattr(props, "ResponseTopic", None)
        emit(
            SOURCE,
            "command",
            device=self.id,
            command=command,
            qos=message.qos,
            correlation=correlation,
            response_topic=response_topic or "none",
        )
        if not response_topic:
            return  # nobody to answer: a fire-and-forget command
        ack = publish_properties()
        if correlation_data is not None:
            ack.CorrelationData = correlation_data
        ack.ContentType = "application/json"
        body = json.dumps({"device": self.id, "command": command, "status": "done"}).encode()
        client.publish(response_topic, body, qos=1, properties=ack)
        emit(SOURCE, "command.ack", device=self.id, command=command, correlation=correlation)

    def tick(self) -> None:
        """Publish one reading per sensor (skipped while disconnected: nothing is buffered)."""
        if not self.online.is_set():
            return
        self.seq += 1
        temp = round(self.rng.gauss(21.0, 1.5), 2)
        if self.anomaly_every and (self.seq + self.index) % self.anomaly_every == 0:
            temp = ANOMALY_TEMPERATURE
        humidity = round(min(100.0, max(0.0, self.rng.gauss(45.0, 5.0))), 2)
        readings = (("temp", temp, "C", 1), ("humidity", humidity, "%", 0))
        for sensor, value, unit, qos in readings:
            body = json.dumps({"value": value, "unit": unit, "seq": self.seq}).encode()
            self.client.publish(telemetry_topic(self.id, sensor), body, qos=qos)
            if self.verbose or value == ANOMALY_TEMPERATURE:
                emit(SOURCE, "telemetry", device=self.id, sensor=sensor, value=value, qos=qos)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.devices", description="Simulated MQTT 5 factory sensors."
    )
    parser.add_argument("--count", type=int, default=3, help="number of devices (default 3)")
    parser.add_argument(
        "--mqtt-url", default="mqtt://127.0.0.1:1883", help="mqtt://[user:pass@]host:port"
    )
    parser.add_argument("--prefix", default="dev-", help="client id prefix (default dev-)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument(
        "--anomaly-every",
        type=int,
        default=7,
        help="every Nth temperature is out of range (0: never; default 7)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the readings")
    parser.add_argument("--verbose", action="store_true", help="print every reading sent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    broker = parse_mqtt_url(args.mqtt_url)
    die_on_broken_pipe()
    rng = random.Random(args.seed)
    devices = [
        Device(
            f"{args.prefix}{i}",
            i,
            broker,
            anomaly_every=args.anomaly_every,
            verbose=args.verbose,
            rng=rng,
        )
        for i in range(1, args.count + 1)
    ]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emit(SOURCE, "starting", count=args.count, broker=f"{broker.host}:{broker.port}")
    for device in devices:
        device.start()
    next_tick = time.monotonic()
    while not stop.is_set():
        for device in devices:
            device.tick()
        next_tick += args.interval
        stop.wait(max(0.0, next_tick - time.monotonic()))
    for device in devices:
        device.stop()
    emit(SOURCE, "stopped", count=args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
