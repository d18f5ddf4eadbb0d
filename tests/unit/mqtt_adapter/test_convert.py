"""MQTT 5 properties <-> AMQP 0-9-1 properties, the table of DESIGN.md section 6."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.convert import (
    A_CLIENT,
    A_QOS,
    A_TOPIC,
    message_from_publish,
    mqtt_view,
    remaining_expiry,
)
from gateway.bridge.topics import TopicTranslator
from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.packets import EMPTY_PROPERTIES, Properties, Publish

STRICT = TopicTranslator("strict")


def convert(publish: Publish) -> Message:
    return message_from_publish(
        publish,
        exchange="amq.topic",
        routing_key=STRICT.topic_to_routing_key(publish.topic),
        client_id="c1",
        translator=STRICT,
    )


def as_amqp_origin(message: Message) -> Message:
    """What an AMQP consumer sees, republished by it: the AMQP view only, no annotations."""
    return Message(
        message.exchange, message.routing_key, message.body, properties=message.properties
    )


def test_plain_publish_maps_qos_and_retain() -> None:
    for qos in (0, 1, 2):
        for retain in (False, True):
            amqp = convert(Publish("a/b", b"p", qos, retain, False, qos or None)).properties
            assert amqp.delivery_mode == (2 if qos else 1)
            expected: dict[str, object] = {"x-mqtt-publish-qos": qos}
            if retain:
                expected["x-mqtt-retain"] = True
            assert amqp.headers == expected


def test_property_table() -> None:
    props = Properties(
        payload_format_indicator=1,
        message_expiry_interval=30,
        content_type="application/json",
        response_topic="replies/c1.x",
        correlation_data=b"req-17",
        user_properties=(("unit", "C"), ("unit", "F"), ("site", "7")),
    )
    message = convert(Publish("plant/7/temp", b"{}", 1, False, False, 5, props))
    amqp = message.properties
    assert amqp.content_type == "application/json"
    assert amqp.correlation_id == "req-17"
    assert amqp.expiration == "30000"
    assert message.expiration_ms == 30_000
    headers = amqp.headers
    assert headers is not None
    # The response topic in AMQP form: `/` -> `.`, a `.` inside a level escaped.
    assert headers["x-reply-to-topic"] == "replies.c1%2Ex"
    assert headers["x-mqtt-payload-format-indicator"] == 1
    assert headers["unit"] == "F"
    assert headers["site"] == "7"
    assert headers["x-mqtt-user-properties"] == [["unit", "C"], ["unit", "F"], ["site", "7"]]


def test_content_type_that_is_not_short_ascii_goes_to_a_header() -> None:
    long_type = "text/" + "x" * 300
    for content_type in ("text/plain; charset=üñï", long_type):
        amqp = convert(
            Publish("t", b"", 0, properties=Properties(content_type=content_type))
        ).properties
        assert amqp.content_type is None
        assert amqp.headers is not None
        assert amqp.headers["x-mqtt-content-type"] == content_type


def test_correlation_data_that_is_binary_or_long_goes_to_a_header() -> None:
    for data in (b"\xff\x00\x01", b"a" * 256):
        publish = Publish("t", b"", 0, properties=Properties(correlation_data=data))
        amqp = convert(publish).properties
        assert amqp.correlation_id is None
        assert amqp.headers is not None
        assert amqp.headers["x-correlation-id"] == data


def test_hop_properties_are_not_forwarded() -> None:
    props = Properties(topic_alias=3, subscription_identifiers=(4,), content_type="a")
    message = convert(Publish("t", b"", 0, properties=props))
    view = mqtt_view(message, STRICT)
    assert view.properties.topic_alias is None
    assert view.properties.subscription_identifiers == ()
    assert view.properties.content_type == "a"


def test_mqtt_origin_view_is_the_original_publish() -> None:
    props = Properties(user_properties=(("k", "v"),), message_expiry_interval=9)
    message = convert(Publish("a/b.c", b"x", 2, True, False, 3, props))
    view = mqtt_view(message, STRICT)
    assert (view.topic, view.qos, view.retain) == ("a/b.c", 2, True)
    assert view.properties is message.annotations["mqtt.properties"]
    assert view.expiry_interval == 9


def test_amqp_origin_qos_from_header_else_delivery_mode() -> None:
    def view(**amqp: object) -> int:
        message = Message("amq.topic", "a.b", b"", properties=AmqpProperties(**amqp))  # type: ignore[arg-type]
        return mqtt_view(message, STRICT).qos

    assert view(headers={"x-mqtt-publish-qos": 2}, delivery_mode=1) == 2
    assert view(delivery_mode=2) == 1
    assert view(delivery_mode=1) == 0
    assert view() == 0
    assert view(headers={"x-mqtt-publish-qos": 7}, delivery_mode=2) == 1  # bad header ignored


def test_amqp_origin_properties() -> None:
    amqp = AmqpProperties(
        content_type="text/plain",
        correlation_id="abc",
        expiration="1500",
        headers={"x-reply-to-topic": "re.q", "tenant": "t1", "n": 5, "flag": True},
        delivery_mode=2,
    )
    message = Message("amq.topic", "dev.7%2Ex.cmd", b"go", properties=amqp)
    view = mqtt_view(message, STRICT)
    assert view.topic == "dev/7.x/cmd"
    assert view.properties.content_type == "text/plain"
    assert view.properties.correlation_data == b"abc"
    assert view.properties.response_topic == "re/q"
    # Expiration in ms becomes seconds, rounded up.
    assert view.expiry_interval == 2
    assert view.properties.user_properties == (("tenant", "t1"), ("n", "5"), ("flag", "true"))


def test_remaining_expiry_rounds_up_and_subtracts_time_queued() -> None:
    assert remaining_expiry(None, 0.0, 100.0) is None
    assert remaining_expiry(10, 100.0, 100.0) == 10
    assert remaining_expiry(10, 100.0, 103.2) == 7
    assert remaining_expiry(10, 100.0, 109.99) == 1
    assert remaining_expiry(10, 100.0, 111.0) == 0


RESERVED_NAMES = ["x-mqtt-publish-qos", "x-death"]  # header names the gateway itself reads
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
TOPIC_LEVEL = st.text(st.sampled_from("ab.%*+#/"), min_size=1, max_size=5).filter(
    lambda s: "/" not in s and "+" not in s and "#" not in s
)


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(TOPIC_LEVEL, min_size=1, max_size=3),
    content_type=st.none() | TEXT,
    correlation=st.none() | st.binary(max_size=300),
    response=st.none() | st.lists(TOPIC_LEVEL, min_size=1, max_size=3).map("/".join),
    users=st.lists(st.tuples(TEXT | st.sampled_from(RESERVED_NAMES), TEXT), max_size=4),
    fmt=st.none() | st.sampled_from([0, 1]),
    expiry=st.none() | st.integers(1, 10**6),
    qos=st.sampled_from([0, 1, 2]),
)
def test_round_trip_through_amqp_is_lossless(
    levels: list[str],
    content_type: str | None,
    correlation: bytes | None,
    response: str | None,
    users: list[tuple[str, str]],
    fmt: int | None,
    expiry: int | None,
    qos: int,
) -> None:
    """MQTT -> AMQP consumer -> republished to MQTT keeps every application property."""
    topic = "/".join(levels)
    props = Properties(
        payload_format_indicator=fmt,
        message_expiry_interval=expiry,
        content_type=content_type,
        response_topic=response,
        correlation_data=correlation,
        user_properties=tuple(users),
    )
    original = convert(Publish(topic, b"body", qos, False, False, 1 if qos else None, props))
    assert original.annotations[A_TOPIC] == topic
    assert original.annotations[A_QOS] == qos
    assert original.annotations[A_CLIENT] == "c1"
    view = mqtt_view(as_amqp_origin(original), STRICT)
    assert view.topic == topic
    assert view.qos == qos
    assert view.expiry_interval == expiry
    got = view.properties
    assert got.content_type == content_type
    assert got.correlation_data == correlation
    assert got.response_topic == response
    assert got.user_properties == tuple(users)
    assert got.payload_format_indicator == fmt


def test_no_properties_shares_one_amqp_properties_object() -> None:
    first = convert(Publish("a", b"", 1, False, False, 1, EMPTY_PROPERTIES))
    second = convert(Publish("b", b"", 1, False, False, 2, EMPTY_PROPERTIES))
    assert first.properties is second.properties
