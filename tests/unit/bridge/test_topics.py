"""Topic translation, DESIGN.md section 4."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.topics import RoutingKeyTooLong, TopicTranslator

strict = TopicTranslator("strict")
rabbit = TopicTranslator("rabbitmq")


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("a/b/c", "a.b.c"),
        ("plant/7/temp", "plant.7.temp"),
        ("a.b/c", "a%2Eb.c"),
        ("star*/x", "star%2A.x"),
        ("100%", "100%25"),
        ("a//b", "a..b"),
        ("/a", ".a"),
        ("a/", "a."),
        ("$SYS/broker", "$SYS.broker"),
    ],
)
def test_strict_topic_to_key(topic: str, key: str) -> None:
    assert strict.topic_to_routing_key(topic) == key


@pytest.mark.parametrize(
    ("topic_filter", "key"),
    [
        ("a/+/#", "a.*.#"),
        ("#", "#"),
        ("+", "*"),
        ("+/+", "*.*"),
        ("a.b/+", "a%2Eb.*"),
        ("sport/tennis/*", "sport.tennis.%2A"),
    ],
)
def test_strict_filter_to_binding(topic_filter: str, key: str) -> None:
    assert strict.filter_to_binding_key(topic_filter) == key


@pytest.mark.parametrize(
    ("key", "topic"),
    [
        ("a.b.c", "a/b/c"),
        ("user.signup", "user/signup"),
        ("x/y.z", "x%2Fy/z"),
        ("a+b.c#", "a%2Bb/c%23"),
        ("a%2Eb.c", "a.b/c"),
        ("50%25", "50%"),
    ],
)
def test_strict_key_to_topic(key: str, topic: str) -> None:
    assert strict.routing_key_to_topic(key) == topic


levels = st.text(alphabet="ab.*%/+#2E5A", max_size=6).map(lambda s: s.replace("/", ""))


@settings(max_examples=300, deadline=None)
@given(st.lists(levels.filter(lambda s: "+" not in s and "#" not in s), min_size=1, max_size=6))
def test_strict_round_trip_is_lossless(parts: list[str]) -> None:
    topic = "/".join(parts)
    translator = TopicTranslator("strict")
    key = translator.topic_to_routing_key(topic)
    assert key.count(".") == topic.count("/")  # levels map to words one to one
    assert translator.routing_key_to_topic(key) == topic


def test_rabbitmq_mode_is_byte_for_byte_rabbitmq() -> None:
    assert rabbit.topic_to_routing_key("a.b/c") == "a.b.c"  # lossy, as RabbitMQ
    assert rabbit.filter_to_binding_key("a/+/#") == "a.*.#"
    assert rabbit.routing_key_to_topic("a.*.c") == "a/+/c"


def test_overlong_key_is_refused() -> None:
    with pytest.raises(RoutingKeyTooLong):
        strict.topic_to_routing_key("a" * 256)
    with pytest.raises(RoutingKeyTooLong):
        # 86 dots escape to 258 bytes even though the topic is short.
        strict.topic_to_routing_key("." * 86)
    assert strict.topic_to_routing_key("a" * 255) == "a" * 255


def test_unknown_mode_rejected() -> None:
    with pytest.raises(ValueError, match="unknown topic mode"):
        TopicTranslator("loose")  # type: ignore[arg-type]
