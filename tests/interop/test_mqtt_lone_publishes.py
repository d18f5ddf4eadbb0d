"""A device publishing QoS 0 one message at a time (each PUBLISH alone in a read: the gateway's
`RawFanout`, gateway/mqtt/session_fanout.py) while the world around it changes: paho-mqtt
publishers and subscribers of both protocol levels, and a pika consumer, against the real
gateway. Every subscriber gets exactly what it subscribed to, in order."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    uid,
)

pytestmark = pytest.mark.interop


@pytest.fixture
def amqp(gateway: RunningGateway) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        connection.close()


def lone(pub: Paho, topic: str, payloads: list[bytes], *waiting_on: Paho) -> None:
    """Publish each payload on its own, after the one before reached ``waiting_on``: each
    PUBLISH is alone in the gateway's read, as from a device at a low rate."""
    for payload in payloads:
        assert pub.publish(topic, payload, qos=0) == 0
        for sub in waiting_on:
            message = sub.next()
            assert (message.topic, message.payload) == (topic, payload)


@pytest.mark.parametrize("pub_version", [V311, V5], ids=["v311", "v5"])
def test_lone_publishes_follow_subscriptions_and_reach_amqp(
    gateway: RunningGateway,
    amqp: pika.adapters.blocking_connection.BlockingChannel,
    pub_version: object,
) -> None:
    base = uid("lone")
    topic = f"{base}/temp"
    same = Paho(gateway.mqtt_port, version=pub_version)  # type: ignore[arg-type]
    other = Paho(gateway.mqtt_port, version=V5 if pub_version == V311 else V311)
    assert same.subscribe(f"{base}/#", 0) == [0]
    assert other.subscribe(topic, 0) == [0]
    pub = Paho(gateway.mqtt_port, version=pub_version)  # type: ignore[arg-type]

    first = [b"t%d" % n for n in range(8)]
    lone(pub, topic, first, same, other)

    # One subscriber leaves, another arrives: the next ones follow the new subscriptions.
    other.unsubscribe(topic)  # (it hears nothing more: checked below)
    late = Paho(gateway.mqtt_port, version=V311)
    assert late.subscribe(f"{base}/+", 0) == [0]
    second = [b"u%d" % n for n in range(8)]
    lone(pub, topic, second, same, late)
    other.assert_silent()

    # An AMQP queue bound to the topic needs a message of its own: it gets every one.
    queue = amqp.queue_declare("", exclusive=True).method.queue
    amqp.queue_bind(queue, "amq.topic", routing_key=f"{base}.#")
    third = [b"v%d" % n for n in range(8)]
    lone(pub, topic, third, same, late)
    got = []
    for _ in range(len(third)):
        method, _, body = amqp.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((method.routing_key, body))
    assert got == [(f"{base}.temp", payload) for payload in third]

    # A subscriber gone: the others still get each one once.
    same.close()
    fourth = [b"w%d" % n for n in range(8)]
    lone(pub, topic, fourth, late)
    late.assert_silent()
    pub.close()
    late.close()
    other.close()
