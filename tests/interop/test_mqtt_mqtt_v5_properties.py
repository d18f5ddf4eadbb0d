"""paho-mqtt 5: Message Expiry, Topic Alias both ways, Maximum Packet Size towards the client,
application properties passed unaltered, Payload Format Indicator, Request Problem
Information, server-initiated DISCONNECT with a reason code."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V311,
    Paho,
    close_clients,  # noqa: F401  (autouse: closes every client)
    props,
    uid,
    wait_until,
)

pytestmark = pytest.mark.interop


def test_MQTT_3_3_2_application_properties_pass_unaltered(gateway: RunningGateway) -> None:
    topic = uid("props")
    sub = Paho(gateway.mqtt_port)
    sub.subscribe(topic, 1)
    v311 = Paho(gateway.mqtt_port, version=V311)
    v311.subscribe(topic, 1)
    pub = Paho(gateway.mqtt_port)
    sent = props(
        ContentType="application/json",
        CorrelationData=b"\x00req-42\xff",
        ResponseTopic=f"{topic}/reply",
        PayloadFormatIndicator=1,
        UserProperty=[("site", "7"), ("unit", "C"), ("unit", "F")],
    )
    pub.publish(topic, b'{"t": 21.5}', qos=1, properties=sent)
    got = sub.next().properties
    assert got.ContentType == "application/json"
    assert got.CorrelationData == b"\x00req-42\xff"
    assert got.ResponseTopic == f"{topic}/reply"
    assert got.PayloadFormatIndicator == 1
    # Order and repeated names are kept [MQTT-3.3.2-18].
    assert got.UserProperty == [("site", "7"), ("unit", "C"), ("unit", "F")]
    assert v311.next().payload == b'{"t": 21.5}'  # a 3.1.1 subscriber gets the message
    for client in (sub, v311, pub):
        client.close()


def test_MQTT_3_3_2_5_and_6_message_expiry(gateway: RunningGateway) -> None:
    cid, topic = uid("mexp"), uid("mexp")
    keep = props(PacketTypes.CONNECT, SessionExpiryInterval=30)
    sub = Paho(gateway.mqtt_port, cid, clean=False, properties=keep)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"short", qos=1, properties=props(MessageExpiryInterval=1))
    pub.publish(topic, b"long", qos=1, properties=props(MessageExpiryInterval=60))
    pub.publish(topic, b"forever", qos=1)
    queue = f"mqtt-subscription-{cid}"
    vhost = gateway.gateway.mqtt.vhost
    # The short one expires in the queue while the client is away (about a second).
    wait_until(lambda: gateway.call(lambda: vhost.queue(queue).message_count) == 2, timeout=4)
    ack = sub.connect(clean=False)
    assert ack.session_present
    first, second = sub.take(2)
    assert first.payload == b"long"
    # What is left after the time queued, rounded up: below 60 now.
    assert 55 <= first.properties.MessageExpiryInterval < 60
    assert second.payload == b"forever"
    assert not hasattr(second.properties, "MessageExpiryInterval")
    sub.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    pub.close()


def test_MQTT_3_3_2_topic_alias_from_the_client(gateway: RunningGateway) -> None:
    topic = uid("alias-in")
    sub = Paho(gateway.mqtt_port)
    sub.subscribe(topic, 1)
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"sets alias", qos=1, properties=props(TopicAlias=1))
    pub.publish("", b"uses alias", qos=1, properties=props(TopicAlias=1))
    got = sub.take(2)
    assert [(m.topic, m.payload) for m in got] == [
        (topic, b"sets alias"),
        (topic, b"uses alias"),
    ]
    sub.close()
    pub.close()


def test_MQTT_3_3_2_9_topic_alias_above_the_maximum_is_0x94(gateway: RunningGateway) -> None:
    pub = Paho(gateway.mqtt_port)
    assert pub.connack is not None
    assert pub.connack.properties is not None
    limit = pub.connack.properties.TopicAliasMaximum
    pub.client.publish(uid("t"), b"x", 1, properties=props(TopicAlias=limit + 1))
    assert pub.next_disconnect().reason_code == 0x94  # Topic Alias invalid


def test_MQTT_3_3_2_11_topic_alias_towards_the_client(gateway: RunningGateway) -> None:
    """paho does not resolve aliases itself, which shows the wire: the first PUBLISH carries
    topic and alias, the next ones the alias and an empty topic (MQTT.js resolves them in
    test_mqtt_mqttjs.py)."""
    topic = uid("alias-out")
    sub = Paho(gateway.mqtt_port, properties=props(PacketTypes.CONNECT, TopicAliasMaximum=4))
    sub.subscribe(f"{topic}/+", 1)
    pub = Paho(gateway.mqtt_port)
    for name in ("a", "b", "a", "a"):
        pub.publish(f"{topic}/{name}", name.encode(), qos=1)
    got = [(m.topic, m.properties.TopicAlias, m.payload) for m in sub.take(4)]
    assert got == [
        (f"{topic}/a", 1, b"a"),
        (f"{topic}/b", 2, b"b"),
        ("", 1, b"a"),
        ("", 1, b"a"),
    ]
    no_alias = Paho(gateway.mqtt_port)  # Topic Alias Maximum 0: never an alias [MQTT-3.3.2-11]
    no_alias.subscribe(f"{topic}/+", 1)
    pub.publish(f"{topic}/a", b"plain", qos=1)
    message = no_alias.next()
    assert message.topic == f"{topic}/a"
    assert not hasattr(message.properties, "TopicAlias")
    for client in (sub, pub, no_alias):
        client.close()


def test_MQTT_3_1_2_25_messages_larger_than_the_client_maximum_are_dropped(
    gateway: RunningGateway,
) -> None:
    topic = uid("maxpkt")
    limit = props(PacketTypes.CONNECT, MaximumPacketSize=256)
    sub = Paho(gateway.mqtt_port, properties=limit)
    sub.subscribe(topic, 1)
    pub = Paho(gateway.mqtt_port)
    pub.publish(topic, b"x" * 1000, qos=1)
    pub.publish(topic, b"fits", qos=1)
    assert sub.next().payload == b"fits"
    sub.assert_silent()
    sub.close()
    pub.close()


@pytest.mark.parametrize("qos", [1, 2])
def test_MQTT_3_3_2_4_invalid_utf8_with_payload_format_1_is_0x99(
    gateway: RunningGateway, qos: int
) -> None:
    topic = uid("pfi")
    sub = Paho(gateway.mqtt_port)
    sub.subscribe(topic, 1)
    pub = Paho(gateway.mqtt_port)
    bad = props(PayloadFormatIndicator=1)
    if qos == 1:
        code, ack_props = pub.publish_with_ack(topic, b"\xff\xfe", qos, bad)
        assert code == 0x99  # Payload format invalid
        assert ack_props is not None
        assert ack_props.ReasonString  # explains why (problem information requested)
    else:
        # paho reports PUBCOMP: after PUBREC 0x99 nothing was stored, so PUBREL finds no id.
        assert pub.publish(topic, b"\xff\xfe", qos, properties=bad) == 0x92
    sub.assert_silent()
    assert pub.publish(topic, "ok ✓".encode(), 1, properties=bad) == 0
    assert sub.next().payload == "ok ✓".encode()
    sub.close()
    pub.close()


def test_MQTT_3_1_2_29_request_problem_information_0_removes_reason_strings(
    gateway: RunningGateway,
) -> None:
    quiet = props(PacketTypes.CONNECT, RequestProblemInformation=0)
    pub = Paho(gateway.mqtt_port, properties=quiet)
    code, ack_props = pub.publish_with_ack(uid("rpi"), b"\xff", 1, props(PayloadFormatIndicator=1))
    assert code == 0x99
    assert ack_props is None or not hasattr(ack_props, "ReasonString")
    pub.close()


def test_publish_to_sys_is_not_authorized(gateway: RunningGateway) -> None:
    pub = Paho(gateway.mqtt_port)
    assert pub.publish("$SYS/broker/fake", b"x", qos=1) == 0x87
    pub.close()
