"""Route `mqtt_amqp`: paho-mqtt (3.1.1 and 5) publishes, AMQP clients (pika, aio-pika, amqplib)
consume. Every row of DESIGN.md sections 4-6 as an AMQP consumer sees it on the wire, and the
publisher's acknowledgements as section 5 defines them."""

from __future__ import annotations

import aio_pika
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.mqtt.packets import PubComp, PubRec, PubRel
from tests.gateway_runner import RunningGateway
from tests.interop.bridge.helpers import (
    MQTT_EXCHANGE,
    NodeRunner,
    amqp_channel,
    bound_queue,
    get_one,
    uid,
)
from tests.interop.mqtt_helpers import (
    V5,
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
)
from tests.interop.mqtt_raw import RawClient, close_raw_clients  # noqa: F401  (autouse)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_amqp_topic_levels_become_routing_key_words(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    plant = uid("plant")
    device = Paho(gateway.mqtt_port, version=version)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{plant}.*.temp.#")
        topics = [
            f"{plant}/7/temp",
            f"{plant}/v1.2/temp/*",
            f"{plant}/%/temp//x",
            f"{plant}/é/temp",
        ]
        for topic in topics:
            assert device.publish(topic, topic.encode(), qos=1) == 0
        keys = [get_one(channel, name)[0].routing_key for _ in topics]
    assert keys == [f"{plant}.7.temp", f"{plant}.v1%2E2.temp.%2A", f"{plant}.%25.temp..x",
                    f"{plant}.é.temp"]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("qos", "delivery_mode"), [(0, 1), (1, 2), (2, 2)])
def test_mqtt_amqp_qos_is_delivery_mode_and_x_mqtt_publish_qos(
    gateway: RunningGateway, version: MQTTProtocolVersion, qos: int, delivery_mode: int
) -> None:
    topic = uid("qos")
    device = Paho(gateway.mqtt_port, version=version)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        assert device.publish(f"{topic}/x", b"q", qos=qos) == 0
        method, properties, body = get_one(channel, name)
    assert (method.exchange, method.routing_key, body) == (MQTT_EXCHANGE, f"{topic}.x", b"q")
    assert properties.delivery_mode == delivery_mode
    assert properties.headers == {"x-mqtt-publish-qos": qos}


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_amqp_retain_flag_is_x_mqtt_retain(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    topic = uid("retain")
    device = Paho(gateway.mqtt_port, version=version)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/state", b"on", qos=1, retain=True)
        _, properties, _ = get_one(channel, name)
    device.publish(f"{topic}/state", b"", qos=1, retain=True)  # leave no retained message
    assert properties.headers == {"x-mqtt-publish-qos": 1, "x-mqtt-retain": True}


def test_mqtt_amqp_every_v5_property_on_the_amqp_wire(gateway: RunningGateway) -> None:
    topic = uid("props")
    device = Paho(gateway.mqtt_port)
    sent = props(
        ContentType="application/json", CorrelationData=b"corr-1",
        ResponseTopic=f"{topic}/replies/v1.0", MessageExpiryInterval=60, PayloadFormatIndicator=1,
        UserProperty=[("b", "2"), ("a", "1"), ("b", "3")],
    )  # fmt: skip
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/req", b"{}", qos=1, properties=sent)
        _, properties, body = get_one(channel, name)
    assert body == b"{}"
    assert properties.content_type == "application/json"
    assert properties.correlation_id == "corr-1"
    assert properties.delivery_mode == 2
    assert properties.reply_to is None
    assert properties.expiration is not None
    assert 59_000 <= int(properties.expiration) <= 60_000
    assert properties.headers == {
        "x-mqtt-publish-qos": 1,
        "x-reply-to-topic": f"{topic}.replies.v1%2E0",
        "a": "1",
        "b": "3",
        "x-mqtt-user-properties": [["b", "2"], ["a", "1"], ["b", "3"]],
        "x-mqtt-payload-format-indicator": 1,
    }


def test_mqtt_amqp_values_amqp_fields_cannot_hold_go_to_headers(gateway: RunningGateway) -> None:
    """Content type that is not short ASCII: x-mqtt-content-type; correlation data that is not
    UTF-8 or is 256 bytes or more: x-correlation-id (bytes kept)."""
    topic = uid("wide")
    device = Paho(gateway.mqtt_port)
    long_correlation = b"c" * 256
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/1", b"1", qos=1,
                       properties=props(ContentType="text/plain; charset=ütf",
                                        CorrelationData=b"\xff\xfe\x00"))  # fmt: skip
        device.publish(f"{topic}/2", b"2", qos=1,
                       properties=props(ContentType="t/" + "x" * 300,
                                        CorrelationData=long_correlation))  # fmt: skip
        _, first, _ = get_one(channel, name)
        _, second, _ = get_one(channel, name)
    assert (first.content_type, first.correlation_id) == (None, None)
    assert first.headers["x-mqtt-content-type"] == "text/plain; charset=ütf"
    assert first.headers["x-correlation-id"] == b"\xff\xfe\x00"
    assert (second.content_type, second.correlation_id) == (None, None)
    assert second.headers["x-mqtt-content-type"] == "t/" + "x" * 300
    assert second.headers["x-correlation-id"] in (long_correlation, long_correlation.decode())


def test_mqtt_amqp_v311_publish_carries_no_v5_headers(gateway: RunningGateway) -> None:
    topic = uid("v311")
    device = Paho(gateway.mqtt_port, version=V311)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/x", b"plain", qos=2)
        _, properties, body = get_one(channel, name)
    assert body == b"plain"
    assert properties.content_type is None
    assert properties.correlation_id is None
    assert properties.expiration is None
    assert properties.headers == {"x-mqtt-publish-qos": 2}


async def test_mqtt_amqp_aio_pika_consumer_sees_the_property_table(
    gateway: RunningGateway,
) -> None:
    topic = uid("aiopika")
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(MQTT_EXCHANGE, f"{topic}.#")
        device = Paho(gateway.mqtt_port)
        device.publish(f"{topic}/cmd", b"go", qos=2, properties=props(
            ContentType="text/plain", CorrelationData=b"c-7", ResponseTopic=f"{topic}/r",
            UserProperty=[("k", "v")], MessageExpiryInterval=30,
        ))  # fmt: skip
        message = await queue.get(timeout=5)
        await message.ack()
    assert message.routing_key == f"{topic}.cmd"
    assert message.body == b"go"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "text/plain"
    assert message.correlation_id == "c-7"
    assert isinstance(message.expiration, int | float)
    assert 29 <= message.expiration <= 30  # aio-pika reports seconds
    assert message.headers["x-mqtt-publish-qos"] == 2
    assert message.headers["x-reply-to-topic"] == f"{topic}.r"
    assert message.headers["k"] == "v"
    assert message.headers["x-mqtt-user-properties"] == [["k", "v"]]


def test_mqtt_amqp_amqplib_consumer_sees_the_property_table(
    gateway: RunningGateway, node: NodeRunner
) -> None:
    topic = uid("amqplib")
    consumer = node("consume", f"{topic}.#", "2")
    assert consumer.next() == {"ready": True}
    device = Paho(gateway.mqtt_port)
    device.publish(f"{topic}/a.b", b"one", qos=1, retain=False, properties=props(
        ContentType="application/cbor", CorrelationData=b"\x01\x02", ResponseTopic=f"{topic}/r",
        UserProperty=[("x", "1"), ("x", "2")], PayloadFormatIndicator=0,
        MessageExpiryInterval=5,
    ))  # fmt: skip
    device.publish(f"{topic}/plain", b"two", qos=0)
    first, second = consumer.next(), consumer.next()
    assert first["routingKey"] == f"{topic}.a%2Eb"
    assert first["body"] == "one"
    p = first["properties"]
    assert (p["contentType"], p["deliveryMode"]) == ("application/cbor", 2)
    # \x01\x02 is valid UTF-8 under 256 bytes: correlation_id.
    assert p["correlationId"] == "\x01\x02"
    assert 4000 <= int(p["expiration"]) <= 5000
    assert p["headers"] == {
        "x-mqtt-publish-qos": 1,
        "x-reply-to-topic": f"{topic}.r",
        "x": "2",
        "x-mqtt-user-properties": [["x", "1"], ["x", "2"]],
        "x-mqtt-payload-format-indicator": 0,
    }
    assert second["routingKey"] == f"{topic}.plain"
    assert second["properties"]["deliveryMode"] == 1
    assert second["properties"]["headers"] == {"x-mqtt-publish-qos": 0}


# -- acknowledgements (DESIGN.md section 5) -----------------------------------------------------


def test_mqtt_amqp_puback_0x97_when_the_amqp_queue_is_full(gateway: RunningGateway) -> None:
    """PUBACK only after every target queue took the message: a reject-publish queue at its
    limit makes the v5 PUBACK carry Quota exceeded."""
    topic = uid("full")
    device = Paho(gateway.mqtt_port)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#",
                           {"x-max-length": 1, "x-overflow": "reject-publish"})  # fmt: skip
        assert device.publish(f"{topic}/a", b"1", qos=1) == 0x00
        assert device.publish(f"{topic}/a", b"2", qos=1) == 0x97
        assert channel.queue_declare(name, passive=True).method.message_count == 1
        assert get_one(channel, name)[2] == b"1"
        assert device.publish(f"{topic}/a", b"3", qos=1) == 0x00  # room again
        assert get_one(channel, name)[2] == b"3"


def test_mqtt_amqp_qos2_pubrec_0x97_when_the_amqp_queue_is_full(gateway: RunningGateway) -> None:
    """QoS 2: PUBREC carries 0x97 and ends the exchange (the packet id is not held). paho
    ignores PUBREC reason codes, so this one reads the wire with the raw client."""
    topic = uid("full2")
    raw = RawClient(gateway.mqtt_port)
    assert raw.connect(uid("raw")).reason_code == 0
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#",
                           {"x-max-length": 1, "x-overflow": "reject-publish"})  # fmt: skip
        raw.publish(f"{topic}/a", b"1", qos=2, packet_id=1)
        assert raw.expect(PubRec).reason_code == 0x00
        raw.send(PubRel(1))
        assert raw.expect(PubComp).reason_code == 0x00
        raw.publish(f"{topic}/a", b"2", qos=2, packet_id=2)
        assert raw.expect(PubRec).reason_code == 0x97
        raw.send(PubRel(2))
        assert raw.expect(PubComp).reason_code == 0x92  # Packet Identifier not found
        assert channel.queue_declare(name, passive=True).method.message_count == 1


def test_mqtt_amqp_v311_publish_to_a_full_queue_disconnects(gateway: RunningGateway) -> None:
    """3.1.1 has no negative PUBACK: the connection closes so the client sends it again."""
    topic = uid("full311")
    device = Paho(gateway.mqtt_port, version=V311)
    with amqp_channel(gateway) as channel:
        bound_queue(channel, f"{topic}.#", {"x-max-length": 1, "x-overflow": "reject-publish"})
        assert device.publish(f"{topic}/a", b"1", qos=1) == 0
        device.client.publish(f"{topic}/a", b"2", 1)
        device.next_disconnect()


def test_mqtt_amqp_unroutable_publish_acks_0x10(gateway: RunningGateway) -> None:
    device = Paho(gateway.mqtt_port)
    assert device.publish(f"{uid('nobody')}/x", b"lost", qos=1) == 0x10
    with amqp_channel(gateway) as channel:
        topic = uid("somebody")
        bound_queue(channel, f"{topic}.#")
        assert device.publish(f"{topic}/x", b"kept", qos=1) == 0x00


def test_mqtt_amqp_qos2_unroutable_pubrec_0x10_then_pubcomp(gateway: RunningGateway) -> None:
    """0x10 is a success code: the QoS 2 exchange goes on to PUBCOMP (raw client: paho
    ignores PUBREC reason codes)."""
    raw = RawClient(gateway.mqtt_port)
    assert raw.connect(uid("raw")).reason_code == 0
    raw.publish(f"{uid('nobody')}/x", b"lost", qos=2, packet_id=7)
    assert raw.expect(PubRec).reason_code == 0x10
    raw.send(PubRel(7))
    assert raw.expect(PubComp).reason_code == 0x00


def test_mqtt_amqp_topic_over_255_key_bytes_is_refused_0x90(gateway: RunningGateway) -> None:
    """The routing key, not the topic, is limited: escapes count (86 dots make 258 bytes)."""
    device = Paho(gateway.mqtt_port)
    code, _ = device.publish_with_ack("x" * 256, b"", 1)
    assert code == 0x90  # Topic Name invalid
    code, _ = device.publish_with_ack("." * 86, b"", 1)
    assert code == 0x90
    assert device.running  # refused, not disconnected
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, "%2E" * 85)
        assert device.publish("." * 85, b"fits", qos=1) == 0
        assert get_one(channel, name)[0].routing_key == "%2E" * 85


def test_mqtt_amqp_v311_topic_over_255_key_bytes_is_acked_and_dropped(
    gateway: RunningGateway,
) -> None:
    topic = uid("long311")
    device = Paho(gateway.mqtt_port, version=V311)
    with amqp_channel(gateway) as channel:
        name = bound_queue(channel, f"{topic}.#")
        assert device.publish(f"{topic}/" + "." * 90, b"dropped", qos=1) == 0
        assert device.publish(f"{topic}/ok", b"kept", qos=1) == 0
        assert get_one(channel, name)[2] == b"kept"
    assert device.running


def test_mqtt_amqp_filter_over_255_key_bytes_is_refused_0x8f(gateway: RunningGateway) -> None:
    device = Paho(gateway.mqtt_port)
    assert device.subscribe([("a/" + "." * 90 + "/#", 1), (uid("ok") + "/#", 1)]) == [0x8F, 1]


def test_mqtt_amqp_sys_topics_are_not_publishable(gateway: RunningGateway) -> None:
    device = Paho(gateway.mqtt_port)
    code, _ = device.publish_with_ack("$SYS/broker/x", b"", 1)
    assert code == 0x87  # Not authorized


def test_mqtt_amqp_user_property_name_too_long_for_a_header_rides_in_the_list(
    gateway: RunningGateway,
) -> None:
    """A field table name is at most 255 bytes; an MQTT user property name may be longer."""
    topic = uid("longname")
    device = Paho(gateway.mqtt_port)
    name = "n" * 300
    with amqp_channel(gateway) as channel:
        queue_name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/x", b"1", qos=1,
                       properties=props(UserProperty=[(name, "v"), ("short", "s")]))  # fmt: skip
        _, properties, _ = get_one(channel, queue_name)
    assert properties.headers["short"] == "s"
    assert name not in properties.headers
    assert properties.headers["x-mqtt-user-properties"] == [[name, "v"], ["short", "s"]]
