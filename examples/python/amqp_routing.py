"""RabbitMQ tutorial 4 ("Routing") with aio-pika: a direct exchange `direct_logs` delivers a
message to the queues bound with exactly its routing key, here the severity. One subscriber
only saves errors to disk; the other prints info, warning and error.
One command: starts both subscribers, emits one log per severity, checks who got what."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, Expected, run

EXCHANGE = "direct_logs"
LOGS = [
    ("info", "Starting the report job"),
    ("warning", "Disk 80% full"),
    ("error", "Run. Run. Or it will explode."),
]


async def receive_logs_direct(
    name: str, severities: list[str]
) -> tuple[AbstractConnection, Expected[str]]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    direct_logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT)
    queue = await channel.declare_queue(exclusive=True)
    for severity in severities:
        await queue.bind(direct_logs, routing_key=severity)
    expected = sum(1 for severity, _ in LOGS if severity in severities)
    received: Expected[str] = Expected(expected, f"{name} ({', '.join(severities)})")

    async def on_message(message: AbstractIncomingMessage) -> None:
        severity = message.routing_key or ""
        print(f" [{name}] {severity}: '{message.body.decode()}'")
        if severity not in severities:
            received.fail(f"got a {severity} message")
        received.add(severity)

    await queue.consume(on_message, no_ack=True)
    print(f" [{name}] Waiting for {', '.join(severities)} logs")
    return connection, received


async def main() -> None:
    subscribers = [
        await receive_logs_direct("errors to disk", ["error"]),
        await receive_logs_direct("console", ["info", "warning", "error"]),
    ]

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    direct_logs = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT)
    for severity, text in LOGS:
        await direct_logs.publish(aio_pika.Message(text.encode()), routing_key=severity)
        print(f" [x] Sent {severity}: '{text}'")

    for _, received in subscribers:
        await received.wait()
    print("errors to disk got error only; console got info, warning and error")
    await connection.close()
    for subscriber, _ in subscribers:
        await subscriber.close()


if __name__ == "__main__":
    run(main)
