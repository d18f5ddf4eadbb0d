"""Route `amqp_mqtt`: AMQP clients (pika, aio-pika, amqplib) publish to the MQTT exchange,
paho-mqtt 3.1.1 and 5 subscribe. Every row of DESIGN.md sections 4-6 as an MQTT subscriber sees
it on the wire, retained messages set and cleared from AMQP, and publisher confirms that cover
MQTT session queues."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import aio_pika
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from tests.gateway_runner import RunningGateway, running_gateway
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
    SubscribeOptions,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def publish(gateway: RunningGateway, key: str, body: bytes, **properties: object) -> None:
    with amqp_channel(gateway, confirm=True) as channel:
        channel.basic_publish(MQTT_EXCHANGE, key, body,
                              pika.BasicProperties(**properties))  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
def test_amqp_mqtt_routing_key_words_become_topic_levels(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    base = uid("words")
    device = Paho(gateway.mqtt_port, version=version)
    assert device.subscribe(f"{base}/#", 0) == [0]
    keys = [f"{base}.7.cmd", f"{base}.v1%2E2.a/b", f"{base}.x+y.z#", f"{base}..e",
            f"{base}.50%25", f"{base}.ü"]  # fmt: skip
    with amqp_channel(gateway) as channel:
        for key in keys:
            channel.basic_publish(MQTT_EXCHANGE, key, key.encode())
    got = [device.next() for _ in keys]
    assert [m.topic for m in got] == [f"{base}/7/cmd", f"{base}/v1.2/a%2Fb", f"{base}/x%2By/z%23",
                                      f"{base}//e", f"{base}/50%",
                                      f"{base}/ü"]  # fmt: skip
    assert [m.payload for m in got] == [key.encode() for key in keys]


def test_amqp_mqtt_key_that_makes_no_topic_is_not_delivered() -> None:
    """The empty routing key and keys with U+0000 make no MQTT topic name: a `#` subscriber
    does not get them (and keeps its connection). `$`-keys do not reach `#` either
    [MQTT-4.7.2-1], only `$x/#`. A gateway of its own: `#` would see every other test's
    traffic."""
    with running_gateway() as gw:
        device = Paho(gw.mqtt_port)
        assert device.subscribe("#", 1) == [1]
        dollar = Paho(gw.mqtt_port)
        assert dollar.subscribe("$x/#", 1) == [1]
        with amqp_channel(gw) as channel:
            channel.basic_publish(MQTT_EXCHANGE, "", b"no topic")
            channel.basic_publish(MQTT_EXCHANGE, "nul\x00byte", b"no topic either")
            channel.basic_publish(MQTT_EXCHANGE, "$x.y", b"dollar")
            channel.basic_publish(MQTT_EXCHANGE, "after", b"ok")
        message = device.next()
        assert (message.topic, message.payload) == ("after", b"ok")
        assert device.running
        assert dollar.next().topic == "$x/y"
        dollar.assert_silent()


def test_amqp_mqtt_rabbitmq_topic_mode_round_trip() -> None:
    """topic_mode = "rabbitmq": `.` and `/` swap byte for byte (a dot inside a level splits
    it), so an AMQP-origin message arrives under the split levels, and a key with `*` (a `+`
    topic) is not sent to MQTT."""
    with running_gateway(mqtt={"topic_mode": "rabbitmq"}) as gw:
        device = Paho(gw.mqtt_port)
        assert device.subscribe("spBv1.0/+/NDATA/#", 1) == [1]
        with amqp_channel(gw) as channel:
            name = bound_queue(channel, "spBv1.0.#")
            assert device.publish("spBv1.0/g1/NDATA/n1", b"m", qos=1) == 0
            assert get_one(channel, name)[0].routing_key == "spBv1.0.g1.NDATA.n1"
            # An MQTT-origin message keeps the topic it was published with (annotations).
            assert device.next().topic == "spBv1.0/g1/NDATA/n1"
            channel.basic_publish(MQTT_EXCHANGE, "spBv1.0.*.NDATA.x", b"wild")
            channel.basic_publish(MQTT_EXCHANGE, "spBv1.0.g2.NDATA.x", b"ok")
        message = device.next()
        assert (message.topic, message.payload) == ("spBv1/0/g2/NDATA/x", b"ok")


# (how the AMQP message states its QoS, the QoS that gives)
QOS_SOURCES = [
    ({}, 0),
    ({"delivery_mode": 1}, 0),
    ({"delivery_mode": 2}, 1),
    ({"headers": {"x-mqtt-publish-qos": 0}, "delivery_mode": 2}, 0),
    ({"headers": {"x-mqtt-publish-qos": 1}}, 1),
    ({"headers": {"x-mqtt-publish-qos": 2}}, 2),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("granted", [0, 1, 2])
@pytest.mark.parametrize(("source", "message_qos"), QOS_SOURCES)
def test_amqp_mqtt_qos_is_message_qos_capped_by_granted_qos(
    gateway: RunningGateway,
    version: MQTTProtocolVersion,
    granted: int,
    source: dict[str, object],
    message_qos: int,
) -> None:
    topic = uid("qos")
    device = Paho(gateway.mqtt_port, version=version)
    assert device.subscribe(f"{topic}/+", granted) == [granted]
    publish(gateway, f"{topic}.m", b"q", **source)
    message = device.next()
    assert message.qos == min(message_qos, granted)
    assert message.topic == f"{topic}/m"


def test_amqp_mqtt_every_property_row_reaches_a_v5_subscriber(gateway: RunningGateway) -> None:
    topic = uid("rows")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 2)
    publish(
        gateway, f"{topic}.cmd", b"{}", content_type="application/json", correlation_id="c-9",
        delivery_mode=2, expiration="60000",
        headers={"x-reply-to-topic": f"{topic}.replies.v1%2E0", "site": "north",
                 "x-mqtt-payload-format-indicator": 1, "x-mqtt-publish-qos": 2},
    )  # fmt: skip
    message = device.next()
    p = v5_props(message)
    assert (message.topic, message.payload, message.qos, message.retain) == (
        f"{topic}/cmd", b"{}", 2, False,
    )  # fmt: skip
    assert p.ContentType == "application/json"
    assert p.CorrelationData == b"c-9"
    assert p.ResponseTopic == f"{topic}/replies/v1.0"
    assert p.PayloadFormatIndicator == 1
    assert 59 <= p.MessageExpiryInterval <= 60
    assert p.UserProperty == [("site", "north")]


def test_amqp_mqtt_v311_subscriber_gets_topic_payload_qos_retain_only(
    gateway: RunningGateway,
) -> None:
    topic = uid("v311")
    device = Paho(gateway.mqtt_port, version=V311)
    device.subscribe(f"{topic}/#", 2)
    publish(gateway, f"{topic}.x", b"plain", content_type="text/plain", correlation_id="c",
            expiration="60000", headers={"x-mqtt-publish-qos": 2, "k": "v"})  # fmt: skip
    message = device.next()
    assert (message.topic, message.payload, message.qos, message.retain, message.dup) == (
        f"{topic}/x", b"plain", 2, False, False,
    )  # fmt: skip
    assert getattr(message, "properties", None) is None  # nothing of MQTT 5 on a 3.1.1 wire


def test_amqp_mqtt_user_properties_keep_order_and_duplicates(gateway: RunningGateway) -> None:
    topic = uid("users")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 1)
    publish(
        gateway,
        f"{topic}.a",
        b"1",
        headers={"x-mqtt-user-properties": [["k", "1"], ["j", "0"], ["k", "2"]], "k": "2"},
    )
    publish(gateway, f"{topic}.b", b"2", headers={
        "text": "t", "int": 42, "bool": True, "decimal": Decimal("3.14"), "bytes": b"\xff\xfe",
        "table": {"nested": 1}, "list": [1, 2], "none": None, "nul": "a\x00b",
        "stamp": datetime.datetime(2026, 1, 2, 3, 4, 5),
    })  # fmt: skip
    first, second = device.next(), device.next()
    assert v5_props(first).UserProperty == [("k", "1"), ("j", "0"), ("k", "2")]
    # Scalars as text; byte arrays that are not UTF-8, tables, arrays, void, U+0000: left out.
    assert v5_props(second).UserProperty == [
        ("text", "t"), ("int", "42"), ("bool", "true"), ("decimal", "3.14"),
        ("stamp", "2026-01-02T03:04:05+00:00"),
    ]  # fmt: skip


def test_amqp_mqtt_header_forms_of_content_type_and_correlation(gateway: RunningGateway) -> None:
    topic = uid("hdr")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 1)
    publish(gateway, f"{topic}.a", b"1", headers={
        "x-mqtt-content-type": "text/plain; charset=ütf", "x-correlation-id": b"\xff\x00\x01",
    })  # fmt: skip
    message = device.next()
    assert v5_props(message).ContentType == "text/plain; charset=ütf"
    assert v5_props(message).CorrelationData == b"\xff\x00\x01"
    assert not hasattr(v5_props(message), "UserProperty")


@pytest.mark.parametrize("queue", ["rpc-replies", "amq.gen-a/b+c#"])
def test_amqp_mqtt_reply_to_becomes_response_topic(gateway: RunningGateway, queue: str) -> None:
    """No x-reply-to-topic: the MQTT 5 responder is given a reply topic that routes back to the
    AMQP reply queue (`$amqp/reply/<queue>`, escaped), and the correlation id as data."""
    topic = uid("rpc")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 1)
    publish(gateway, f"{topic}.req", b"?", reply_to=queue, correlation_id="id-1")
    message = device.next()
    expected = "$amqp/reply/" + queue.replace("/", "%2F").replace("+", "%2B").replace("#", "%23")
    assert v5_props(message).ResponseTopic == expected
    assert v5_props(message).CorrelationData == b"id-1"


@pytest.mark.parametrize("retain_as_published", [False, True])
def test_amqp_mqtt_x_mqtt_retain_on_a_live_delivery_follows_retain_as_published(
    gateway: RunningGateway, retain_as_published: bool
) -> None:
    topic = uid("rap")
    device = Paho(gateway.mqtt_port)
    options = SubscribeOptions(qos=1, retainAsPublished=retain_as_published)
    device.subscribe(f"{topic}/#", options)
    publish(gateway, f"{topic}.s", b"on", headers={"x-mqtt-retain": True})
    assert device.next().retain is retain_as_published
    publish(gateway, f"{topic}.s", b"", headers={"x-mqtt-retain": True})  # clear it again
    assert device.next().payload == b""


# -- retained messages from AMQP -------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_amqp_mqtt_retained_set_and_cleared_by_pika_seen_by_late_wildcard_subscriber(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("ret")
    publish(gateway, f"{topic}.state", b"on", content_type="text/plain", expiration="60000",
            headers={"x-mqtt-retain": True, "x-mqtt-publish-qos": 1})  # fmt: skip
    late = Paho(gateway.mqtt_port, version=version)
    assert late.subscribe(f"{topic}/+", 2) == [2]
    message = late.next()
    assert (message.topic, message.payload, message.retain, message.qos) == (
        f"{topic}/state", b"on", True, 1,
    )  # fmt: skip
    if version == V5:
        assert v5_props(message).ContentType == "text/plain"
        assert 59 <= v5_props(message).MessageExpiryInterval <= 60
    publish(gateway, f"{topic}.state", b"", headers={"x-mqtt-retain": True})
    later = Paho(gateway.mqtt_port, version=version)
    assert later.subscribe(f"{topic}/#", 1) == [1]
    later.assert_silent()


def test_amqp_mqtt_retained_under_a_key_that_makes_no_topic_is_not_stored(
    gateway: RunningGateway,
) -> None:
    topic = uid("retnul")
    publish(gateway, f"{topic}.a\x00b", b"bad", headers={"x-mqtt-retain": True})
    publish(gateway, f"{topic}.ok", b"good", headers={"x-mqtt-retain": True})
    late = Paho(gateway.mqtt_port)
    late.subscribe(f"{topic}/#", 1)
    message = late.next()
    assert (message.topic, message.payload) == (f"{topic}/ok", b"good")
    late.assert_silent()
    assert late.running
    publish(gateway, f"{topic}.ok", b"", headers={"x-mqtt-retain": True})


async def test_amqp_mqtt_retained_set_and_cleared_by_aio_pika(gateway: RunningGateway) -> None:
    topic = uid("retaio")
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}/")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(MQTT_EXCHANGE)
        await exchange.publish(aio_pika.Message(b"21.5", headers={"x-mqtt-retain": True},
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                               routing_key=f"{topic}.temp")  # fmt: skip
        late = Paho(gateway.mqtt_port)
        late.subscribe(f"{topic}/#", 1)
        message = late.next()
        assert (message.topic, message.payload, message.retain, message.qos) == (
            f"{topic}/temp", b"21.5", True, 1,
        )  # fmt: skip
        await exchange.publish(aio_pika.Message(b"", headers={"x-mqtt-retain": True}),
                               routing_key=f"{topic}.temp")  # fmt: skip
    later = Paho(gateway.mqtt_port)
    later.subscribe(f"{topic}/#", 1)
    later.assert_silent()


def test_amqp_mqtt_retained_set_and_cleared_by_amqplib(
    gateway: RunningGateway, node: NodeRunner
) -> None:
    topic = uid("retjs")
    options = {"headers": {"x-mqtt-retain": True}, "contentType": "text/plain"}
    assert node("publish", f"{topic}.s", "on", json.dumps(options)).next() == {"confirmed": True}
    late = Paho(gateway.mqtt_port)
    late.subscribe(f"{topic}/+", 1)
    message = late.next()
    assert (message.topic, message.payload, message.retain) == (f"{topic}/s", b"on", True)
    assert v5_props(message).ContentType == "text/plain"
    assert node("publish", f"{topic}.s", "", json.dumps(options)).next() == {"confirmed": True}
    later = Paho(gateway.mqtt_port)
    later.subscribe(f"{topic}/+", 1)
    later.assert_silent()


# -- other AMQP clients -----------------------------------------------------------------------


async def test_amqp_mqtt_aio_pika_properties_reach_a_v5_subscriber(
    gateway: RunningGateway,
) -> None:
    topic = uid("aio")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 2)
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}/")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(MQTT_EXCHANGE)
        await exchange.publish(aio_pika.Message(
            b"go", content_type="text/plain", correlation_id="aio-1", expiration=30,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to="aio-replies",
            headers={"zone": "b", "x-mqtt-payload-format-indicator": 1},
        ), routing_key=f"{topic}.cmd")  # fmt: skip
    message = device.next()
    p = v5_props(message)
    assert (message.topic, message.qos) == (f"{topic}/cmd", 1)
    assert (p.ContentType, p.CorrelationData) == ("text/plain", b"aio-1")
    assert p.ResponseTopic == "$amqp/reply/aio-replies"
    assert 29 <= p.MessageExpiryInterval <= 30
    assert p.PayloadFormatIndicator == 1
    assert p.UserProperty == [("zone", "b")]


def test_amqp_mqtt_amqplib_properties_reach_a_v5_subscriber(
    gateway: RunningGateway, node: NodeRunner
) -> None:
    topic = uid("js")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 2)
    options = {
        "contentType": "application/json", "correlationId": "js-1", "deliveryMode": 2,
        "expiration": "20000", "headers": {"x-mqtt-publish-qos": 2, "n": 7, "s": "x",
                                           "x-reply-to-topic": f"{topic}.back"},
    }  # fmt: skip
    assert node("publish", f"{topic}.v1%2E0", "{}", json.dumps(options)).next() == {
        "confirmed": True
    }
    message = device.next()
    p = v5_props(message)
    assert (message.topic, message.qos, message.payload) == (f"{topic}/v1.0", 2, b"{}")
    assert (p.ContentType, p.CorrelationData) == ("application/json", b"js-1")
    assert p.ResponseTopic == f"{topic}/back"
    assert 19 <= p.MessageExpiryInterval <= 20
    assert p.UserProperty == [("n", "7"), ("s", "x")]


# -- publisher confirms (DESIGN.md section 5) -------------------------------------------------


def test_amqp_mqtt_confirm_covers_an_mqtt_session_queue(gateway: RunningGateway) -> None:
    """A mandatory confirmed publish that only an MQTT subscription matches is routed (no
    basic.return) and acked; with no subscriber left it comes back as unroutable."""
    topic = uid("confirm")
    device = Paho(gateway.mqtt_port)
    device.subscribe(f"{topic}/#", 1)
    with amqp_channel(gateway, confirm=True) as channel:
        channel.basic_publish(MQTT_EXCHANGE, f"{topic}.a", b"1", mandatory=True)
        assert device.next().payload == b"1"
        device.unsubscribe(f"{topic}/#")
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish(MQTT_EXCHANGE, f"{topic}.a", b"2", mandatory=True)
    device.assert_silent()


def test_amqp_mqtt_full_mqtt_session_queue_drops_its_oldest_and_still_confirms() -> None:
    """MQTT session queues keep `max_queued_messages` and drop the oldest past it (as
    Mosquitto's max_queued_messages does): an AMQP publisher is never nacked by a slow device;
    the device gets the newest messages when it comes back."""
    with running_gateway(mqtt={"max_queued_messages": 2}) as gw:
        client_id = uid("offline")
        session = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
        device = Paho(gw.mqtt_port, client_id, clean=False, properties=session)
        device.subscribe("dev/+/cmd", 1)
        device.disconnect()
        with amqp_channel(gw, confirm=True) as channel:
            for n in range(4):  # each confirmed (an nack would raise NackError)
                channel.basic_publish(
                    MQTT_EXCHANGE,
                    "dev.1.cmd",
                    str(n).encode(),
                    pika.BasicProperties(delivery_mode=2),
                    mandatory=True,
                )
        back = Paho(gw.mqtt_port, client_id, clean=False, properties=session)
        assert back.connack is not None
        assert back.connack.session_present
        assert [m.payload for m in back.take(2)] == [b"2", b"3"]
        back.assert_silent()
