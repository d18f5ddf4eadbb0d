"""Work queues for a shop backend with aio-pika: JSON jobs on two durable queues, `payment` and
`email`, one worker per queue that acks after processing. The producer's channel uses publisher
confirms: each `publish` returns once the broker has taken the job (for a persistent message on
a durable queue, once it is on disk) and raises if the broker nacks it.
One command: starts both workers, publishes two jobs per queue, waits until all are acked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, ExampleFailed, Expected, run

JOBS: dict[str, list[dict[str, Any]]] = {
    "payment": [
        {"orderId": 1001, "amount": 42.5, "currency": "EUR"},
        {"orderId": 1002, "amount": 9.99, "currency": "EUR"},
    ],
    "email": [
        {"to": "ada@example.com", "template": "order-confirmed", "orderId": 1001},
        {"to": "alan@example.com", "template": "order-confirmed", "orderId": 1002},
    ],
}

HANDLERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "payment": lambda job: (
        f"charged {job['amount']:.2f} {job['currency']} for order {job['orderId']}"
    ),
    "email": lambda job: f"sent '{job['template']}' to {job['to']}",
}


async def start_worker(
    name: str,
) -> tuple[AbstractConnection, AbstractChannel, Expected[dict[str, Any]]]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.declare_queue(name, durable=True)
    done: Expected[dict[str, Any]] = Expected(len(JOBS[name]), f"{name} jobs")

    async def on_message(message: AbstractIncomingMessage) -> None:
        if message.content_type != "application/json":
            await message.reject()  # not ours to parse: drop it (or dead-letter it)
            done.fail(f"content type {message.content_type}")
            return
        async with message.process():  # ack after processing; an exception rejects it
            job = json.loads(message.body)
            print(f" [{name} worker] {HANDLERS[name](job)}")
        done.add(job)

    await queue.consume(on_message)
    print(f" [{name} worker] Waiting for jobs")
    return connection, channel, done


async def main() -> None:
    producer = await aio_pika.connect(AMQP_URL)
    channel = await producer.channel(publisher_confirms=True)
    for name in JOBS:
        queue = await channel.declare_queue(name, durable=True)
        await queue.purge()  # durable queues keep jobs from earlier runs
    workers = [await start_worker("payment"), await start_worker("email")]

    for name, jobs in JOBS.items():
        for job in jobs:
            message = aio_pika.Message(
                json.dumps(job).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, routing_key=name)  # waits for ack
            print(f" [x] Queued {name} {json.dumps(job)} (confirmed)")

    for _, _, done in workers:
        await done.wait()
    for connection, worker_channel, _ in workers:
        await worker_channel.close()  # after the acks, so nothing is requeued
        await connection.close()
    for name in JOBS:
        left = await channel.declare_queue(name, passive=True)
        if left.declaration_result.message_count:
            raise ExampleFailed(f"{left.declaration_result.message_count} job(s) left in {name}")
    print("All jobs processed and acked; payment and email are empty")
    await producer.close()


if __name__ == "__main__":
    run(main)
