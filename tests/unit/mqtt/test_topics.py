"""Topic names, topic filters, shared subscriptions and matching (spec 4.7, 4.8.2)."""

# Conformance tests are named after the spec's statement ids, e.g. MQTT-2.1.3-1.

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec_errors import InvalidTopic
from gateway.mqtt.packets import ReasonCode
from gateway.mqtt.topics import (
    has_wildcards,
    matches,
    parse_shared_subscription,
    validate_topic_filter,
    validate_topic_name,
)


@pytest.mark.parametrize(
    "topic", ["a", "a/b", "/", "a//b", "/a/", "$SYS/x", " ", "é/€", "a" * 65535]
)
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize(
    "topic", ["", "a/+", "a/#", "+", "#", "a+b", "a\x00b", "a" * 65536, "€" * 21846]
)
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic_name(topic)
    assert info.value.reason_code == ReasonCode.TOPIC_NAME_INVALID


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "a/#", "a/+/b", "+/+", "/+", "+/", "a//b", "$SYS/#", "$share/g/a/#", "a" * 65535],
)
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "",
        "a/#/b",  # '#' not last [MQTT-4.7.1-1]
        "a#",  # '#' not a whole level
        "a/b#",
        "a+",  # '+' not a whole level [MQTT-4.7.1-2]
        "a/+b/c",
        "++",
        "a\x00",
        "a" * 65536,
        "$share/g",  # no filter after the share name
        "$share//a",  # empty share name
        "$share/g/",
        "$share/g+/a",
        "$share/#/a",
        "$share/g/a/#/b",  # the inner filter is validated too
    ],
)
def test_invalid_topic_filters(topic_filter: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic_filter(topic_filter)
    assert info.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("$share/group/a/b", ("group", "a/b")),
        ("$share/g/#", ("g", "#")),
        ("$share/g//", ("g", "/")),
        ("a/b", (None, "a/b")),
        ("$shared/g/a", (None, "$shared/g/a")),
        ("$share", (None, "$share")),
    ],
)
def test_parse_shared_subscription(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert parse_shared_subscription(topic_filter) == expected


@pytest.mark.parametrize("topic_filter", ["$share/", "$share/g", "$share//x", "$share/a+b/x"])
def test_MQTT_4_8_2_bad_shared_subscriptions(topic_filter: str) -> None:
    with pytest.raises(InvalidTopic):
        parse_shared_subscription(topic_filter)


def test_has_wildcards() -> None:
    assert has_wildcards("a/+")
    assert has_wildcards("#")
    assert not has_wildcards("a/b")


# The spec's own examples, sections 4.7.1.2, 4.7.1.3 and 4.7.2.
@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "sport/tennis", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+/tennis/#", "sport/tennis/player1", True),
        ("sport/tennis#", "sport/tennis", False),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("A/b", "a/b", False),
        ("a//b", "a//b", True),
        ("a/+/b", "a//b", True),
    ],
)
def test_matches_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("#", "$SYS/broker/uptime", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("+", "$SYS", False),
        ("a/#", "a/$x", True),  # only a leading '$' level is special
    ],
)
def test_MQTT_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards(
    topic_filter: str, topic: str, expected: bool
) -> None:
    assert matches(topic_filter, topic) is expected


def _oracle(topic_filter: str, topic: str) -> bool:
    """Matching restated as a regular expression, independently of `matches`."""
    if topic.startswith("$") and topic_filter[:1] in "+#":
        return False
    pattern = ""
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        sep = "/" if index else ""
        if level == "#":
            # '#' also matches the parent: "a/#" matches "a".
            pattern = f"{pattern}(?:{sep}.*)?" if index else ".*"
            break
        pattern += sep + ("[^/]*" if level == "+" else re.escape(level))
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


_levels = st.sampled_from(["a", "b", "", "$x", "é"])
_topics = st.lists(_levels, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def _filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(["a", "b", "", "+", "$x", "é"]), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    joined = "/".join(levels)
    return joined or "a"


@settings(max_examples=200, deadline=None)
@given(topic_filter=_filters(), topic=_topics)
def test_matches_agrees_with_a_regex_oracle(topic_filter: str, topic: str) -> None:
    validate_topic_filter(topic_filter)
    assert matches(topic_filter, topic) is _oracle(topic_filter, topic)


@settings(max_examples=200, deadline=None)
@given(topic=_topics)
def test_a_topic_matches_itself_and_hash(topic: str) -> None:
    assert matches(topic, topic)
    assert matches("#", topic) is not topic.startswith("$")
