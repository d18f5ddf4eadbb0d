"""RPC (tutorial 6) the other way round: an AMQP client (aio-pika) calls a server that speaks
MQTT 5 (a device, say; paho-mqtt). The AMQP client uses direct reply-to
(`amq.rabbitmq.reply-to`) and publishes to `amq.topic` with key rpc.mqtt-fib. The MQTT 5 server,
subscribed to `rpc/mqtt-fib`, sees the reply address as a Response Topic in the gateway's
reserved namespace (`$amqp/reply/<queue>`) and the correlation_id as Correlation Data; it answers
by publishing to that Response Topic with the same Correlation Data, which the gateway delivers
to the AMQP reply queue.
One command: the MQTT server, the AMQP client, two requests."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import paho.mqtt.client as paho
from aio_pika.abc import AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, Expected, publish_properties, run

REPLY_TO = "amq.rabbitmq.reply-to"


def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def mqtt_server(answers: Expected[int]) -> AsyncPaho:
    server = await AsyncPaho.connect("fib-server")  # MQTT 5
    pending: set[asyncio.Task[None]] = set()

    def on_request(message: paho.MQTTMessage) -> None:
        response_topic = getattr(message.properties, "ResponseTopic", None)
        if not response_topic:
            answers.fail(f"request on {message.topic} has no Response Topic")
            return
        n = int(message.payload)
        print(f" [.] fib({n}), Response Topic {response_topic}")
        # The answer carries the request's Correlation Data back unchanged.
        correlation = getattr(message.properties, "CorrelationData", b"")
        properties = publish_properties(CorrelationData=correlation)
        reply = server.publish(response_topic, str(fibonacci(n)), qos=1, properties=properties)
        task = asyncio.ensure_future(reply)
        pending.add(task)  # keep a reference until the PUBACK
        task.add_done_callback(pending.discard)

    server.on_message = on_request
    await server.subscribe("rpc/mqtt-fib", qos=1)
    print(" [x] Awaiting RPC requests on rpc/mqtt-fib")
    return server


async def main() -> None:
    answers: Expected[int] = Expected(2, "RPC replies")
    server = await mqtt_server(answers)

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    questions: dict[str, int] = {}  # correlation_id -> n

    async def on_response(message: AbstractIncomingMessage) -> None:
        n = questions.get(message.correlation_id or "")
        if n is None:
            answers.fail(f"unknown correlation_id {message.correlation_id}")
            return
        result = int(message.body)
        print(f" [.] Got fib({n}) = {result}")
        if result != fibonacci(n):
            answers.fail(f"fib({n}) is not {result}")
        answers.add(n)

    reply_queue = await channel.get_queue(REPLY_TO, ensure=False)  # direct reply-to
    await reply_queue.consume(on_response, no_ack=True)

    amq_topic = await channel.get_exchange("amq.topic")
    for n in (10, 30):
        correlation_id = str(uuid.uuid4())
        questions[correlation_id] = n
        print(f" [x] Requesting fib({n})")
        request = aio_pika.Message(
            str(n).encode(), correlation_id=correlation_id, reply_to=REPLY_TO
        )
        await amq_topic.publish(request, routing_key="rpc.mqtt-fib")
    await answers.wait()
    await connection.close()
    await server.disconnect()


if __name__ == "__main__":
    run(main)
