"""amqtt's client (MQTT 3.1.1, asyncio) against the gateway: connect, subscribe, publish QoS
0/1/2 both ways, retained messages, persistent sessions; over TCP and WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from amqtt.client import MQTTClient

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    HOST,
    TIMEOUT,
    uid,
)

pytestmark = pytest.mark.interop

TRANSPORTS = ["mqtt", "ws"]


def url(gateway: RunningGateway, scheme: str) -> str:
    if scheme == "ws":
        return f"ws://{HOST}:{gateway.ws_port}/ws"
    return f"mqtt://{HOST}:{gateway.mqtt_port}/"


@asynccontextmanager
async def amqtt_client(
    gateway: RunningGateway, scheme: str = "mqtt", client_id: str | None = None, clean: bool = True
) -> AsyncIterator[MQTTClient]:
    client = MQTTClient(
        client_id=client_id or uid("amqtt"),
        config={"auto_reconnect": False, "cleansession": clean, "keep_alive": 30},
    )
    await client.connect(url(gateway, scheme), cleansession=clean)
    try:
        yield client
    finally:
        await client.disconnect()


@pytest.mark.parametrize("scheme", TRANSPORTS)
async def test_qos_0_1_2_both_ways(gateway: RunningGateway, scheme: str) -> None:
    topic = uid("amqtt")
    async with amqtt_client(gateway, scheme) as sub, amqtt_client(gateway, scheme) as pub:
        assert await sub.subscribe([(f"{topic}/q0", 0), (f"{topic}/q1", 1), (f"{topic}/+", 2)]) == [
            0,
            1,
            2,
        ]
        for qos in (0, 1, 2):
            await pub.publish(f"{topic}/m{qos}", f"p{qos}".encode(), qos=qos)
        got = []
        for _ in range(3):
            message = await sub.deliver_message(timeout_duration=TIMEOUT)
            assert message is not None
            got.append((message.topic, bytes(message.data), message.qos))
        assert sorted(got) == [(f"{topic}/m{q}", f"p{q}".encode(), q) for q in range(3)]


async def test_granted_qos_caps_delivery(gateway: RunningGateway) -> None:
    topic = uid("amqtt-cap")
    async with amqtt_client(gateway) as sub, amqtt_client(gateway) as pub:
        await sub.subscribe([(topic, 1)])
        await pub.publish(topic, b"two", qos=2)
        message = await sub.deliver_message(timeout_duration=TIMEOUT)
        assert message is not None
        assert message.qos == 1


@pytest.mark.parametrize("scheme", TRANSPORTS)
async def test_retained(gateway: RunningGateway, scheme: str) -> None:
    topic = uid("amqtt-ret")
    async with amqtt_client(gateway, scheme) as pub:
        await pub.publish(topic, b"last", qos=1, retain=True)
        async with amqtt_client(gateway, scheme) as sub:
            await sub.subscribe([(f"{topic}/#", 1)])  # "t/#" matches "t" too [MQTT-4.7.1-2]
            message = await sub.deliver_message(timeout_duration=TIMEOUT)
            assert message is not None
            assert (bytes(message.data), message.retain) == (b"last", True)
        await pub.publish(topic, b"", qos=1, retain=True)


async def test_persistent_session(gateway: RunningGateway) -> None:
    cid, topic = uid("amqtt-p"), uid("amqtt-p")
    async with amqtt_client(gateway, client_id=cid, clean=False) as sub:
        await sub.subscribe([(topic, 1)])
    async with amqtt_client(gateway) as pub:
        await pub.publish(topic, b"while away", qos=1)
    async with amqtt_client(gateway, client_id=cid, clean=False) as sub:
        message = await sub.deliver_message(timeout_duration=TIMEOUT)
        assert message is not None
        assert bytes(message.data) == b"while away"
