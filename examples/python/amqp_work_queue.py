"""RabbitMQ tutorials 1 and 2 ("Hello World!", "Work queues") with aio-pika: a durable queue,
persistent messages, prefetch 1 and manual acks. Two workers share the tasks; a task leaves the
queue only when a worker acks it, so a worker that dies mid-task loses nothing.
One command: starts two workers, sends four tasks, waits until all are done."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, ExampleFailed, Expected, run

QUEUE = "task_queue"
TASKS = ["First task.", "Second task..", "Third task...", "Fourth task...."]


async def worker(name: str, done: Expected[str]) -> tuple[AbstractConnection, AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)  # no new task until this one is acked
    queue = await channel.declare_queue(QUEUE, durable=True)

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():  # acks when the block ends without an exception
            print(f" [{name}] Received {message.body.decode()}")
            # The tutorial sleeps a second per dot here; the work is instant in this example.
            print(f" [{name}] Done")
        done.add(message.body.decode())

    await queue.consume(on_message)
    print(f" [{name}] Waiting for messages in {QUEUE}")
    return connection, channel


async def main() -> None:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(QUEUE, durable=True)
    await queue.purge()  # a durable queue keeps tasks from earlier runs

    done: Expected[str] = Expected(len(TASKS), "tasks done")
    workers = [await worker("worker 1", done), await worker("worker 2", done)]

    for task in TASKS:
        message = aio_pika.Message(task.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=QUEUE)
        print(f" [x] Sent '{task}'")
    await done.wait()

    # Closing a worker's channel requeues what it left unacked: the queue must be empty.
    for worker_connection, worker_channel in workers:
        await worker_channel.close()
        await worker_connection.close()
    left = await channel.declare_queue(QUEUE, passive=True)
    count = left.declaration_result.message_count
    if count:
        raise ExampleFailed(f"{count} task(s) left in {QUEUE}")
    print(f"All {len(TASKS)} tasks done and acked; {QUEUE} is empty")
    await connection.close()


if __name__ == "__main__":
    run(main)
