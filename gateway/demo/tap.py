"""An AMQP consumer for the README walkthrough: `python -m gateway.demo.tap`.

The AMQP counterpart of `mosquitto_sub`: bind a queue to an exchange with a binding key and print
what arrives, acking each message after printing it. Without `--queue` the queue is exclusive and
server-named (gone when the tap stops, like a clean MQTT session); with `--queue NAME` it is a
durable named queue that keeps collecting while the tap is away (like a persistent session).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from gateway.demo.events import die_on_broken_pipe, emit

SOURCE = "tap"


def describe(message: AbstractIncomingMessage) -> dict[str, object]:
    headers = message.headers or {}
    fields: dict[str, object] = {
        "exchange": message.exchange or "(default)",
        "key": message.routing_key or "",
        "body": message.body.decode("utf-8", "replace"),
        "delivery_mode": int(message.delivery_mode or 1),
        "redelivered": bool(message.redelivered),
    }
    if "x-mqtt-publish-qos" in headers:
        fields["mqtt_qos"] = headers["x-mqtt-publish-qos"]
    if message.correlation_id:
        fields["correlation_id"] = message.correlation_id
    if message.reply_to:
        fields["reply_to"] = message.reply_to
    return fields


async def tap(args: argparse.Namespace, stop: asyncio.Event) -> int:
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        exchange = await channel.get_exchange(args.exchange)
        if args.queue:
            queue = await channel.declare_queue(args.queue, durable=True)
        else:
            queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, args.key)
        emit(SOURCE, "bound", queue=queue.name, exchange=args.exchange, key=args.key)
        received = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            if args.count and received >= args.count:
                return  # past --count: left unacked, so it goes back to the queue at close
            received += 1  # counted before any await: callbacks of a prefetch batch interleave
            emit(SOURCE, "message", **describe(message))
            if args.count and received >= args.count:
                stop.set()
            await message.ack()

        await queue.consume(on_message)
        await stop.wait()
    emit(SOURCE, "stopped", received=received)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.tap", description="Print what an AMQP binding receives."
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--exchange", default="amq.topic", help="exchange (default amq.topic)")
    parser.add_argument("--key", default="#", help="binding key (default #)")
    parser.add_argument("--queue", default=None, help="durable queue name (default: exclusive)")
    parser.add_argument("--prefetch", type=int, default=10, help="basic.qos prefetch count")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    return parser


async def amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await tap(args, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    die_on_broken_pipe()
    try:
        return asyncio.run(amain(args))
    except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
        emit(SOURCE, "error", reason=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
