"""The work queue (tutorials 1 and 2) with an MQTT producer: MQTT has no queues, so an MQTT client
(paho-mqtt) publishes tasks to the topic `tasks` and the gateway routes them on `amq.topic` with
routing key `tasks` into the durable queue `task_queue`, where two AMQP workers (aio-pika) share
them with prefetch 1 and manual acks.
QoS 1 plays the part of publisher confirms: PUBACK arrives once the gateway has the task.
One command: starts the workers, publishes four tasks over MQTT, waits until all are acked."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from common import AMQP_URL, AsyncPaho, ExampleFailed, Expected, run

QUEUE = "task_queue"
TOPIC = "tasks"  # MQTT topic a/b/c is AMQP routing key a.b.c on amq.topic
TASKS = ["First task.", "Second task..", "Third task...", "Fourth task...."]


async def worker(name: str, done: Expected[str]) -> tuple[AbstractConnection, AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.declare_queue(QUEUE, durable=True)
    await queue.bind("amq.topic", routing_key=TOPIC)

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            # QoS 1 arrives as a persistent message (delivery_mode 2).
            mode = message.delivery_mode.value if message.delivery_mode else None
            print(f" [{name}] Received {message.body.decode()} (delivery_mode {mode})")
            print(f" [{name}] Done")
        done.add(message.body.decode())

    await queue.consume(on_message)
    print(f' [{name}] Waiting for messages in {QUEUE} (bound to amq.topic "{TOPIC}")')
    return connection, channel


async def main() -> None:
    admin = await aio_pika.connect(AMQP_URL)
    admin_channel = await admin.channel()
    queue = await admin_channel.declare_queue(QUEUE, durable=True)
    await queue.purge()  # a durable queue keeps tasks from earlier runs

    done: Expected[str] = Expected(len(TASKS), "tasks done")
    workers = [await worker("worker 1", done), await worker("worker 2", done)]

    producer = await AsyncPaho.connect("new-task", mqtt5=False)  # plain MQTT 3.1.1 is enough
    for task in TASKS:
        await producer.publish(TOPIC, task, qos=1)  # returns on PUBACK
        print(f" [x] Sent '{task}' (PUBACK: the gateway has it)")
    await producer.disconnect()
    await done.wait()

    for connection, channel in workers:
        await channel.close()  # after their acks: anything unacked would be requeued
        await connection.close()
    left = await admin_channel.declare_queue(QUEUE, passive=True)
    if left.declaration_result.message_count:
        raise ExampleFailed(f"{left.declaration_result.message_count} task(s) left in {QUEUE}")
    print(f"All {len(TASKS)} MQTT tasks done and acked by AMQP workers; {QUEUE} is empty")
    await admin.close()


if __name__ == "__main__":
    run(main)
