"""Route `amqp_mqtt_amqp`: an AMQP message goes through an MQTT 5 client and back to AMQP.

Request/response: an AMQP requester (pika, amqplib) names its reply queue in `reply_to` (a plain
queue or direct reply-to); the MQTT 5 responder gets `$amqp/reply/<queue>` as Response Topic and
the correlation id as Correlation Data, publishes its answer to that topic, and the requester
gets it with its correlation id. Also: properties and QoS carried through an MQTT republisher."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.gateway_runner import RunningGateway
from tests.interop.bridge.helpers import (
    MQTT_EXCHANGE,
    TIMEOUT,
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

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def answer_one(responder: Paho, reply: bytes) -> Any:
    """What an MQTT 5 responder does: publish to the Response Topic it was given, with the
    Correlation Data it was given. Returns the request's properties."""
    request = responder.next()
    p = v5_props(request)
    assert p.ResponseTopic.startswith("$amqp/reply/")
    code = responder.publish(p.ResponseTopic, reply, qos=1,
                             properties=props(CorrelationData=p.CorrelationData))  # fmt: skip
    assert code == 0x00, f"PUBACK {code:#x}: {p.ResponseTopic} did not reach the reply queue"
    return p


def test_amqp_mqtt_amqp_pika_requester_with_a_reply_queue(gateway: RunningGateway) -> None:
    service = uid("svc")
    responder = Paho(gateway.mqtt_port)
    responder.subscribe(f"{service}/req", 1)
    with amqp_channel(gateway) as channel:
        reply_queue: str = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish(
            MQTT_EXCHANGE,
            f"{service}.req",
            b"ping",
            pika.BasicProperties(reply_to=reply_queue, correlation_id="r-1"),
        )
        request = answer_one(responder, b"pong")
        assert request.ResponseTopic == f"$amqp/reply/{reply_queue}"
        assert request.CorrelationData == b"r-1"
        method, properties, body = get_one(channel, reply_queue)
    assert body == b"pong"
    assert properties.correlation_id == "r-1"
    assert (method.exchange, method.routing_key) == ("", reply_queue)


def test_amqp_mqtt_amqp_pika_requester_with_direct_reply_to(gateway: RunningGateway) -> None:
    service = uid("direct")
    responder = Paho(gateway.mqtt_port)
    responder.subscribe(f"{service}/req", 1)
    replies: list[tuple[pika.BasicProperties, bytes]] = []
    with amqp_channel(gateway) as channel:
        channel.basic_consume(DIRECT_REPLY_TO, lambda _ch, _m, p, b: replies.append((p, b)),
                              auto_ack=True)  # fmt: skip
        channel.basic_publish(MQTT_EXCHANGE, f"{service}.req", b"ping",
                              pika.BasicProperties(reply_to=DIRECT_REPLY_TO,
                                                   correlation_id="d-1"))  # fmt: skip
        request = answer_one(responder, b"pong")
        # The pseudo queue's name is made per channel: amq.rabbitmq.reply-to.<token>.
        assert request.ResponseTopic.startswith(f"$amqp/reply/{DIRECT_REPLY_TO}.")
        connection = channel.connection
        connection.process_data_events(time_limit=0)
        deadline = TIMEOUT
        while not replies and deadline > 0:
            connection.process_data_events(time_limit=0.05)
            deadline -= 0.05
    assert replies, "the direct reply-to consumer got no reply"
    [(properties, body)] = replies
    assert (body, properties.correlation_id) == (b"pong", "d-1")


@pytest.mark.parametrize("reply_mode", ["plain", "direct"])
def test_amqp_mqtt_amqp_amqplib_requester(
    gateway: RunningGateway, node: NodeRunner, reply_mode: str
) -> None:
    service = uid("jsreq")
    responder = Paho(gateway.mqtt_port)
    responder.subscribe(f"{service}/req", 1)
    requester = node("request", f"{service}.req", "ping", reply_mode)
    sent = requester.next()["sent"]
    request = answer_one(responder, b"pong")
    assert request.CorrelationData == sent["correlationId"].encode()
    if reply_mode == "plain":
        assert request.ResponseTopic == f"$amqp/reply/{sent['replyTo']}"
    reply = requester.next()["reply"]
    assert reply["body"] == "pong"
    assert reply["properties"]["correlationId"] == sent["correlationId"]


def test_amqp_mqtt_amqp_properties_survive_an_mqtt_republisher(gateway: RunningGateway) -> None:
    """An MQTT 5 client republishes what it got with the properties it got: the AMQP consumer
    sees content type, correlation id, the reply topic and string headers again."""
    base = uid("back")
    relay = Paho(gateway.mqtt_port)
    relay.subscribe(f"{base}/in", 2)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{base}.out")
        channel.basic_publish(MQTT_EXCHANGE, f"{base}.in", b"data", pika.BasicProperties(
            content_type="application/json", correlation_id="c-5", expiration="90000",
            headers={"x-reply-to-topic": f"{base}.answers", "site": "north", "n": "1",
                     "x-mqtt-publish-qos": 2, "x-mqtt-payload-format-indicator": 1},
        ))  # fmt: skip
        received = relay.next()
        assert received.qos == 2
        relay.publish(f"{base}/out", bytes(received.payload), qos=received.qos,
                      properties=v5_props(received))  # fmt: skip
        _, properties, body = get_one(channel, name)
    assert body == b"data"
    assert properties.content_type == "application/json"
    assert properties.correlation_id == "c-5"
    assert properties.delivery_mode == 2
    assert 89_000 <= int(properties.expiration) <= 90_000
    assert properties.headers["x-reply-to-topic"] == f"{base}.answers"
    assert properties.headers["x-mqtt-publish-qos"] == 2
    assert properties.headers["x-mqtt-payload-format-indicator"] == 1
    assert (properties.headers["site"], properties.headers["n"]) == ("north", "1")
    assert properties.headers["x-mqtt-user-properties"] == [["site", "north"], ["n", "1"]]


@pytest.mark.parametrize("version", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
@pytest.mark.parametrize(("delivery_mode", "header_qos", "mqtt_qos"), [
    (1, None, 0), (2, None, 1), (2, 2, 2), (2, 0, 0),
])  # fmt: skip
def test_amqp_mqtt_amqp_qos_and_delivery_mode_through_an_mqtt_relay(
    gateway: RunningGateway,
    version: Any,
    delivery_mode: int,
    header_qos: int | None,
    mqtt_qos: int,
) -> None:
    base = uid("qback")
    relay = Paho(gateway.mqtt_port, version=version)
    relay.subscribe(f"{base}/in", 2)
    headers = None if header_qos is None else {"x-mqtt-publish-qos": header_qos}
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{base}.out")
        channel.basic_publish(
            MQTT_EXCHANGE,
            f"{base}.in",
            b"q",
            pika.BasicProperties(delivery_mode=delivery_mode, headers=headers),
        )
        received = relay.next()
        assert received.qos == mqtt_qos
        relay.publish(f"{base}/out", b"q", qos=received.qos)
        _, properties, _ = get_one(channel, name)
    assert properties.delivery_mode == (2 if mqtt_qos else 1)
    assert properties.headers["x-mqtt-publish-qos"] == mqtt_qos
