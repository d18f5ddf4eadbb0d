"""RabbitMQ tutorial 3 ("Publish/Subscribe") with aio-pika: a fanout exchange `logs` copies every
message to each bound queue. Each subscriber declares its own exclusive, server-named queue
(amq.gen-...), which disappears when the subscriber goes away.
One command: starts two subscribers, emits two log lines, waits until both saw both."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, Expected, run

EXCHANGE = "logs"
LOGS = ["info: Hello World!", "warning: disk almost full"]


async def receive_logs(name: str) -> tuple[AbstractConnection, Expected[str]]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
    # No name: the server picks one; exclusive: only this connection, deleted with it.
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(logs)  # fanout ignores the routing key
    received: Expected[str] = Expected(len(LOGS), f"{name} logs")

    async def on_message(message: AbstractIncomingMessage) -> None:
        print(f" [{name}] {queue.name} '{message.body.decode()}'")
        received.add(message.body.decode())

    await queue.consume(on_message, no_ack=True)
    print(f" [{name}] Waiting for logs in {queue.name}")
    return connection, received


async def main() -> None:
    subscribers = [await receive_logs("subscriber 1"), await receive_logs("subscriber 2")]

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
    for log in LOGS:
        await logs.publish(aio_pika.Message(log.encode()), routing_key="")
        print(f" [x] Sent '{log}'")

    for _, received in subscribers:
        await received.wait()
    print(f"Each of the {len(subscribers)} subscribers received all {len(LOGS)} logs")
    await connection.close()
    for subscriber, _ in subscribers:
        await subscriber.close()


if __name__ == "__main__":
    run(main)
