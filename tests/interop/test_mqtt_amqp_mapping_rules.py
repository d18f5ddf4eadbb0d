"""Custom mapping rules on the wire: a gateway started with its own mappings directory, paho-mqtt
(3.1.1 and 5) on one side, pika and aio-pika on the other. Both directions go through rule
exchanges; the QoS policy is observed in delivery_mode and in the QoS MQTT subscribers get; a
reply topic answered by an MQTT 5 responder reaches an AMQP requester using direct reply-to."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.gateway_runner import RunningGateway, running_gateway
from tests.interop.mqtt_helpers import (
    TIMEOUT,
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
    uid,
)

pytestmark = pytest.mark.interop

RULES = """
[[rule]]
name = "telemetry"
topic = "factory/+/telemetry/#"
exchange = "mr.telemetry"
exchange_type = "topic"
declare = true
routing_key = "{1}.{#}"
[rule.qos]
max = 1
delivery_mode = 2

[[rule]]
name = "commands"
topic = "factory/+/commands/#"
exchange = "mr.commands"
declare = true
routing_key = "{1}.{#}"

[[rule]]
name = "logs"
topic = "logs/#"
exchange = "mr.logs"
declare = true
routing_key = "log.{#}"
[rule.qos]
delivery_mode = 1
"""


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("mappings")
    (directory / "plant.toml").write_text(RULES)
    with running_gateway(mappings=str(directory)) as running:
        yield running


@pytest.fixture
def channel(mapped: RunningGateway) -> Iterator[BlockingChannel]:
    params = pika.ConnectionParameters("127.0.0.1", mapped.amqp_port, heartbeat=0)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def queue_on(channel: BlockingChannel, exchange: str, key: str) -> str:
    name: str = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(name, exchange, key)
    return name


def v5(message: Any) -> Any:
    """The MQTT 5 properties paho decoded (attributes set dynamically, hence Any)."""
    assert message.properties is not None
    return message.properties


def get_one(channel: BlockingChannel, queue_name: str) -> tuple[Any, Any, bytes]:
    for method, properties, body in channel.consume(queue_name, inactivity_timeout=TIMEOUT):
        assert method is not None, "no message reached the AMQP consumer"
        channel.basic_ack(method.delivery_tag)
        channel.cancel()
        return method, properties, body
    raise AssertionError("unreachable")


@pytest.mark.parametrize("version", [V5, V311], ids=["v5", "v311"])
def test_mqtt_amqp_rule_exchange_key_and_forced_persistence(
    mapped: RunningGateway, channel: BlockingChannel, version: Any
) -> None:
    device = uid("dev")
    name = queue_on(channel, "mr.telemetry", f"{device}.#")
    client = Paho(mapped.mqtt_port, version=version)
    assert client.publish(f"factory/{device}/telemetry/temp", b"21.5", qos=2) == 0
    method, properties, body = get_one(channel, name)
    assert (method.exchange, method.routing_key, body) == ("mr.telemetry", f"{device}.temp",
                                                           b"21.5")  # fmt: skip
    assert properties.delivery_mode == 2
    assert properties.headers["x-mqtt-publish-qos"] == 1  # capped by the rule
    client.publish(f"factory/{device}/telemetry/hum/raw", b"40", qos=0)
    method, properties, _ = get_one(channel, name)
    assert method.routing_key == f"{device}.hum.raw"
    assert properties.delivery_mode == 2  # QoS 0, forced persistent
    # Not in a rule's namespace: the default rule, amq.topic.
    default = queue_on(channel, "amq.topic", f"factory.{device}.status")
    client.publish(f"factory/{device}/status", b"online", qos=1)
    method, properties, _ = get_one(channel, default)
    assert (method.exchange, properties.delivery_mode) == ("amq.topic", 2)


def test_mqtt_amqp_transient_policy(mapped: RunningGateway, channel: BlockingChannel) -> None:
    app = uid("app")
    name = queue_on(channel, "mr.logs", f"log.{app}.#")
    client = Paho(mapped.mqtt_port)
    assert client.publish(f"logs/{app}/error", b"boom", qos=1) == 0
    method, properties, _ = get_one(channel, name)
    assert (method.routing_key, properties.delivery_mode) == (f"log.{app}.error", 1)
    assert properties.headers["x-mqtt-publish-qos"] == 1


@pytest.mark.parametrize("version", [V5, V311], ids=["v5", "v311"])
def test_amqp_mqtt_rule_exchange_reaches_the_subscriber_under_its_topic(
    mapped: RunningGateway, channel: BlockingChannel, version: Any
) -> None:
    device = uid("dev")
    client = Paho(mapped.mqtt_port, version=version)
    assert client.subscribe(f"factory/{device}/commands/#", 1) == [1]
    channel.basic_publish("mr.commands", f"{device}.reboot", b"now",
                          pika.BasicProperties(delivery_mode=2, correlation_id="c-1"))  # fmt: skip
    message = client.next()
    assert (message.topic, message.payload, message.qos) == (
        f"factory/{device}/commands/reboot", b"now", 1,
    )  # fmt: skip
    if version == V5:
        assert v5(message).CorrelationData == b"c-1"
    # The namespace lives on the rule's exchange: amq.topic does not reach it.
    channel.basic_publish("amq.topic", f"factory.{device}.commands.x", b"no")
    client.assert_silent()


def test_amqp_mqtt_qos_cap_of_the_rule_on_the_wire(
    mapped: RunningGateway, channel: BlockingChannel
) -> None:
    device = uid("dev")
    client = Paho(mapped.mqtt_port)
    assert client.subscribe(f"factory/{device}/telemetry/+", 2) == [2]
    channel.basic_publish("mr.telemetry", f"{device}.t", b"v",
                          pika.BasicProperties(headers={"x-mqtt-publish-qos": 2}))  # fmt: skip
    message = client.next()
    assert (message.topic, message.qos) == (f"factory/{device}/telemetry/t", 1)


def test_mqtt_amqp_mqtt_through_a_rule_exchange(
    mapped: RunningGateway, channel: BlockingChannel
) -> None:
    device = uid("dev")
    worker = queue_on(channel, "mr.commands", f"{device}.#")
    receiver = Paho(mapped.mqtt_port)
    assert receiver.subscribe("factory/+/commands/#", 2) == [2]
    sender = Paho(mapped.mqtt_port)
    reply = props(UserProperty=[("k", "v")])
    assert sender.publish(f"factory/{device}/commands/open", b"1", 2, properties=reply) == 0
    message = receiver.next()
    assert (message.topic, message.payload, message.qos) == (
        f"factory/{device}/commands/open", b"1", 2,
    )  # fmt: skip
    assert v5(message).UserProperty == [("k", "v")]
    method, _, _ = get_one(channel, worker)
    assert method.routing_key == f"{device}.open"


def test_amqp_retain_on_a_rule_exchange_is_kept_under_the_mqtt_topic(
    mapped: RunningGateway,
) -> None:
    device = uid("dev")

    async def publish() -> None:
        url = f"amqp://guest:guest@127.0.0.1:{mapped.amqp_port}/"
        async with await aio_pika.connect(url) as connection:
            chan = await connection.channel()
            exchange = await chan.get_exchange("mr.commands")
            await exchange.publish(
                aio_pika.Message(b"eco", headers={"x-mqtt-retain": True}),
                routing_key=f"{device}.mode",
            )

    asyncio.run(publish())
    late = Paho(mapped.mqtt_port)
    late.subscribe(f"factory/{device}/#", 1)
    message = late.next()
    assert (message.topic, message.payload, message.retain) == (
        f"factory/{device}/commands/mode", b"eco", True,
    )  # fmt: skip


def test_amqp_mqtt_amqp_direct_reply_to_answered_by_an_mqtt5_responder(
    mapped: RunningGateway,
) -> None:
    """aio-pika requester with direct reply-to; the request crosses a rule exchange; the MQTT 5
    responder answers on the Response Topic it was given ($amqp/reply/...)."""
    device = uid("dev")
    responder = Paho(mapped.mqtt_port)
    assert responder.subscribe(f"factory/{device}/commands/#", 1) == [1]

    async def request() -> aio_pika.abc.AbstractIncomingMessage:
        url = f"amqp://guest:guest@127.0.0.1:{mapped.amqp_port}/"
        async with await aio_pika.connect(url) as connection:
            chan = await connection.channel()
            replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            reply_queue = await chan.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await reply_queue.consume(replies.put, no_ack=True)
            exchange = await chan.get_exchange("mr.commands")
            await exchange.publish(
                aio_pika.Message(b"status?", reply_to="amq.rabbitmq.reply-to",
                                 correlation_id="rq-1"),
                routing_key=f"{device}.status",
            )  # fmt: skip
            asked = await asyncio.to_thread(responder.next)
            assert asked.topic == f"factory/{device}/commands/status"
            response_topic = v5(asked).ResponseTopic
            assert response_topic.startswith("$amqp/reply/amq.rabbitmq.reply-to.")
            code = await asyncio.to_thread(
                responder.publish, response_topic, b"ok", 1,
                False, props(CorrelationData=v5(asked).CorrelationData),
            )  # fmt: skip
            assert code == 0
            return await asyncio.wait_for(replies.get(), TIMEOUT)

    reply = asyncio.run(request())
    assert (reply.body, reply.correlation_id) == (b"ok", "rq-1")


def test_pika_requester_with_a_plain_reply_queue(
    mapped: RunningGateway, channel: BlockingChannel
) -> None:
    device = uid("dev")
    responder = Paho(mapped.mqtt_port)
    responder.subscribe(f"factory/{device}/commands/#", 1)
    reply_queue: str = channel.queue_declare("", exclusive=True).method.queue
    request = pika.BasicProperties(reply_to=reply_queue, correlation_id="p-1")
    channel.basic_publish("mr.commands", f"{device}.ping", b"ping", request)
    asked = responder.next()
    assert v5(asked).ResponseTopic == f"$amqp/reply/{reply_queue}"
    assert responder.publish(v5(asked).ResponseTopic, b"pong", 1,
                             properties=props(CorrelationData=b"p-1")) == 0  # fmt: skip
    method, properties, body = get_one(channel, reply_queue)
    assert (method.exchange, method.routing_key, body) == ("", reply_queue, b"pong")
    assert properties.correlation_id == "p-1"


def test_bad_rules_stop_the_gateway_from_starting(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(RULES.replace('routing_key = "log.{#}"',
                                                     'routing_key = "log"'))  # fmt: skip
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"bad.toml: rule 'logs': routing_key 'log': not"), \
            running_gateway(mappings=str(tmp_path)):  # fmt: skip
        pass
