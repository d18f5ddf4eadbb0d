"""The demo's backend service over AMQP 0-9-1 (aio-pika): `python -m gateway.demo.backend`.

It never speaks MQTT, yet it talks to every device:
  - telemetry: durable queue `telemetry.backend` bound with `#` to the `telemetry` exchange, where
    the demo mapping rule sends `factory/<device>/telemetry/<sensor>` as `<device>.<sensor>`;
    each message is acked after it has been handled;
  - an out-of-range reading sends a command to the `commands` exchange (`<device>.calibrate`) with
    `reply_to` (this service's own queue) and a `correlation_id`; the device answers through its
    MQTT 5 Response Topic and the answer lands in that queue;
  - device config requests (`services/config/get` over MQTT, key `services.config.get` on
    amq.topic) are answered on amq.topic at the key in header `x-reply-to-topic`, echoing the
    `correlation_id`;
  - status changes (`factory/<device>/status`, wills included) are printed as they happen.
The `telemetry` and `commands` exchanges belong to the mapping rules, so they are only looked up
(a passive declare): without the rules loaded the service stops and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from aio_pika.exceptions import AMQPConnectionError, ChannelNotFoundEntity

from gateway.demo.events import die_on_broken_pipe, emit

SOURCE = "backend"
TELEMETRY_EXCHANGE = "telemetry"
COMMANDS_EXCHANGE = "commands"
TELEMETRY_QUEUE = "telemetry.backend"
CONFIG_BINDING = "services.config.#"
STATUS_BINDING = "factory.*.status"
REPLY_TOPIC_HEADER = "x-reply-to-topic"
QOS_HEADER = "x-mqtt-publish-qos"

# Valid ranges per sensor; anything outside is a fault that earns the device a command.
LIMITS: dict[str, tuple[float, float]] = {"temp": (-20.0, 60.0), "humidity": (0.0, 100.0)}
COMMAND_FOR_FAULT = "calibrate"


@dataclass(slots=True)
class PendingCommand:
    device: str
    command: str
    sent_at: float


def out_of_range(sensor: str, value: float) -> bool:
    low, high = LIMITS.get(sensor, (float("-inf"), float("inf")))
    return not low <= value <= high


def parse_reading(routing_key: str, body: bytes) -> tuple[str, str, float] | None:
    """`<device>.<sensor>` and a JSON body `{"value": ...}` (or a bare number)."""
    device, sep, sensor = routing_key.rpartition(".")
    if not sep or not device:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("value") if isinstance(data, dict) else data
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return device, sensor, float(value)


class Backend:
    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.pending: dict[str, PendingCommand] = {}
        self.reply_queue = ""
        self._commands: AbstractExchange | None = None
        self._amq_topic: AbstractExchange | None = None

    async def setup(self) -> None:
        channel = self.channel
        await channel.set_qos(prefetch_count=50)
        telemetry = await channel.declare_exchange(TELEMETRY_EXCHANGE, passive=True)
        self._commands = await channel.declare_exchange(COMMANDS_EXCHANGE, passive=True)
        self._amq_topic = await channel.get_exchange("amq.topic")

        queue = await channel.declare_queue(TELEMETRY_QUEUE, durable=True)
        await queue.bind(telemetry, "#")
        replies = await channel.declare_queue(exclusive=True)
        self.reply_queue = replies.name
        config = await channel.declare_queue("services.config", auto_delete=True)
        await config.bind(self._amq_topic, CONFIG_BINDING)
        status = await channel.declare_queue(exclusive=True)
        await status.bind(self._amq_topic, STATUS_BINDING)
        emit(
            SOURCE,
            "ready",
            queue=TELEMETRY_QUEUE,
            exchange=TELEMETRY_EXCHANGE,
            reply_queue=self.reply_queue,
        )
        # Consumers last: a backlog waiting in telemetry.backend starts flowing at once.
        await replies.consume(self.on_command_reply)
        await config.consume(self.on_config_request)
        await status.consume(self.on_status)
        await queue.consume(self.on_telemetry)

    async def on_telemetry(self, message: AbstractIncomingMessage) -> None:
        reading = parse_reading(message.routing_key or "", message.body)
        if reading is None:
            emit(SOURCE, "telemetry.invalid", key=message.routing_key or "")
            await message.reject()
            return
        device, sensor, value = reading
        qos = (message.headers or {}).get(QOS_HEADER, "-")
        emit(
            SOURCE,
            "telemetry",
            device=device,
            sensor=sensor,
            value=value,
            qos=qos,
            persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
        )
        if out_of_range(sensor, value):
            emit(SOURCE, "out_of_range", device=device, sensor=sensor, value=value)
            await self.send_command(device, COMMAND_FOR_FAULT, {"sensor": sensor, "value": value})
        # Acked after the command went out: a crash in between redelivers the reading.
        await message.ack()

    async def send_command(self, device: str, command: str, args: dict[str, object]) -> None:
        assert self._commands is not None
        correlation = uuid.uuid4().hex[:12]
        self.pending[correlation] = PendingCommand(device, command, time.monotonic())
        emit(
            SOURCE,
            "command.sent",
            device=device,
            command=command,
            exchange=COMMANDS_EXCHANGE,
            key=f"{device}.{command}",
            correlation=correlation,
        )
        await self._commands.publish(
            aio_pika.Message(
                json.dumps(args).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                reply_to=self.reply_queue,
                correlation_id=correlation,
            ),
            routing_key=f"{device}.{command}",
        )

    async def on_command_reply(self, message: AbstractIncomingMessage) -> None:
        correlation = message.correlation_id or ""
        pending = self.pending.pop(correlation, None)
        if pending is None:
            emit(SOURCE, "command.reply.unknown", correlation=correlation)
        else:
            emit(
                SOURCE,
                "command.acked",
                device=pending.device,
                command=pending.command,
                correlation=correlation,
                ms=round((time.monotonic() - pending.sent_at) * 1000),
                body=message.body.decode("utf-8", "replace"),
            )
        await message.ack()

    async def on_config_request(self, message: AbstractIncomingMessage) -> None:
        assert self._amq_topic is not None
        reply_key = (message.headers or {}).get(REPLY_TOPIC_HEADER)
        if not isinstance(reply_key, str):
            emit(SOURCE, "config.unanswerable", key=message.routing_key or "")
            await message.ack()
            return
        try:
            request = json.loads(message.body)
        except ValueError:
            request = {}
        device = request.get("device", "?") if isinstance(request, dict) else "?"
        config = {
            "device": device,
            "interval_s": 1.0,
            "limits": {k: list(v) for k, v in LIMITS.items()},
        }
        await self._amq_topic.publish(
            aio_pika.Message(
                json.dumps(config).encode(),
                content_type="application/json",
                correlation_id=message.correlation_id,
            ),
            routing_key=reply_key,
        )
        emit(
            SOURCE,
            "config.reply",
            device=device,
            key=reply_key,
            correlation=message.correlation_id or "",
        )
        await message.ack()

    async def on_status(self, message: AbstractIncomingMessage) -> None:
        device = (message.routing_key or "").split(".")[1:2]
        emit(
            SOURCE,
            "device.status",
            device=device[0] if device else "?",
            status=message.body.decode("utf-8", "replace"),
        )
        await message.ack()


async def connect(url: str, retry_for: float) -> AbstractConnection:
    """Retry until the gateway accepts us: the backend may start before the gateway listens."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return await aio_pika.connect(url, timeout=5)
        except (AMQPConnectionError, ConnectionError, OSError) as exc:
            if time.monotonic() > deadline:
                raise
            emit(SOURCE, "waiting", reason=type(exc).__name__)
            await asyncio.sleep(1)


async def serve(url: str, connect_timeout: float, stop: asyncio.Event) -> int:
    connection = await connect(url, connect_timeout)
    lost = asyncio.Event()
    # No silent reconnects: losing the gateway ends the service (compose restarts it).
    connection.close_callbacks.add(lambda *_: lost.set())
    async with connection:
        backend = Backend(await connection.channel())
        try:
            await backend.setup()
        except ChannelNotFoundEntity as exc:
            emit(
                SOURCE,
                "error",
                reason=str(exc),
                hint="start the gateway with --mappings mappings/demo",
            )
            return 1
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if not stop.is_set():
            emit(SOURCE, "error", reason="connection to the gateway lost")
            return 1
    emit(SOURCE, "stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.backend", description="The demo's AMQP backend service."
    )
    parser.add_argument(
        "--amqp-url",
        default="amqp://guest:guest@127.0.0.1:5672/",
        help="amqp://user:pass@host:port/vhost",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=30.0, help="seconds to keep retrying at start"
    )
    return parser


async def amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await serve(args.amqp_url, args.connect_timeout, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    die_on_broken_pipe()
    try:
        return asyncio.run(amain(args))
    except (AMQPConnectionError, ConnectionError, OSError) as exc:
        emit(SOURCE, "error", reason=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
