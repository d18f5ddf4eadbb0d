"""JSON work queues from the MQTT side: an MQTT 5 client (paho-mqtt, the shop front end)
publishes JSON jobs at QoS 1 with Content Type application/json to the topics `payment` and
`email`. The gateway routes them on `amq.topic` into the durable queues `payment` and `email`,
where AMQP workers (aio-pika) see content_type application/json and delivery_mode 2, and ack
after processing. PUBACK is the MQTT side's publisher confirm: for a durable queue it comes after
the store committed the job.
One command: both workers, one MQTT publisher, two jobs per queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, ExampleFailed, Expected, publish_properties, run

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
    await queue.bind("amq.topic", routing_key=name)  # MQTT topic `payment` = key `payment`
    await queue.purge()  # durable queues keep jobs from earlier runs
    done: Expected[dict[str, Any]] = Expected(len(JOBS[name]), f"{name} jobs")

    async def on_message(message: AbstractIncomingMessage) -> None:
        if message.content_type != "application/json":
            await message.reject()
            done.fail(f"content type {message.content_type}")
            return
        async with message.process():
            job = json.loads(message.body)
            mode = message.delivery_mode.value if message.delivery_mode else None
            print(
                f" [{name} worker] {HANDLERS[name](job)} "
                f"({message.content_type}, delivery_mode {mode})"
            )
        done.add(job)

    await queue.consume(on_message)
    print(f" [{name} worker] Waiting for jobs")
    return connection, channel, done


async def main() -> None:
    workers = [await start_worker("payment"), await start_worker("email")]

    front_end = await AsyncPaho.connect("shop-frontend")  # MQTT 5
    for topic, jobs in JOBS.items():
        for job in jobs:
            properties = publish_properties(ContentType="application/json")
            # Returns on PUBACK; a v5 PUBACK with an error reason code raises.
            await front_end.publish(topic, json.dumps(job), qos=1, properties=properties)
            print(f" [x] Published {topic} {json.dumps(job)} (PUBACK)")
    await front_end.disconnect()

    for _, _, done in workers:
        await done.wait()
    for _, channel, _ in workers:
        await channel.close()  # after the acks, so nothing is requeued
    check = await workers[0][0].channel()
    for name in JOBS:
        left = await check.declare_queue(name, passive=True)
        if left.declaration_result.message_count:
            raise ExampleFailed(f"{left.declaration_result.message_count} job(s) left in {name}")
    print("All MQTT jobs processed and acked by AMQP workers; payment and email are empty")
    for connection, _, _ in workers:
        await connection.close()


if __name__ == "__main__":
    run(main)
