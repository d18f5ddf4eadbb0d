"""Routing by severity (tutorial 4) from the MQTT side: MQTT has no direct exchange; a topic
filter without wildcards is the direct binding. A device (paho-mqtt) publishes to
`logs/<severity>`; an MQTT subscriber that only saves errors subscribes to exactly `logs/error`,
and an AMQP console subscriber (aio-pika) binds its exclusive queue to `amq.topic` with
`logs.info`, `logs.warning` and `logs.error` (the same topics in AMQP form: `/` becomes `.`).
One command: both subscribers, one MQTT publisher, one log per severity."""

from __future__ import annotations

import aio_pika
import paho.mqtt.client as paho
from aio_pika.abc import AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, Expected, run

LOGS = [
    ("info", "Starting the report job"),
    ("warning", "Disk 80% full"),
    ("error", "Run. Run. Or it will explode."),
]


async def main() -> None:
    errors_to_disk = await AsyncPaho.connect("errors-to-disk")
    errors: Expected[str] = Expected(1, "errors-to-disk (logs/error)")

    def on_error(message: paho.MQTTMessage) -> None:
        print(f" [errors-to-disk] {message.topic}: '{message.payload.decode()}'")
        if message.topic != "logs/error":
            errors.fail(f"got {message.topic}")
        errors.add(message.topic)

    errors_to_disk.on_message = on_error
    await errors_to_disk.subscribe("logs/error", qos=1)
    print(" [errors-to-disk] Subscribed to logs/error")

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    for severity, _ in LOGS:
        await queue.bind("amq.topic", routing_key=f"logs.{severity}")
    console: Expected[str] = Expected(
        len(LOGS), "amqp console (logs.info, logs.warning, logs.error)"
    )

    async def on_log(message: AbstractIncomingMessage) -> None:
        print(f" [amqp console] {message.routing_key}: '{message.body.decode()}'")
        console.add(message.routing_key or "")

    await queue.consume(on_log, no_ack=True)
    print(f" [amqp console] Waiting for logs.info, logs.warning, logs.error in {queue.name}")

    publisher = await AsyncPaho.connect("emit-log-direct")
    for severity, text in LOGS:
        await publisher.publish(f"logs/{severity}", text, qos=1)
        print(f" [x] Sent logs/{severity}: '{text}'")

    await errors.wait()
    await console.wait()
    print("errors-to-disk got logs/error only; the AMQP console got all three severities")
    await publisher.disconnect()
    await errors_to_disk.disconnect()
    await connection.close()


if __name__ == "__main__":
    run(main)
