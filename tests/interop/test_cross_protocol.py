"""Where the two worlds meet: paho-mqtt on one side, pika on the other (DESIGN.md sections 4-6).

Routes are named as in DESIGN.md section 8: `mqtt_amqp` is an MQTT publish consumed over AMQP,
`amqp_mqtt` the reverse, `mqtt_amqp_mqtt` a round trip through an AMQP worker.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.gateway_runner import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

TIMEOUT = 5.0


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class MqttClient:
    """paho v5 (or 3.1.1) with a queue of received messages and blocking acks."""

    def __init__(
        self,
        port: int,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        clean_session: bool | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid("x"),
                                  protocol=protocol, clean_session=clean_session)  # fmt: skip
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.subacks.put(codes)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.client.subscribe(topic, qos)
        codes = self.subacks.get(timeout=TIMEOUT)
        assert codes[0] == qos

    def publish(self, topic: str, payload: bytes, qos: int = 1, **properties: Any) -> None:
        props = None
        if properties:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            for name, value in properties.items():
                setattr(props, name, value)
        info = self.client.publish(topic, payload, qos, properties=props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def mqtt_client(gateway: RunningGateway, **kwargs: Any) -> Iterator[MqttClient]:
    client = MqttClient(gateway.mqtt_port, **kwargs)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def amqp_channel(gateway: RunningGateway) -> Iterator[Any]:
    params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port, heartbeat=0)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def bound_queue(channel: Any, binding_key: str) -> str:
    name: str = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(name, "amq.topic", binding_key)
    return name


def get_one(channel: Any, queue_name: str) -> tuple[Any, Any, bytes]:
    for method, properties, body in channel.consume(queue_name, inactivity_timeout=TIMEOUT):
        assert method is not None, "no message reached the AMQP consumer"
        channel.basic_ack(method.delivery_tag)
        channel.cancel()
        return method, properties, body
    raise AssertionError("unreachable")


def test_mqtt_amqp_topic_becomes_routing_key(gateway: RunningGateway) -> None:
    plant = uid("plant")
    with amqp_channel(gateway) as channel, mqtt_client(gateway) as device:
        name = bound_queue(channel, f"{plant}.*.temp")
        device.publish(f"{plant}/7/temp", b"21.5", qos=1)
        method, properties, body = get_one(channel, name)
    assert body == b"21.5"
    assert method.exchange == "amq.topic"
    assert method.routing_key == f"{plant}.7.temp"
    assert properties.delivery_mode == 2
    assert properties.headers["x-mqtt-publish-qos"] == 1


def test_mqtt_amqp_qos0_is_transient(gateway: RunningGateway) -> None:
    topic = uid("t")
    with amqp_channel(gateway) as channel, mqtt_client(gateway) as device:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(f"{topic}/a", b"x", qos=0)
        _, properties, _ = get_one(channel, name)
    assert properties.delivery_mode == 1
    assert properties.headers["x-mqtt-publish-qos"] == 0


def test_mqtt_amqp_v5_properties_become_amqp_properties(gateway: RunningGateway) -> None:
    topic = uid("props")
    with amqp_channel(gateway) as channel, mqtt_client(gateway) as device:
        name = bound_queue(channel, f"{topic}.#")
        device.publish(
            f"{topic}/req", b"{}", qos=1, ContentType="application/json",
            CorrelationData=b"corr-1", ResponseTopic=f"{topic}/reply",
            UserProperty=[("b", "2"), ("a", "1")], MessageExpiryInterval=60,
            PayloadFormatIndicator=1,
        )  # fmt: skip
        _, properties, _ = get_one(channel, name)
    headers = properties.headers
    assert properties.content_type == "application/json"
    assert properties.correlation_id == "corr-1"
    assert headers["x-reply-to-topic"] == f"{topic}.reply"
    assert (headers["a"], headers["b"]) == ("1", "2")
    assert headers["x-mqtt-user-properties"] == [["b", "2"], ["a", "1"]]
    assert headers["x-mqtt-payload-format-indicator"] == 1
    assert properties.expiration is not None
    assert 0 < int(properties.expiration) <= 60_000


def test_amqp_mqtt_routing_key_becomes_topic(gateway: RunningGateway) -> None:
    plant = uid("plant")
    with mqtt_client(gateway) as device, amqp_channel(gateway) as channel:
        device.subscribe(f"{plant}/+/cmd", qos=1)
        channel.basic_publish(
            "amq.topic", f"{plant}.7.cmd", b"open",
            pika.BasicProperties(delivery_mode=2, content_type="text/plain",
                                 correlation_id="c-9", headers={"site": "north"}),
        )  # fmt: skip
        msg = device.next_message()
    assert msg.topic == f"{plant}/7/cmd"
    assert msg.payload == b"open"
    assert msg.qos == 1  # delivery_mode 2 -> QoS 1
    props = msg.properties
    assert props is not None
    assert props.ContentType == "text/plain"
    assert props.CorrelationData == b"c-9"
    assert ("site", "north") in props.UserProperty


def test_amqp_mqtt_qos_from_header_capped_by_grant(gateway: RunningGateway) -> None:
    topic = uid("q")
    with mqtt_client(gateway) as device, amqp_channel(gateway) as channel:
        device.subscribe(f"{topic}/#", qos=2)
        channel.basic_publish("amq.topic", f"{topic}.a", b"0",
                              pika.BasicProperties(delivery_mode=1))  # fmt: skip
        channel.basic_publish("amq.topic", f"{topic}.b", b"2",
                              pika.BasicProperties(headers={"x-mqtt-publish-qos": 2}))  # fmt: skip
        first, second = device.next_message(), device.next_message()
    assert (first.topic, first.qos) == (f"{topic}/a", 0)
    assert (second.topic, second.qos) == (f"{topic}/b", 2)


def test_amqp_mqtt_escaped_words(gateway: RunningGateway) -> None:
    topic = uid("esc")
    with mqtt_client(gateway) as device, amqp_channel(gateway) as channel:
        device.subscribe(f"{topic}/#", qos=0)
        channel.basic_publish("amq.topic", f"{topic}.v1%2E2.a/b", b"x")
        msg = device.next_message()
    assert msg.topic == f"{topic}/v1.2/a%2Fb"


def test_mqtt_amqp_mqtt_round_trip_is_lossless(gateway: RunningGateway) -> None:
    """A worker consumes MQTT requests over AMQP and republishes them unchanged to another key;
    the MQTT subscriber sees every MQTT 5 property as it was sent, user property order included."""
    base = uid("rt")
    with (
        amqp_channel(gateway) as channel,
        mqtt_client(gateway) as device,
        mqtt_client(gateway) as listener,
    ):
        name = bound_queue(channel, f"{base}.in")
        listener.subscribe(f"{base}/out", qos=1)
        device.publish(
            f"{base}/in", b"payload", qos=1, ContentType="a/b",
            UserProperty=[("k", "1"), ("k", "2"), ("j", "0")], CorrelationData=b"\xff\x00",
        )  # fmt: skip
        _, properties, body = get_one(channel, name)
        channel.basic_publish("amq.topic", f"{base}.out", body, properties)
        msg = listener.next_message()
    props = msg.properties
    assert props is not None
    assert msg.payload == b"payload"
    assert props.ContentType == "a/b"
    assert props.UserProperty == [("k", "1"), ("k", "2"), ("j", "0")]
    assert props.CorrelationData == b"\xff\x00"  # not UTF-8: carried in x-correlation-id


def test_mqtt_subscription_is_a_visible_queue(gateway: RunningGateway) -> None:
    """Each MQTT session is `mqtt-subscription-<client id>`, so AMQP tools can inspect it
    (a persistent session's queue is durable and shared; a clean one is exclusive to it)."""
    v311 = MQTTProtocolVersion.MQTTv311
    with (
        mqtt_client(gateway, protocol=v311, clean_session=False) as device,
        amqp_channel(gateway) as channel,
    ):
        device.subscribe(f"{uid('vis')}/#", qos=1)
        client_id = device.client._client_id.decode()
        ok = channel.queue_declare(f"mqtt-subscription-{client_id}", passive=True)
    assert ok.method.consumer_count == 1


def test_amqp_publisher_sets_and_clears_a_retained_message(gateway: RunningGateway) -> None:
    topic = uid("ret")
    with amqp_channel(gateway) as channel:
        channel.basic_publish("amq.topic", f"{topic}.state", b"on",
                              pika.BasicProperties(headers={"x-mqtt-retain": True}))  # fmt: skip
    with mqtt_client(gateway) as late:
        late.subscribe(f"{topic}/+", qos=1)  # a wildcard filter gets it too
        msg = late.next_message()
    assert (msg.topic, msg.payload, msg.retain) == (f"{topic}/state", b"on", True)
    with amqp_channel(gateway) as channel:
        channel.basic_publish("amq.topic", f"{topic}.state", b"",
                              pika.BasicProperties(headers={"x-mqtt-retain": True}))  # fmt: skip
    with mqtt_client(gateway) as later:
        later.subscribe(f"{topic}/+", qos=1)
        with pytest.raises(queue.Empty):
            later.messages.get(timeout=0.3)


def test_mqtt_qos1_to_a_full_amqp_queue_is_refused_with_0x97(gateway: RunningGateway) -> None:
    """PUBACK means every target queue took the message; a reject-publish queue that is full
    makes the v5 PUBACK carry Quota exceeded (DESIGN.md section 5)."""
    topic = uid("full")
    with amqp_channel(gateway) as channel, mqtt_client(gateway) as device:
        name = channel.queue_declare(
            "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        ).method.queue
        channel.queue_bind(name, "amq.topic", f"{topic}.#")
        acks: queue.Queue[int] = queue.Queue()
        device.client.on_publish = lambda _c, _u, _mid, code, _p: acks.put(code.value)
        device.client.publish(f"{topic}/a", b"1", 1)
        device.client.publish(f"{topic}/a", b"2", 1)
        assert [acks.get(timeout=TIMEOUT), acks.get(timeout=TIMEOUT)] == [0x00, 0x97]


def test_memory_alarm_stops_reading_mqtt_publishers_until_queues_drain() -> None:
    """Past `memory_limit` queued bytes a publisher is not read (MQTT has no blocked packet, so
    TCP back-pressure is the signal); once the queues drain it is read again and every PUBACK
    arrives. Nothing is dropped."""
    with running_gateway(memory_limit=20_000) as gw, amqp_channel(gw) as channel:
        name = bound_queue(channel, "alarm.#")
        acks: queue.Queue[int] = queue.Queue()
        with mqtt_client(gw) as device:
            device.client.on_publish = lambda _c, _u, mid, _code, _p: acks.put(mid)
            for _ in range(20):
                device.client.publish("alarm/x", b"x" * 4096, 1)
            got = drain(acks, quiet=0.5)
            assert 4 <= len(got) < 20  # blocked once the queue passed 20 kB
            assert channel.queue_purge(name).method.message_count == len(got)
            got.extend(acks.get(timeout=TIMEOUT) for _ in range(20 - len(got)))
        assert len(set(got)) == 20


def drain(source: queue.Queue[int], quiet: float) -> list[int]:
    """Everything that arrives until `quiet` seconds pass with nothing new."""
    found = []
    while True:
        try:
            found.append(source.get(timeout=quiet))
        except queue.Empty:
            return found
