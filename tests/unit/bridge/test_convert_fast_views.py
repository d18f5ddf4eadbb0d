"""The delivery hot path's short cuts in bridge/convert.py, checked against the full code as
the oracle: `MqttView.acked_header` (QoS 1/2 headers cached per message shape, the packet id
packed in) against `encode_publish_header`, and `view_function` against `mqtt_view`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.convert import (
    A_VIEW,
    MqttView,
    message_from_plain_publish,
    message_from_publish,
    mqtt_view,
    plain_views,
    view_function,
)
from gateway.bridge.topics import TopicTranslator
from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.codec import encode_publish_header, publish_header_parts
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Properties,
    make_publish,
)
from tests.unit.mqtt.strategies import properties, topic_names

STRICT = TopicTranslator("strict")
RABBIT = TopicTranslator("rabbitmq")
HEADERS = settings(max_examples=200, deadline=None)
# Payload sizes across every Remaining Length width (1 to 4 bytes) and the edges between them.
sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from([123, 124, 125, 126, 127, 128, 16_380, 16_383, 16_384, 2_097_150]),
    st.integers(0, 200_000_000),
)


@HEADERS
@given(
    topic=topic_names,
    size=sizes,
    qos=st.integers(1, 2),
    retain=st.booleans(),
    version=st.sampled_from([MQTT_3_1, MQTT_3_1_1, MQTT_5]),
    props=properties("PUBLISH"),
    packet_ids=st.lists(st.integers(1, 0xFFFF), min_size=1, max_size=3),
)
def test_acked_header_is_the_encoders_header(
    topic: str,
    size: int,
    qos: int,
    retain: bool,
    version: int,
    props: Properties,
    packet_ids: list[int],
) -> None:
    view = MqttView(topic, qos, retain, props, None)
    v5 = version == MQTT_5
    sent_props = props if v5 else EMPTY_PROPERTIES
    for packet_id in packet_ids:  # the first encodes and caches, the others are cache hits
        assert view.acked_header(size, qos, retain, v5, packet_id) == encode_publish_header(
            topic, size, qos, retain, False, packet_id, sent_props, version
        )


@HEADERS
@given(
    topic=topic_names,
    size=sizes,
    qos=st.integers(1, 2),
    flags=st.tuples(st.booleans(), st.booleans()),
    version=st.sampled_from([MQTT_3_1_1, MQTT_5]),
    props=properties("PUBLISH"),
    packet_id=st.integers(1, 0xFFFF),
)
def test_header_parts_surround_the_packet_id(
    topic: str,
    size: int,
    qos: int,
    flags: tuple[bool, bool],
    version: int,
    props: Properties,
    packet_id: int,
) -> None:
    retain, dup = flags
    head, tail = publish_header_parts(topic, size, qos, retain, dup, props, version)
    whole = encode_publish_header(topic, size, qos, retain, dup, packet_id, props, version)
    assert head + packet_id.to_bytes(2, "big") + tail == whole


def test_acked_header_keeps_one_entry_per_shape_and_stays_bounded() -> None:
    view = MqttView("a/b", 1, False, EMPTY_PROPERTIES, None)
    for size in range(40):
        view.acked_header(size, 1, False, False, 7)
    assert view.acked_headers is not None
    assert 0 < len(view.acked_headers) <= 16
    # QoS, RETAIN and version are part of the shape.
    assert view.acked_header(3, 2, True, True, 9) == encode_publish_header(
        "a/b", 3, 2, True, False, 9, EMPTY_PROPERTIES, MQTT_5
    )


def plain_message(topic: str, key: str, qos: int = 1, retain: bool = False) -> Message:
    return message_from_plain_publish(
        "amq.topic", key, topic, b"x", qos, retain, "c1", plain_views(topic, STRICT)
    )


@pytest.mark.parametrize(("qos", "retain"), [(0, False), (1, False), (1, True), (2, True)])
def test_a_plain_view_is_found_in_one_call_and_is_what_mqtt_view_finds(
    qos: int, retain: bool
) -> None:
    message = plain_message("dev/7.x/t", "dev.7%2Ex.t", qos, retain)
    view = view_function(STRICT)(message)
    assert view is mqtt_view(message, STRICT)
    assert (view.topic, view.qos, view.retain) == ("dev/7.x/t", qos, retain)
    assert view.routing_key == "dev.7%2Ex.t"


def test_a_re_keyed_copy_or_another_translator_gets_what_mqtt_view_gives() -> None:
    message = plain_message("a/b", "a.b")
    # Dead-lettering copies the annotations (the plain view with them) under a new key.
    copy = message.with_properties(AmqpProperties(delivery_mode=2), routing_key="c.d")
    assert view_function(STRICT)(copy) == mqtt_view(copy, STRICT)
    assert view_function(STRICT)(copy).topic == "c/d"
    assert view_function(RABBIT)(message) == mqtt_view(message, RABBIT)


def test_amqp_origin_messages_get_what_mqtt_view_gives() -> None:
    message = Message(
        "amq.topic", "k.v", b"x", properties=AmqpProperties(content_type="t", delivery_mode=2)
    )
    got = view_function(STRICT)(message)
    assert got == mqtt_view(message, STRICT)
    assert (got.topic, got.qos, got.properties.content_type) == ("k/v", 1, "t")


_SLOTS = ("exchange", "routing_key", "body", "raw_properties", "persistent", "expiration_ms")


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("retain", [False, True])
def test_a_plain_publish_message_is_the_general_paths_message(qos: int, retain: bool) -> None:
    # `message_from_plain_publish` fills the Message's slots itself: the same message as
    # `message_from_publish` of the same PUBLISH, and as the keyword constructor makes.
    topic = "dev/7/t"
    views = plain_views(topic, STRICT)
    fast = message_from_plain_publish(
        "amq.topic", "dev.7.t", topic, b"pay", qos, retain, "c1", views
    )
    publish = make_publish(topic, b"pay", qos, retain, False, 1 if qos else None, EMPTY_PROPERTIES)
    general = message_from_publish(
        publish, exchange="amq.topic", routing_key="dev.7.t", client_id="c1", translator=STRICT
    )
    keyword = Message(
        "amq.topic",
        "dev.7.t",
        b"pay",
        properties=general.properties,
        annotations=dict(fast.annotations),
        persistent=qos > 0,
    )
    for other in (general, keyword):
        assert [getattr(fast, name) for name in _SLOTS] == [getattr(other, name) for name in _SLOTS]
        assert fast.properties == other.properties
    assert fast.properties.delivery_mode == (2 if qos else 1)
    assert fast.persistent is (qos > 0)
    assert fast.expiration_ms is None
    assert fast.properties is fast.properties  # shared, not decoded per access
    view = fast.annotations.pop(A_VIEW)
    assert view is views[qos * 2 + retain]
    assert isinstance(view, MqttView)
    general_view = general.annotations.pop(A_VIEW)
    assert isinstance(general_view, MqttView)
    assert (view.topic, view.qos, view.retain) == (general_view.topic, qos, retain)
    assert fast.annotations == general.annotations
    # Ids keep counting across both ways of building.
    assert general.id < keyword.id
    assert fast.id != general.id
    assert (
        message_from_plain_publish(
            "amq.topic", "dev.7.t", topic, b"pay", qos, retain, "c1", views
        ).id
        > keyword.id
    )
