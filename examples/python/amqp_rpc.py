"""RabbitMQ tutorial 6 ("RPC") with aio-pika: a server answers fib(n) requests from `rpc_queue`.
The client uses direct reply-to: it consumes the pseudo-queue `amq.rabbitmq.reply-to` (no queue
to declare) and sends requests with reply_to set to it and a correlation_id that matches each
answer to its question.
One command: starts the server, sends two requests at once, prints both answers."""

from __future__ import annotations

import uuid

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, Expected, run

QUEUE = "rpc_queue"
REPLY_TO = "amq.rabbitmq.reply-to"


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

    async def on_request(message: AbstractIncomingMessage) -> None:
        async with message.process():
            n = int(message.body)
            print(f" [.] fib({n})")
            response = aio_pika.Message(
                str(fibonacci(n)).encode(), correlation_id=message.correlation_id
            )
            await channel.default_exchange.publish(response, routing_key=message.reply_to or "")

    await queue.consume(on_request)
    print(" [x] Awaiting RPC requests")
    return connection


async def main() -> None:
    server = await rpc_server()

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    questions: dict[str, int] = {}  # correlation_id -> n
    answers: Expected[int] = Expected(2, "RPC replies")

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

    # Direct reply-to: consume the pseudo-queue (never declared) before publishing, no_ack.
    reply_queue = await channel.get_queue(REPLY_TO, ensure=False)
    await reply_queue.consume(on_response, no_ack=True)

    for n in (10, 30):
        correlation_id = str(uuid.uuid4())
        questions[correlation_id] = n
        print(f" [x] Requesting fib({n})")
        request = aio_pika.Message(
            str(n).encode(), correlation_id=correlation_id, reply_to=REPLY_TO
        )
        await channel.default_exchange.publish(request, routing_key=QUEUE)
    await answers.wait()
    await connection.close()
    await server.close()


if __name__ == "__main__":
    run(main)
