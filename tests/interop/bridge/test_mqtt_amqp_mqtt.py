"""Route `mqtt_amqp_mqtt`: an MQTT message goes through an AMQP worker (pika, aio-pika, amqplib)
and back to MQTT. Request/response with Response Topic and Correlation Data (DESIGN.md section
6), a lossless property round trip, and QoS carried end to end."""

from __future__ import annotations

import aio_pika
import pika
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.gateway_runner import RunningGateway
from tests.interop.bridge.helpers import (
    MQTT_EXCHANGE,
    NodeRunner,
    amqp_channel,
    bound_queue,
    get_one,
    uid,
    v5_props,
)
from tests.interop.mqtt_helpers import (
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
)

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(
    "correlation", [b"req-42", b"\xff\x00binary", b"x" * 300], ids=["utf8", "binary", "long"]
)
def test_mqtt_amqp_mqtt_request_response_through_a_pika_worker(
    gateway: RunningGateway, correlation: bytes
) -> None:
    """The MQTT 5 requester's Response Topic and Correlation Data reach the worker as
    x-reply-to-topic and correlation_id (or x-correlation-id); the worker's reply to amq.topic
    with that key comes back to the requester with the same correlation data."""
    service = uid("svc")
    requester = Paho(gateway.mqtt_port)
    response_topic = f"{service}/reply/{requester.client_id}/v1.0"
    assert requester.subscribe(response_topic, 1) == [1]
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{service}.req")
        requester.publish(f"{service}/req", b"ping", qos=1, properties=props(
            ResponseTopic=response_topic, CorrelationData=correlation,
        ))  # fmt: skip
        _, request, body = get_one(channel, name)
        reply_key = request.headers["x-reply-to-topic"]
        assert reply_key == f"{service}.reply.{requester.client_id}.v1%2E0"
        if len(correlation) < 256 and correlation.isascii():
            assert request.correlation_id == correlation.decode()
            reply_props = pika.BasicProperties(correlation_id=request.correlation_id)
        else:
            assert request.correlation_id is None
            carried = request.headers["x-correlation-id"]
            assert (carried if isinstance(carried, bytes) else carried.encode()) == correlation
            reply_props = pika.BasicProperties(headers={"x-correlation-id": carried})
        channel.basic_publish(MQTT_EXCHANGE, reply_key, b"pong:" + body, reply_props)
    reply = requester.next()
    assert (reply.topic, reply.payload) == (response_topic, b"pong:ping")
    assert v5_props(reply).CorrelationData == correlation


async def test_mqtt_amqp_mqtt_request_response_through_an_aio_pika_worker(
    gateway: RunningGateway,
) -> None:
    service = uid("aiosvc")
    requester = Paho(gateway.mqtt_port)
    requester.subscribe(f"{service}/replies", 1)
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(MQTT_EXCHANGE, f"{service}.req")
        requester.publish(f"{service}/req", b"21", qos=1, properties=props(
            ResponseTopic=f"{service}/replies", CorrelationData=b"aio-7",
        ))  # fmt: skip
        request = await queue.get(timeout=5)
        await request.ack()
        assert request.correlation_id == "aio-7"
        assert request.headers["x-reply-to-topic"] == f"{service}.replies"
        exchange = await channel.get_exchange(MQTT_EXCHANGE)
        reply_key = request.headers["x-reply-to-topic"]
        assert isinstance(reply_key, str)
        await exchange.publish(aio_pika.Message(b"42", correlation_id=request.correlation_id),
                               routing_key=reply_key)  # fmt: skip
    reply = requester.next()
    assert reply.payload == b"42"
    assert v5_props(reply).CorrelationData == b"aio-7"


def test_mqtt_amqp_mqtt_request_response_through_an_amqplib_worker(
    gateway: RunningGateway, node: NodeRunner
) -> None:
    service = uid("jssvc")
    worker = node("worker", f"{service}.req")
    assert worker.next() == {"ready": True}
    requester = Paho(gateway.mqtt_port)
    requester.subscribe(f"{service}/replies/#", 1)
    requester.publish(f"{service}/req", b"hello", qos=1, properties=props(
        ResponseTopic=f"{service}/replies/1", CorrelationData=b"js-corr",
    ))  # fmt: skip
    request = worker.next()
    assert request["properties"]["correlationId"] == "js-corr"
    assert request["properties"]["headers"]["x-reply-to-topic"] == f"{service}.replies.1"
    assert worker.next() == {"replied": f"{service}.replies.1"}
    reply = requester.next()
    assert (reply.topic, reply.payload) == (f"{service}/replies/1", b"re:hello")
    assert v5_props(reply).CorrelationData == b"js-corr"
    assert v5_props(reply).ContentType == "text/plain"


def test_mqtt_amqp_mqtt_worker_republishing_properties_is_lossless(
    gateway: RunningGateway,
) -> None:
    """A worker consumes over AMQP and republishes with the properties it got: the MQTT 5
    subscriber sees every property as sent, user property order and duplicates included."""
    base = uid("rt")
    device = Paho(gateway.mqtt_port)
    listener = Paho(gateway.mqtt_port)
    listener.subscribe(f"{base}/out", 1)
    sent = props(
        ContentType="text/plain; charset=ütf", CorrelationData=b"\xff\x00",
        ResponseTopic=f"{base}/r/v1.0", MessageExpiryInterval=120, PayloadFormatIndicator=1,
        UserProperty=[("k", "1"), ("k", "2"), ("j", "0")],
    )  # fmt: skip
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{base}.in")
        device.publish(f"{base}/in", b"payload", qos=1, properties=sent)
        _, properties, body = get_one(channel, name)
        channel.basic_publish(MQTT_EXCHANGE, f"{base}.out", body, properties)
    message = listener.next()
    p = v5_props(message)
    assert (message.payload, message.qos) == (b"payload", 1)
    assert p.ContentType == "text/plain; charset=ütf"
    assert p.CorrelationData == b"\xff\x00"
    assert p.ResponseTopic == f"{base}/r/v1.0"
    assert 119 <= p.MessageExpiryInterval <= 120
    assert p.PayloadFormatIndicator == 1
    assert p.UserProperty == [("k", "1"), ("k", "2"), ("j", "0")]


@pytest.mark.parametrize("version", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
@pytest.mark.parametrize(("published", "granted"), [(2, 2), (2, 1), (1, 2), (0, 2)])
def test_mqtt_amqp_mqtt_qos_survives_the_worker(
    gateway: RunningGateway, version: MQTTProtocolVersion, published: int, granted: int
) -> None:
    """x-mqtt-publish-qos carries the MQTT QoS across AMQP (delivery_mode alone cannot say 2)."""
    base = uid("qrt")
    device = Paho(gateway.mqtt_port, version=version)
    listener = Paho(gateway.mqtt_port, version=version)
    listener.subscribe(f"{base}/out", granted)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{base}.in")
        device.publish(f"{base}/in", b"q", qos=published)
        _, properties, body = get_one(channel, name)
        assert properties.headers["x-mqtt-publish-qos"] == published
        channel.basic_publish(MQTT_EXCHANGE, f"{base}.out", body, properties)
    assert listener.next().qos == min(published, granted)
