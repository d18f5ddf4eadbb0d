"""Topics (tutorial 5) from the MQTT side: an AMQP publisher (aio-pika) sends to `amq.topic` with
routing keys user.created, billing.error and user.error; MQTT subscribers (paho-mqtt) see them as
topics user/created, billing/error and user/error. MQTT's `+` is AMQP's `*` (one level), MQTT's
`#` is AMQP's `#`: subscribing to `user/+` is binding with `user.*`, `+/error` is `*.error`.
One command: two MQTT subscribers, one AMQP publisher, three messages."""

from __future__ import annotations

import aio_pika
import paho.mqtt.client as paho
from common import AMQP_URL, AsyncPaho, Expected, run

LOGS = [
    ("user.created", "user 42 signed up"),
    ("billing.error", "card declined for invoice 7"),
    ("user.error", "user 42 could not verify their email"),
]
SUBSCRIPTIONS = {
    "user/+": ["user/created", "user/error"],
    "+/error": ["billing/error", "user/error"],
}


async def receive_logs_topic(topic_filter: str, index: int) -> tuple[AsyncPaho, Expected[str]]:
    client = await AsyncPaho.connect(f"receive-logs-topic-{index}")
    wanted = SUBSCRIPTIONS[topic_filter]
    received: Expected[str] = Expected(len(wanted), f"subscriber {topic_filter}")

    def on_message(message: paho.MQTTMessage) -> None:
        print(f" [{topic_filter}] {message.topic}: '{message.payload.decode()}'")
        if message.topic not in wanted:
            received.fail(f"got {message.topic}")
        received.add(message.topic)

    client.on_message = on_message
    await client.subscribe(topic_filter, qos=1)
    print(f" [{topic_filter}] Subscribed")
    return client, received


async def main() -> None:
    subscribers = [
        await receive_logs_topic(topic_filter, index)
        for index, topic_filter in enumerate(SUBSCRIPTIONS, start=1)
    ]

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    amq_topic = await channel.get_exchange("amq.topic")  # always exists
    for key, text in LOGS:
        await amq_topic.publish(aio_pika.Message(text.encode()), routing_key=key)
        print(f" [x] Sent {key}: '{text}'")

    for _, received in subscribers:
        await received.wait()
    print("user/+ got user/created and user/error; +/error got billing/error and user/error")
    await connection.close()
    for client, _ in subscribers:
        await client.disconnect()


if __name__ == "__main__":
    run(main)
