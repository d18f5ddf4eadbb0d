"""Mapping rules, the pure parts: namespace matching with captures, containment and
intersection of filters, and routing-key templates (parse errors, render, read back)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.mapping_filters import Captures, capture, contains, intersect
from gateway.bridge.mapping_template import (
    Template,
    TemplateError,
    keys_may_collide,
    parse_template,
)
from gateway.bridge.topics import RoutingKeyTooLong, TopicTranslator
from gateway.mqtt.topics import matches

STRICT = TopicTranslator("strict")


def lv(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


@pytest.mark.parametrize(
    ("namespace", "topic", "plus", "rest"),
    [
        ("factory/+/telemetry/#", "factory/dev-7/telemetry/temp", ("dev-7",), ("temp",)),
        ("factory/+/telemetry/#", "factory/dev-7/telemetry/a/b", ("dev-7",), ("a", "b")),
        ("factory/+/telemetry/#", "factory/dev-7/telemetry", ("dev-7",), ()),
        ("factory/+/telemetry/#", "factory/dev-7/telemetry/", ("dev-7",), ("",)),
        ("a/+/+", "a/x/y", ("x", "y"), None),
        ("a/+", "a/", ("",), None),
        ("#", "x/y", (), ("x", "y")),
        ("$SYS/#", "$SYS/broker", (), ("broker",)),
    ],
)
def test_capture_takes_plus_levels_and_the_rest(
    namespace: str, topic: str, plus: tuple[str, ...], rest: tuple[str, ...] | None
) -> None:
    assert capture(lv(namespace), topic.split("/")) == Captures(plus, rest)


@pytest.mark.parametrize(
    ("namespace", "topic"),
    [
        ("factory/+/telemetry/#", "factory/dev-7/status"),
        ("factory/+/telemetry/#", "factory"),
        ("a/+", "a/b/c"),
        ("a/+", "a"),
        ("#", "$SYS/x"),  # MQTT-4.7.2-1
        ("+/x", "$SYS/x"),
        ("a/b", "a/b/c"),
    ],
)
def test_capture_refuses_what_mqtt_matching_refuses(namespace: str, topic: str) -> None:
    assert capture(lv(namespace), topic.split("/")) is None
    assert not matches(namespace, topic)


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("#", "a/b", True),
        ("#", "$SYS/#", False),
        ("a/#", "a", True),
        ("a/#", "a/+/c", True),
        ("a/+", "a/#", False),
        ("a/+", "a/b", True),
        ("a/b", "a/+", False),
        ("+/+", "$x/y", False),
        ("$x/+", "$x/y", True),
        ("a/+/c", "a/b/c", True),
        ("a", "a/#", False),
        ("a/b", "a/b", True),
    ],
)
def test_contains(outer: str, inner: str, expected: bool) -> None:
    assert contains(lv(outer), lv(inner)) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("factory/+/telemetry/#", "factory/dev-7/#", "factory/dev-7/telemetry/#"),
        ("factory/+/telemetry/#", "#", "factory/+/telemetry/#"),
        ("factory/+/telemetry/#", "factory/+/telemetry", "factory/+/telemetry"),
        ("factory/+/telemetry/#", "factory/+/status", None),
        ("a/#", "a", "a"),
        ("a", "a/#", "a"),
        ("#", "$SYS/x", None),
        ("+/x", "$SYS/x", None),
        ("a/+", "+/b", "a/b"),
        ("a/+/c", "a/b", None),
    ],
)
def test_intersect(first: str, second: str, expected: str | None) -> None:
    found = intersect(lv(first), lv(second))
    assert (None if found is None else "/".join(found)) == expected
    assert intersect(lv(second), lv(first)) == found


@pytest.mark.parametrize(
    ("source", "plus", "rest", "message"),
    [
        ("", 0, False, "empty"),
        ("a.{3}", 2, False, "only 2 '+' level"),
        ("{1}.{1}", 1, False, "used twice"),
        ("{#}", 0, False, "no trailing '#'"),
        ("{x}", 0, False, "unknown placeholder"),
        ("{0}", 0, False, "unknown placeholder"),
        ("dev-{1}", 1, False, "whole word"),
        ("a.*", 0, False, "wildcards"),
        ("a.#", 0, False, "wildcards"),
        ("{#}.{topic}", 0, True, "not reversible"),
        ("{topic}.{1}", 1, False, "not reversible"),
        ("plant.{1}", 2, False, "lose {2}"),
        ("plant.{1}", 1, True, "lose {#}"),
        ("plant", 1, False, "lose {1}"),
    ],
)
def test_bad_templates_say_why(source: str, plus: int, rest: bool, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_template(source, plus, rest)


def rendered(source: str, namespace: str, topic: str) -> str:
    levels = lv(namespace)
    template = parse_template(source, levels.count("+"), levels[-1] == "#")
    found = capture(levels, topic.split("/"))
    assert found is not None
    return template.render(found, topic, STRICT, as_filter=False)


@pytest.mark.parametrize(
    ("source", "namespace", "topic", "key"),
    [
        ("{1}.{#}", "factory/+/telemetry/#", "factory/dev-7/telemetry/temp", "dev-7.temp"),
        ("{1}.{#}", "factory/+/telemetry/#", "factory/dev-7/telemetry", "dev-7"),
        ("{1}.{#}", "factory/+/telemetry/#", "factory/dev-7/telemetry/", "dev-7."),
        ("plant.{1}.{#}", "factory/+/telemetry/#", "factory/d.1/telemetry/a/b", "plant.d%2E1.a.b"),
        ("{#}.{1}", "x/+/#", "x/k/a/b", "a.b.k"),
        ("{2}.{1}", "x/+/+", "x/a/b", "b.a"),
        ("mqtt.{topic}", "x/#", "x/a*b", "mqtt.x.a%2Ab"),
        ("{topic}", "#", "a/b", "a.b"),
        ("fixed", "only/this", "only/this", "fixed"),
    ],
)
def test_render(source: str, namespace: str, topic: str, key: str) -> None:
    assert rendered(source, namespace, topic) == key


def test_render_as_binding_key_turns_wildcards_into_amqp_ones() -> None:
    levels = lv("factory/+/telemetry/#")
    template = parse_template("{1}.{#}", 1, True)
    for common, key in (
        ("factory/+/telemetry/#", "*.#"),
        ("factory/dev-7/telemetry/#", "dev-7.#"),
        ("factory/+/telemetry", "*"),
        ("factory/+/telemetry/+", "*.*"),
    ):
        found = capture(levels, common.split("/"))
        assert found is not None
        assert template.render(found, common, STRICT, as_filter=True) == key


def test_render_refuses_keys_over_255_bytes() -> None:
    template = parse_template("{1}", 1, False)
    with pytest.raises(RoutingKeyTooLong):
        template.render(Captures(("é" * 200,), None), "", STRICT, as_filter=False)


def test_read_gives_back_the_captures() -> None:
    template = parse_template("plant.{1}.{#}", 1, True)
    assert template.read("plant.dev-7.temp", STRICT) == (Captures(("dev-7",), ("temp",)), None)
    assert template.read("plant.dev-7", STRICT) == (Captures(("dev-7",), ()), None)
    assert template.read("other.dev-7.temp", STRICT) is None
    assert template.read("plant", STRICT) is None
    only_rest = parse_template("{#}", 0, True)
    assert only_rest.read("", STRICT) == (Captures((), ()), None)
    topic = parse_template("mqtt.{topic}", 0, True)
    assert topic.read("mqtt.a.b%2Ec", STRICT) == (Captures((), None), "a/b.c")
    assert topic.read("mqtt", STRICT) is None


def template_of(source: str, plus: int = 1, rest: bool = True) -> Template:
    return parse_template(source, plus, rest)


@pytest.mark.parametrize(
    ("first", "second", "collide"),
    [
        ("a.{1}.{#}", "b.{1}.{#}", False),
        ("{1}.{#}", "{1}.{#}", True),
        ("{1}.a", "{1}.b", False),
        ("{1}.{#}", "x.{1}.{#}", True),
        ("{topic}", "{topic}", False),
        ("{1}", "{1}.x.y", False),
    ],
)
def test_keys_may_collide(first: str, second: str, collide: bool) -> None:
    def parse(source: str) -> Template:
        return parse_template(source, source.count("{1}"), "{#}" in source)

    assert keys_may_collide(parse(first), parse(second)) is collide
    assert keys_may_collide(parse(second), parse(first)) is collide


# Levels with the characters strict mode escapes, empty levels and non-ASCII.
LEVEL = st.text(alphabet=st.sampled_from("ab.*%é-_ 7"), max_size=5)


@settings(max_examples=200, deadline=None)
@given(
    device=LEVEL,
    rest=st.lists(LEVEL, max_size=4),
    source=st.sampled_from(["{1}.{#}", "plant.{1}.{#}", "{#}.x.{1}", "{1}.{#}.end"]),
)
def test_topic_to_key_to_topic_is_the_identity(device: str, rest: list[str], source: str) -> None:
    namespace = lv("factory/+/telemetry/#")
    template = parse_template(source, 1, True)
    topic = "/".join(["factory", device, "telemetry", *rest])
    found = capture(namespace, topic.split("/"))
    assert found is not None
    key = template.render(found, topic, STRICT, as_filter=False)
    read = template.read(key, STRICT)
    assert read is not None
    assert read[0] == found


# Small alphabets so that random filters and topics often meet.
FILTER_LEVEL = st.sampled_from(["a", "b", "$s", "+", ""])
TOPIC_LEVEL = st.sampled_from(["a", "b", "$s", ""])


@st.composite
def filters(draw: st.DrawFn) -> tuple[str, ...]:
    levels = draw(st.lists(FILTER_LEVEL, min_size=1, max_size=3))
    if draw(st.booleans()):
        levels.append("#")
    return tuple(levels)


@settings(max_examples=200, deadline=None)
@given(
    first=filters(),
    second=filters(),
    topics=st.lists(st.lists(TOPIC_LEVEL, min_size=1, max_size=5), min_size=1, max_size=30),
)
def test_contains_and_intersect_agree_with_mqtt_matching(
    first: tuple[str, ...], second: tuple[str, ...], topics: list[list[str]]
) -> None:
    common = intersect(first, second)
    first_text, second_text = "/".join(first), "/".join(second)
    for levels in topics:
        topic = "/".join(levels)
        in_first, in_second = matches(first_text, topic), matches(second_text, topic)
        if contains(first, second) and in_second:
            assert in_first
        in_common = common is not None and matches("/".join(common), topic)
        assert in_common == (in_first and in_second), (topic, common)
        assert (capture(first, levels) is not None) == in_first
