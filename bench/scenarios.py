"""The scenarios: who connects where, what is published, and what counts as settled.

Each scenario function sets up its clients against one broker, drives one run through a Meter and
closes every connection it opened, whatever happens. `--count` is the number of messages a run
moves end to end (for fan-out: deliveries, so the publisher sends count / subscribers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.amqp_wire import AmqpClient, amqp_connect, publish
from bench.meter import Meter, Pacer, RunStalled
from bench.mqtt_wire import MqttClient, mqtt_connect, publish_qos0, publish_qos1

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Params:
    count: int = 50_000
    payload: int = 64
    window: int = 1000
    ack_window: int = 100
    batch: int = 100
    publishers: int = 4
    subscribers: int = 50
    prefetch: int = 100
    rate: float = 0.0
    run_timeout: float = 60.0
    idle_timeout: float = 5.0
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Target:
    mqtt_port: int | None
    amqp_port: int | None


RunFn = Callable[[Target, Params, str], Awaitable[Meter]]


@dataclass(frozen=True)
class Scenario:
    name: str
    needs: frozenset[str]
    measures: str  # what msgs/s counts
    latency: str  # what the latency percentiles are
    run: RunFn


def _pacer(params: Params) -> Pacer | None:
    if params.rate <= 0:
        return None
    # About one write per millisecond at the target rate.
    return Pacer(params.rate, max(1, min(params.batch, int(params.rate // 1000))))


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Clients:
    """Every connection a run opened, closed at the end even when the run failed."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.mqtt: list[MqttClient] = []
        self.amqp: list[AmqpClient] = []

    async def mqtt_client(self, client_id: str, meter: Meter | None) -> MqttClient:
        assert self.target.mqtt_port is not None
        client = await mqtt_connect(HOST, self.target.mqtt_port, client_id, meter)
        self.mqtt.append(client)
        return client

    async def amqp_client(self, meter: Meter | None) -> AmqpClient:
        assert self.target.amqp_port is not None
        client = await amqp_connect(HOST, self.target.amqp_port, meter)
        self.amqp.append(client)
        return client

    async def close(self) -> None:
        await asyncio.gather(
            *(c.disconnect() for c in self.mqtt),
            *(c.close() for c in self.amqp),
            return_exceptions=True,
        )


async def _drive(meter: Meter, publishers: list[Coroutine[Any, Any, None]], params: Params) -> None:
    """Run the publishers until every expected message is settled.

    A run that stalls or reaches its deadline ends with what it has and says why in `error`.
    """
    loop = asyncio.get_running_loop()
    meter.start()
    deadline = loop.time() + params.run_timeout
    tasks = [loop.create_task(p) for p in publishers]
    finished = loop.create_task(meter.wait_finished(deadline, params.idle_timeout))
    try:
        await asyncio.wait([finished, *tasks], return_when=asyncio.FIRST_EXCEPTION)
        for task in (*tasks, finished):
            if task.done():
                task.result()  # re-raise the first failure
        await finished
    except RunStalled as exc:
        meter.error = str(exc)
    finally:
        meter.stop()
        for task in (*tasks, finished):
            task.cancel()
        await asyncio.gather(*tasks, finished, return_exceptions=True)


def _ack_meter(params: Params) -> Meter:
    """Acknowledgements (PUBACK, confirms) settle and carry the latency; deliveries are counted."""
    return Meter(
        params.count,
        params.count,
        params.ack_window,
        settle_on_delivery=False,
        latency_on_delivery=False,
    )


async def mqtt_qos0_fanin(target: Target, params: Params, tag: str) -> Meter:
    """N publishers, one subscriber, one topic, QoS 0: deliveries per second."""
    topic = f"bench/fanin/{tag}"
    meter = Meter(params.count, params.count, params.window)
    clients = _Clients(target)
    try:
        async with asyncio.timeout(params.connect_timeout):
            sub = await clients.mqtt_client(f"{tag}-sub", meter)
            await sub.subscribe(topic, 0)
            pubs = [
                await clients.mqtt_client(f"{tag}-pub{i}", None) for i in range(params.publishers)
            ]
        pace = _pacer(params)
        shares = _split(params.count, len(pubs))
        p = params
        await _drive(
            meter,
            [
                publish_qos0(pub, meter, topic, n, p.payload, p.batch, p.idle_timeout, pace)
                for pub, n in zip(pubs, shares, strict=True)
            ],
            params,
        )
    finally:
        await clients.close()
    return meter


async def mqtt_qos1(target: Target, params: Params, tag: str) -> Meter:
    """One QoS 1 publisher with `ack_window` PUBLISHes in flight; a QoS 1 subscriber PUBACKs."""
    topic = f"bench/qos1/{tag}"
    meter = _ack_meter(params)
    clients = _Clients(target)
    p = params
    try:
        async with asyncio.timeout(params.connect_timeout):
            sub = await clients.mqtt_client(f"{tag}-sub", meter)
            await sub.subscribe(topic, 1)
            pub = await clients.mqtt_client(f"{tag}-pub", meter)
        publisher = publish_qos1(
            pub, meter, topic, p.count, p.payload, p.batch, p.idle_timeout, _pacer(p)
        )
        await _drive(meter, [publisher], params)
    finally:
        await clients.close()
    return meter


async def mqtt_fanout(target: Target, params: Params, tag: str) -> Meter:
    """One QoS 0 publisher, M subscribers on a `+` wildcard filter: deliveries per second."""
    fanout = params.subscribers
    published = max(1, params.count // fanout)
    meter = Meter(published * fanout, published * fanout, params.window, fanout=fanout)
    clients = _Clients(target)
    p = params
    try:
        async with asyncio.timeout(params.connect_timeout):
            subs = await asyncio.gather(
                *(clients.mqtt_client(f"{tag}-sub{i}", meter) for i in range(fanout))
            )
            await asyncio.gather(*(s.subscribe(f"bench/fanout/{tag}/+", 0) for s in subs))
            pub = await clients.mqtt_client(f"{tag}-pub", None)
        topic = f"bench/fanout/{tag}/t"
        publisher = publish_qos0(
            pub, meter, topic, published, p.payload, p.batch, p.idle_timeout, _pacer(p)
        )
        await _drive(meter, [publisher], params)
    finally:
        await clients.close()
    return meter


async def _amqp_pubsub(
    target: Target, params: Params, *, manual_ack: bool, confirms: bool
) -> Meter:
    meter = _ack_meter(params) if confirms else Meter(params.count, params.count, params.window)
    clients = _Clients(target)
    p = params
    try:
        async with asyncio.timeout(params.connect_timeout):
            consumer = await clients.amqp_client(meter)
            queue = await consumer.declare_queue("")
            await consumer.consume(queue, params.prefetch, manual_ack)
            producer = await clients.amqp_client(meter)
            if confirms:
                await producer.confirm_select()
        publisher = publish(
            producer,
            meter,
            "",
            queue,
            p.count,
            p.payload,
            p.batch,
            p.idle_timeout,
            confirms=confirms,
            pace=_pacer(p),
        )
        await _drive(meter, [publisher], params)
    finally:
        await clients.close()
    return meter


async def amqp_noack(target: Target, params: Params, tag: str) -> Meter:
    """Default exchange to one queue, one consumer with no-ack: deliveries per second."""
    return await _amqp_pubsub(target, params, manual_ack=False, confirms=False)


async def amqp_ack(target: Target, params: Params, tag: str) -> Meter:
    """As amqp_noack, the consumer with `prefetch` and a multiple ack per read."""
    return await _amqp_pubsub(target, params, manual_ack=True, confirms=False)


async def amqp_confirm(target: Target, params: Params, tag: str) -> Meter:
    """Publisher confirms with `ack_window` unconfirmed messages: confirms per second."""
    return await _amqp_pubsub(target, params, manual_ack=False, confirms=True)


async def mqtt_to_amqp(target: Target, params: Params, tag: str) -> Meter:
    """MQTT QoS 0 publisher to an AMQP no-ack consumer bound to amq.topic."""
    meter = Meter(params.count, params.count, params.window)
    clients = _Clients(target)
    p = params
    try:
        async with asyncio.timeout(params.connect_timeout):
            consumer = await clients.amqp_client(meter)
            queue = await consumer.declare_queue("")
            await consumer.bind(queue, "amq.topic", f"bench.cross.{tag}")
            await consumer.consume(queue, params.prefetch, False)
            pub = await clients.mqtt_client(f"{tag}-pub", None)
        topic = f"bench/cross/{tag}"
        publisher = publish_qos0(
            pub, meter, topic, p.count, p.payload, p.batch, p.idle_timeout, _pacer(p)
        )
        await _drive(meter, [publisher], params)
    finally:
        await clients.close()
    return meter


async def amqp_to_mqtt(target: Target, params: Params, tag: str) -> Meter:
    """AMQP publisher to amq.topic, an MQTT QoS 0 subscriber on the matching topic."""
    meter = Meter(params.count, params.count, params.window)
    clients = _Clients(target)
    p = params
    try:
        async with asyncio.timeout(params.connect_timeout):
            sub = await clients.mqtt_client(f"{tag}-sub", meter)
            await sub.subscribe(f"bench/cross/{tag}", 0)
            producer = await clients.amqp_client(None)
        publisher = publish(
            producer,
            meter,
            "amq.topic",
            f"bench.cross.{tag}",
            p.count,
            p.payload,
            p.batch,
            p.idle_timeout,
            pace=_pacer(p),
        )
        await _drive(meter, [publisher], params)
    finally:
        await clients.close()
    return meter


_MQTT = frozenset({"mqtt"})
_AMQP = frozenset({"amqp"})
_BOTH = frozenset({"mqtt", "amqp"})

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("mqtt_qos0_fanin", _MQTT, "deliveries", "publish to delivery", mqtt_qos0_fanin),
        Scenario("mqtt_qos1", _MQTT, "PUBACKs", "PUBLISH to PUBACK", mqtt_qos1),
        Scenario("mqtt_fanout", _MQTT, "deliveries", "publish to delivery", mqtt_fanout),
        Scenario("amqp_noack", _AMQP, "deliveries", "publish to delivery", amqp_noack),
        Scenario("amqp_ack", _AMQP, "deliveries", "publish to delivery", amqp_ack),
        Scenario("amqp_confirm", _AMQP, "confirms", "publish to confirm", amqp_confirm),
        Scenario("mqtt_to_amqp", _BOTH, "deliveries", "publish to delivery", mqtt_to_amqp),
        Scenario("amqp_to_mqtt", _BOTH, "deliveries", "publish to delivery", amqp_to_mqtt),
    )
}
