"""Publish/subscribe (tutorial 3) from the MQTT side: every MQTT subscription is its own queue
inside the gateway, so fanout is what MQTT always does: each subscriber to `logs` gets a copy.
An AMQP subscriber (aio-pika) joins in the tutorial's way: an exclusive server-named queue, bound
to `amq.topic` (where MQTT topics live) with routing key `logs`.
One command: two MQTT subscribers and one AMQP subscriber (paho-mqtt and aio-pika), an MQTT
publisher, two log lines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika
import paho.mqtt.client as paho
from aio_pika.abc import AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, Expected, run

TOPIC = "logs"
LOGS = ["info: Hello World!", "warning: disk almost full"]

Closer = Callable[[], Awaitable[None]]


async def mqtt_subscriber(name: str) -> tuple[Closer, Expected[str]]:
    client = await AsyncPaho.connect(name)
    received: Expected[str] = Expected(len(LOGS), f"{name} logs")

    def on_message(message: paho.MQTTMessage) -> None:
        print(f" [{name}] {message.topic} '{message.payload.decode()}'")
        received.add(message.payload.decode())

    client.on_message = on_message
    await client.subscribe(TOPIC, qos=0)  # returns on SUBACK
    print(f" [{name}] Subscribed to {TOPIC}")
    return client.disconnect, received


async def amqp_subscriber(name: str) -> tuple[Closer, Expected[str]]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("amq.topic", routing_key=TOPIC)
    received: Expected[str] = Expected(len(LOGS), f"{name} logs")

    async def on_message(message: AbstractIncomingMessage) -> None:
        print(f" [{name}] {queue.name} '{message.body.decode()}'")
        received.add(message.body.decode())

    await queue.consume(on_message, no_ack=True)
    print(f" [{name}] Waiting for logs in {queue.name}")
    return connection.close, received


async def main() -> None:
    subscribers = [
        await mqtt_subscriber("receive-logs-1"),
        await mqtt_subscriber("receive-logs-2"),
        await amqp_subscriber("amqp subscriber"),
    ]

    publisher = await AsyncPaho.connect("emit-log")
    for log in LOGS:
        await publisher.publish(TOPIC, log, qos=0)
        print(f" [x] Sent '{log}'")

    for _, received in subscribers:
        await received.wait()
    print(
        f"Each of the {len(subscribers)} subscribers (2 MQTT, 1 AMQP) received all {len(LOGS)} logs"
    )
    await publisher.disconnect()
    for close, _ in subscribers:
        await close()


if __name__ == "__main__":
    run(main)
