"""RPC (tutorial 6) with an MQTT 5 client calling an AMQP server. MQTT 5 request/response: the
request carries a Response Topic (where to answer) and Correlation Data (which question this is).
The gateway hands them to AMQP as the header `x-reply-to-topic` (the topic in AMQP form, e.g.
rpc.replies.fib-client) and `correlation_id`. The AMQP server answers by publishing to
`amq.topic` with that routing key and the same correlation_id; the MQTT client receives the
answer on its response topic with its Correlation Data.
One command: the AMQP server (aio-pika), the MQTT client (paho-mqtt), two requests."""

from __future__ import annotations

import uuid

import aio_pika
import paho.mqtt.client as paho
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, Expected, publish_properties, run

QUEUE = "rpc_queue"
REQUEST_TOPIC = "rpc/fib"  # routing key rpc.fib
CLIENT_ID = "fib-client"
RESPONSE_TOPIC = f"rpc/replies/{CLIENT_ID}"


def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def rpc_server() -> AbstractConnection:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.declare_queue(QUEUE)
    await queue.bind("amq.topic", routing_key="rpc.fib")
    amq_topic = await channel.get_exchange("amq.topic")

    async def on_request(message: AbstractIncomingMessage) -> None:
        async with message.process():
            n = int(message.body)
            answer = aio_pika.Message(
                str(fibonacci(n)).encode(), correlation_id=message.correlation_id
            )
            if message.reply_to:  # an AMQP caller
                await channel.default_exchange.publish(answer, routing_key=message.reply_to)
                return
            reply_key = str(message.headers["x-reply-to-topic"])  # an MQTT 5 caller's topic
            print(f' [.] fib({n}), reply to amq.topic "{reply_key}"')
            await amq_topic.publish(answer, routing_key=reply_key)

    await queue.consume(on_request)
    print(f' [x] Awaiting RPC requests on {QUEUE} (bound to amq.topic "rpc.fib")')
    return connection


async def main() -> None:
    server = await rpc_server()

    client = await AsyncPaho.connect(CLIENT_ID)  # MQTT 5
    questions: dict[bytes, int] = {}  # Correlation Data -> n
    answers: Expected[int] = Expected(2, "RPC replies")

    def on_message(message: paho.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        n = questions.get(correlation) if correlation is not None else None
        if n is None:
            answers.fail(f"unexpected reply on {message.topic}")
            return
        result = int(message.payload)
        print(f" [.] Got fib({n}) = {result} on {message.topic}")
        if result != fibonacci(n):
            answers.fail(f"fib({n}) is not {result}")
        answers.add(n)

    client.on_message = on_message
    await client.subscribe(RESPONSE_TOPIC, qos=1)

    for n in (10, 30):
        correlation_data = str(uuid.uuid4()).encode()
        questions[correlation_data] = n
        print(f" [x] Requesting fib({n})")
        properties = publish_properties(
            ResponseTopic=RESPONSE_TOPIC, CorrelationData=correlation_data
        )
        await client.publish(REQUEST_TOPIC, str(n), qos=1, properties=properties)
    await answers.wait()
    await client.disconnect()
    await server.close()


if __name__ == "__main__":
    run(main)
