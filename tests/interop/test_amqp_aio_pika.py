"""aio-pika (asyncio, aiormq underneath) against the gateway: confirms, returns, iterators with
prefetch, its RPC and master/worker patterns, exchange-to-exchange bindings, channel errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aio_pika.exceptions
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.patterns import RPC, Master

from tests.gateway_runner import RunningGateway

pytestmark = pytest.mark.interop

TIMEOUT = 5.0


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def connection(gateway: RunningGateway) -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}/")
    try:
        yield conn
    finally:
        await conn.close()


async def test_confirmed_publish_and_iterator_with_prefetch(
    connection: AbstractRobustConnection,
) -> None:
    channel = await connection.channel()  # publisher confirms on by default
    await channel.set_qos(prefetch_count=2)
    queue = await channel.declare_queue(uid("aio"), auto_delete=True)
    for i in range(5):
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(str(i).encode(), headers={"i": i}), routing_key=queue.name
        )
        assert confirmation is not None
    bodies = []
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                assert message.headers["i"] == int(message.body)
                bodies.append(message.body)
            if len(bodies) == 5:
                break
    assert bodies == [str(i).encode() for i in range(5)]


async def test_mandatory_return_raises(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel(on_return_raises=True)
    exchange = await channel.get_exchange("amq.direct")
    with pytest.raises(aio_pika.exceptions.DeliveryError) as err:
        await exchange.publish(aio_pika.Message(b"lost"), routing_key=uid("nobody"))
    returned = err.value.message
    assert returned is not None
    assert returned.body == b"lost"


async def test_get_and_get_empty(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    assert await queue.get(fail=False) is None
    await channel.default_exchange.publish(aio_pika.Message(b"one"), routing_key=queue.name)
    message = await queue.get(timeout=TIMEOUT)
    assert message is not None
    assert message.body == b"one"
    await message.ack()


async def test_rpc_pattern(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    rpc = await RPC.create(channel)
    name = uid("multiply")

    async def multiply(*, x: int, y: int) -> int:
        return x * y

    await rpc.register(name, multiply, auto_delete=True)
    assert await asyncio.wait_for(rpc.proxy.__getattr__(name)(x=6, y=7), TIMEOUT) == 42
    await rpc.close()


async def test_master_worker_pattern(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    master = Master(channel)
    done: asyncio.Queue[int] = asyncio.Queue()

    async def worker(*, n: int) -> None:
        await done.put(n)

    name = uid("jobs")
    await master.create_worker(name, worker, auto_delete=True)
    for n in range(3):
        await master.proxy.__getattr__(name)(n=n)
    got = sorted([await asyncio.wait_for(done.get(), TIMEOUT) for _ in range(3)])
    assert got == [0, 1, 2]


async def test_exchange_to_exchange_binding(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    source = await channel.declare_exchange(
        uid("src"), aio_pika.ExchangeType.TOPIC, auto_delete=True
    )
    target = await channel.declare_exchange(
        uid("dst"), aio_pika.ExchangeType.FANOUT, auto_delete=True
    )
    await target.bind(source, routing_key="sensor.#")
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(target)
    await source.publish(aio_pika.Message(b"21.5"), routing_key="sensor.kitchen.temp")
    await source.publish(aio_pika.Message(b"skip"), routing_key="actuator.door")
    message = await queue.get(timeout=TIMEOUT)
    assert message is not None
    assert (message.body, message.routing_key) == (b"21.5", "sensor.kitchen.temp")
    await message.ack()
    assert await queue.get(fail=False) is None


async def test_channel_error_keeps_the_connection(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await channel.declare_queue(uid("missing"), passive=True)
    other = await connection.channel()
    name = uid("after-404")
    await other.declare_queue(name, exclusive=True)
    assert (await other.declare_queue(name, passive=True)).name == name


async def test_nack_requeue_redelivers(connection: AbstractRobustConnection) -> None:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await channel.default_exchange.publish(aio_pika.Message(b"again"), routing_key=queue.name)
    seen: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(seen.put)
    first = await asyncio.wait_for(seen.get(), TIMEOUT)
    assert not first.redelivered
    await first.nack(requeue=True)
    second = await asyncio.wait_for(seen.get(), TIMEOUT)
    assert (second.body, second.redelivered) == (b"again", True)
    await second.ack()
