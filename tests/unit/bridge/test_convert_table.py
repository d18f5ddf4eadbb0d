"""The property table of DESIGN.md section 6, row by row in both directions, through the real
AMQP property codec (what an AMQP peer would put on or read off the wire)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.amqp.codec import decode_properties, encode_properties
from gateway.bridge.convert import message_from_publish, message_qos, mqtt_view, remaining_expiry
from gateway.bridge.topics import TopicTranslator
from gateway.core.message import Message, parse_expiration
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.packets import EMPTY_PROPERTIES, Properties, Publish

STRICT = TopicTranslator("strict")
RABBIT = TopicTranslator("rabbitmq")


def from_mqtt(
    props: Properties = EMPTY_PROPERTIES, qos: int = 1, retain: bool = False, topic: str = "a/b"
) -> Message:
    publish = Publish(topic, b"x", qos, retain, False, 1 if qos else None, props)
    return message_from_publish(
        publish, exchange="amq.topic", routing_key=STRICT.topic_to_routing_key(topic),
        client_id="dev", translator=STRICT,
    )  # fmt: skip


def on_wire(message: Message) -> AmqpProperties:
    """The properties an AMQP consumer decodes."""
    return decode_properties(encode_properties(message.properties))


def from_amqp(props: AmqpProperties, key: str = "a.b") -> Message:
    """A message as the AMQP publish path builds it: raw properties, decoded on demand."""
    expiration_ms = None if props.expiration is None else parse_expiration(props.expiration)
    return Message("amq.topic", key, b"x", raw_properties=encode_properties(props),
                   decode_properties=decode_properties, persistent=props.delivery_mode == 2,
                   expiration_ms=expiration_ms)  # fmt: skip


def seen_by_mqtt(props: AmqpProperties, key: str = "a.b") -> Properties:
    return mqtt_view(from_amqp(props, key), STRICT).properties


# -- QoS and RETAIN ----------------------------------------------------------------------------


@pytest.mark.parametrize(("qos", "mode"), [(0, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("retain", [False, True])
def test_mqtt_amqp_qos_is_delivery_mode_and_header(qos: int, mode: int, retain: bool) -> None:
    message = from_mqtt(qos=qos, retain=retain)
    wire = on_wire(message)
    assert wire.delivery_mode == mode
    assert message.persistent is (qos > 0)
    expected: dict[str, object] = {"x-mqtt-publish-qos": qos}
    if retain:
        expected["x-mqtt-retain"] = True
    assert wire.headers == expected
    # No MQTT 5 properties: every such message shares one properties object.
    assert from_mqtt(qos=qos, retain=retain).properties is message.properties


@pytest.mark.parametrize(
    ("headers", "delivery_mode", "qos"),
    [
        (None, None, 0),
        (None, 1, 0),
        (None, 2, 1),
        ({"x-mqtt-publish-qos": 2}, 1, 2),
        ({"x-mqtt-publish-qos": 0}, 2, 0),
        ({"x-mqtt-publish-qos": 3}, 2, 1),  # out of range: delivery_mode decides
        ({"x-mqtt-publish-qos": True}, None, 0),
        ({"x-mqtt-publish-qos": "2"}, 2, 1),
    ],
)
def test_amqp_mqtt_qos_from_header_else_delivery_mode(
    headers: dict[str, object] | None, delivery_mode: int | None, qos: int
) -> None:
    message = from_amqp(AmqpProperties(headers=headers, delivery_mode=delivery_mode))
    assert mqtt_view(message, STRICT).qos == qos
    assert message_qos(message) == qos


@pytest.mark.parametrize(("value", "retain"), [(True, True), (False, False), (1, False)])
def test_amqp_mqtt_retain_header(value: object, retain: bool) -> None:
    view = mqtt_view(from_amqp(AmqpProperties(headers={"x-mqtt-retain": value})), STRICT)
    assert view.retain is retain


# -- Content Type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "field", "header"),
    [
        ("application/json", "application/json", None),
        ("t" * 255, "t" * 255, None),
        ("t" * 256, None, "t" * 256),
        ("text/plain; charset=ünïcode", None, "text/plain; charset=ünïcode"),
    ],
)
def test_content_type_both_ways(content_type: str, field: str | None, header: str | None) -> None:
    wire = on_wire(from_mqtt(Properties(content_type=content_type)))
    assert wire.content_type == field
    assert wire.headers is not None
    assert wire.headers.get("x-mqtt-content-type") == header
    assert seen_by_mqtt(wire).content_type == content_type


def test_amqp_content_type_that_is_not_utf8_is_not_sent_to_mqtt() -> None:
    # Short strings decode with surrogateescape; MQTT strings must be well-formed UTF-8.
    assert seen_by_mqtt(AmqpProperties(content_type="bad\udcff")).content_type is None


# -- Correlation Data --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "in_field"),
    [
        (b"req-1", True),
        ("é".encode() * 127, True),  # 254 bytes
        (b"x" * 255, True),
        (b"x" * 256, False),
        (b"\xff\x00\x01", False),  # not UTF-8
        (b"", True),
    ],
)
def test_correlation_data_both_ways(data: bytes, in_field: bool) -> None:
    wire = on_wire(from_mqtt(Properties(correlation_data=data)))
    assert wire.headers is not None
    if in_field:
        assert wire.correlation_id == data.decode()
        assert "x-correlation-id" not in wire.headers
    else:
        assert wire.correlation_id is None
        assert "x-correlation-id" in wire.headers
    assert seen_by_mqtt(wire).correlation_data == data


def test_amqp_correlation_id_reaches_mqtt_as_the_bytes_sent() -> None:
    assert seen_by_mqtt(AmqpProperties(correlation_id="c-9")).correlation_data == b"c-9"
    # Not UTF-8 on the AMQP wire: the same bytes, not a replacement.
    assert seen_by_mqtt(AmqpProperties(correlation_id="\udcff1")).correlation_data == b"\xff1"
    header = AmqpProperties(headers={"x-correlation-id": bytearray(b"\x00\x01")})
    assert seen_by_mqtt(header).correlation_data == b"\x00\x01"


# -- Response Topic ----------------------------------------------------------------------------


def test_response_topic_is_x_reply_to_topic_in_amqp_form_and_back() -> None:
    wire = on_wire(from_mqtt(Properties(response_topic="replies/v1.2/dev")))
    assert wire.headers is not None
    assert wire.headers["x-reply-to-topic"] == "replies.v1%2E2.dev"
    assert wire.reply_to is None
    assert seen_by_mqtt(wire).response_topic == "replies/v1.2/dev"


def test_response_topic_longer_than_a_routing_key_is_still_carried() -> None:
    topic = "r/" + "x" * 300
    wire = on_wire(from_mqtt(Properties(response_topic=topic)))
    assert wire.headers is not None
    assert wire.headers["x-reply-to-topic"] == "r." + "x" * 300
    assert seen_by_mqtt(wire).response_topic == topic


@pytest.mark.parametrize(
    ("queue", "topic"),
    [
        ("rpc-replies", "$amqp/reply/rpc-replies"),
        ("amq.gen-ab/c+d#", "$amqp/reply/amq.gen-ab%2Fc%2Bd%23"),
        ("amq.rabbitmq.reply-to.g1h2.X3dC", "$amqp/reply/amq.rabbitmq.reply-to.g1h2.X3dC"),
    ],
)
def test_amqp_reply_to_becomes_a_reply_topic(queue: str, topic: str) -> None:
    props = seen_by_mqtt(AmqpProperties(reply_to=queue, correlation_id="c1"))
    assert props.response_topic == topic
    assert props.correlation_data == b"c1"


def test_x_reply_to_topic_wins_over_reply_to() -> None:
    props = AmqpProperties(reply_to="q", headers={"x-reply-to-topic": "dev.7.reply"})
    assert seen_by_mqtt(props).response_topic == "dev/7/reply"


@pytest.mark.parametrize("header", ["", "nul\x00", "a/b.c"])
def test_reply_topic_that_is_no_topic_name_is_left_out(header: str) -> None:
    props = AmqpProperties(headers={"x-reply-to-topic": header}, reply_to="q")
    expected = "a%2Fb/c" if header == "a/b.c" else None
    assert seen_by_mqtt(props).response_topic == expected
    rabbit = from_amqp(AmqpProperties(headers={"x-reply-to-topic": "a.*.b"}))
    assert mqtt_view(rabbit, RABBIT).properties.response_topic is None  # `+` in rabbitmq mode


# -- Message Expiry Interval -------------------------------------------------------------------


def test_expiry_is_milliseconds_on_amqp() -> None:
    message = from_mqtt(Properties(message_expiry_interval=60))
    assert on_wire(message).expiration == "60000"
    assert message.expiration_ms == 60_000
    assert mqtt_view(message, STRICT).expiry_interval == 60


@pytest.mark.parametrize(("expiration", "seconds"), [("1", 1), ("1000", 1), ("1500", 2)])
def test_amqp_expiration_rounds_up_to_seconds(expiration: str, seconds: int) -> None:
    assert mqtt_view(from_amqp(AmqpProperties(expiration=expiration)), STRICT).expiry_interval == (
        seconds
    )


@pytest.mark.parametrize(
    ("interval", "queued", "sent"),
    [(None, 5.0, None), (60, 0.0, 60), (60, 0.2, 60), (60, 1.0, 59), (60, 59.5, 1), (2, 3.0, 0)],
)
def test_expiry_sent_is_what_is_left_after_queueing(
    interval: int | None, queued: float, sent: int | None
) -> None:
    assert remaining_expiry(interval, 100.0, 100.0 + queued) == sent


# -- User Properties ---------------------------------------------------------------------------


def test_user_properties_are_headers_and_an_ordered_list() -> None:
    pairs = (("b", "2"), ("a", "1"), ("b", "3"), ("x-mqtt-retain", "no"), ("n" * 256, "long"))
    wire = on_wire(from_mqtt(Properties(user_properties=pairs)))
    headers = wire.headers
    assert headers is not None
    assert (headers["a"], headers["b"]) == ("1", "3")  # a repeated name: the last value
    assert "x-mqtt-retain" not in headers  # a user property never sets a gateway header
    assert "n" * 256 not in headers  # not a field table name
    assert headers["x-mqtt-user-properties"] == [list(pair) for pair in pairs]
    assert seen_by_mqtt(wire).user_properties == pairs  # order, duplicates and all


def test_headers_added_by_an_amqp_worker_follow_the_listed_pairs() -> None:
    headers: dict[str, object] = {"x-mqtt-user-properties": [["k", "1"], ["k", "2"]], "k": "2"}
    headers["status"] = "ok"
    assert seen_by_mqtt(AmqpProperties(headers=headers)).user_properties == (
        ("k", "1"), ("k", "2"), ("status", "ok"),
    )  # fmt: skip


def test_amqp_header_values_as_user_properties() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers: dict[str, object] = {
        "s": "text",
        "i": 42,
        "neg": -7,
        "f": 1.5,
        "t": True,
        "d": Decimal("3.14"),
        "ts": stamp,
        "utf8-bytes": bytearray(b"caf\xc3\xa9"),
        "raw-bytes": bytearray(b"\xff\xfe"),  # not text: left out
        "none": None,  # void: left out
        "list": [1, 2],  # arrays and tables have no text form: left out
        "table": {"a": 1},
        "nul": "a\x00b",  # MQTT strings may not contain U+0000
        "x-death": [{"count": 1}],
        "x-first-death-queue": "q",
        "x-mqtt-publish-qos": 1,
    }
    assert seen_by_mqtt(AmqpProperties(headers=headers)).user_properties == (
        ("s", "text"), ("i", "42"), ("neg", "-7"), ("f", "1.5"), ("t", "true"),
        ("d", "3.14"), ("ts", stamp.isoformat()), ("utf8-bytes", "café"),
    )  # fmt: skip


def test_amqp_values_too_long_for_an_mqtt_string_are_left_out() -> None:
    """AMQP long strings may pass 65535 bytes; an MQTT string or binary may not (the PUBLISH
    could not be encoded at all)."""
    big = "x" * 65536
    headers: dict[str, object] = {"x-mqtt-content-type": big, "x-correlation-id": big.encode(),
                                  "k": big, "ok": "é" * 100}  # fmt: skip
    props = seen_by_mqtt(AmqpProperties(headers=headers))
    assert props.content_type is None
    assert props.correlation_data is None
    assert props.user_properties == (("ok", "é" * 100),)
    fits = seen_by_mqtt(AmqpProperties(headers={"k": "é" * 32767}))  # 65534 bytes
    assert fits.user_properties == (("k", "é" * 32767),)
    too_long = seen_by_mqtt(AmqpProperties(headers={"k": "é" * 32768}))  # 65536 bytes
    assert too_long.user_properties == ()


# -- Payload Format Indicator and what is not forwarded ----------------------------------------


@pytest.mark.parametrize("indicator", [0, 1])
def test_payload_format_indicator_both_ways(indicator: int) -> None:
    wire = on_wire(from_mqtt(Properties(payload_format_indicator=indicator)))
    assert wire.headers is not None
    assert wire.headers["x-mqtt-payload-format-indicator"] == indicator
    assert seen_by_mqtt(wire).payload_format_indicator == indicator
    bad = AmqpProperties(headers={"x-mqtt-payload-format-indicator": 7})
    assert seen_by_mqtt(bad).payload_format_indicator is None


def test_hop_properties_are_not_forwarded() -> None:
    props = Properties(topic_alias=3, subscription_identifiers=(4,), content_type="a/b")
    view = mqtt_view(from_mqtt(props), STRICT)
    assert view.properties.topic_alias is None
    assert view.properties.subscription_identifiers == ()
    assert view.properties.content_type == "a/b"


def test_amqp_message_without_mqtt_meaning_has_no_properties() -> None:
    props = seen_by_mqtt(AmqpProperties(delivery_mode=2, message_id="m", app_id="svc"))
    assert props == EMPTY_PROPERTIES


# -- the whole table as one property -----------------------------------------------------------

mqtt_text = st.text(
    st.characters(
        codec="utf-8", exclude_characters="\x00", categories=("L", "M", "N", "P", "S", "Z", "Cc")
    ),
    max_size=12,
)


def _as_topic_name(text: str) -> str:
    return "r/" + text.replace("+", "p").replace("#", "h")


@st.composite
def mqtt_properties(draw: st.DrawFn) -> Properties:
    return Properties(
        payload_format_indicator=draw(st.none() | st.sampled_from([0, 1])),
        message_expiry_interval=draw(st.none() | st.integers(1, 4_294_967)),
        content_type=draw(st.none() | mqtt_text | st.text("ab", min_size=250, max_size=260)),
        response_topic=draw(st.none() | mqtt_text.map(_as_topic_name)),
        correlation_data=draw(st.none() | st.binary(max_size=300)),
        user_properties=tuple(draw(st.lists(st.tuples(mqtt_text, mqtt_text), max_size=5))),
    )


@settings(max_examples=200, deadline=None)
@given(mqtt_properties(), st.sampled_from([0, 1, 2]), st.booleans())
def test_mqtt_amqp_mqtt_is_lossless(props: Properties, qos: int, retain: bool) -> None:
    """An AMQP worker republishing an MQTT message's properties as it got them: an MQTT 5
    subscriber sees what the publisher sent."""
    wire = on_wire(from_mqtt(props, qos=qos, retain=retain))
    view = mqtt_view(from_amqp(wire), STRICT)
    assert (view.qos, view.retain) == (qos, retain)
    assert view.expiry_interval == props.message_expiry_interval
    assert view.properties == Properties(
        payload_format_indicator=props.payload_format_indicator,
        content_type=props.content_type,
        response_topic=props.response_topic,
        correlation_data=props.correlation_data,
        user_properties=props.user_properties,
    )
