"""RabbitMQ tutorial 5 ("Topics") with aio-pika: a topic exchange `topic_logs` matches routing
keys word by word; `*` stands for exactly one word, `#` for zero or more.
One command: binds `user.*` and `*.error`, emits user.created, billing.error and user.error,
checks that user.error reached both and the others exactly one."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, Expected, run

EXCHANGE = "topic_logs"
LOGS = [
    ("user.created", "user 42 signed up"),
    ("billing.error", "card declined for invoice 7"),
    ("user.error", "user 42 could not verify their email"),
]
SUBSCRIPTIONS = {
    "user.*": ["user.created", "user.error"],
    "*.error": ["billing.error", "user.error"],
}


async def receive_logs_topic(binding_key: str) -> tuple[AbstractConnection, Expected[str]]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    topic_logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(topic_logs, routing_key=binding_key)
    wanted = SUBSCRIPTIONS[binding_key]
    received: Expected[str] = Expected(len(wanted), f"binding {binding_key}")

    async def on_message(message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        print(f" [{binding_key}] {key}: '{message.body.decode()}'")
        if key not in wanted:
            received.fail(f"got {key}")
        received.add(key)

    await queue.consume(on_message, no_ack=True)
    print(f" [{binding_key}] Waiting for logs")
    return connection, received


async def main() -> None:
    subscribers = [await receive_logs_topic(key) for key in SUBSCRIPTIONS]

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    topic_logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC)
    for key, text in LOGS:
        await topic_logs.publish(aio_pika.Message(text.encode()), routing_key=key)
        print(f" [x] Sent {key}: '{text}'")

    for _, received in subscribers:
        await received.wait()
    print("user.* got user.created and user.error; *.error got billing.error and user.error")
    await connection.close()
    for subscriber, _ in subscribers:
        await subscriber.close()


if __name__ == "__main__":
    run(main)
