"""Retained-message trie: wildcard lookups agree with the reference matcher."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.retained import RetainedLimitExceeded, RetainedStore
from gateway.mqtt.topics import matches

LEVEL = st.sampled_from(["a", "b", "", "$SYS", "$x", "c"])
TOPIC = st.lists(LEVEL, min_size=1, max_size=4).map("/".join)
FILTER_LEVEL = st.sampled_from(["a", "b", "", "+", "$SYS", "c"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVEL, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


def store(**limits: int) -> RetainedStore[str]:
    return RetainedStore(
        max_count=limits.get("max_count", 1000), max_bytes=limits.get("max_bytes", 10**6)
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(TOPIC, max_size=12), filters())
def test_match_agrees_with_reference_matcher(topics: list[str], topic_filter: str) -> None:
    retained = store()
    for topic in topics:
        retained.set(topic, topic, 1)
    got = sorted(r.topic for r in retained.match(topic_filter, now=0.0))
    expected = sorted({t for t in topics if matches(topic_filter, t)})
    assert got == expected


def test_replace_and_clear_keep_counters_right() -> None:
    retained = store()
    retained.set("a/b", "one", 3)
    retained.set("a/b", "two", 5)
    assert (retained.count, retained.total_bytes) == (1, 5)
    assert retained.get("a/b", 0.0) is not None
    retained.set("a/b", "", 0)  # an empty retained payload clears [MQTT-3.3.1-10]
    assert (retained.count, retained.total_bytes) == (0, 0)
    assert retained.match("#", 0.0) == []


def test_wildcard_subscription_gets_retained() -> None:
    retained = store()
    retained.set("sensors/1/temp", "21", 2)
    retained.set("sensors/2/temp", "22", 2)
    retained.set("sensors/2/hum", "40", 2)
    assert sorted(r.value for r in retained.match("sensors/+/temp", 0.0)) == ["21", "22"]
    assert len(retained.match("sensors/#", 0.0)) == 3


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    retained = store()
    retained.set("$SYS/uptime", "1", 1)
    assert retained.match("#", 0.0) == []
    assert retained.match("+/uptime", 0.0) == []
    assert [r.value for r in retained.match("$SYS/#", 0.0)] == ["1"]


def test_expired_messages_are_not_returned_and_are_dropped() -> None:
    retained = store()
    retained.set("a", "x", 1, expires_at=10.0)
    assert len(retained.match("a", 9.0)) == 1
    assert retained.match("a", 10.0) == []
    assert retained.count == 0


def test_limits() -> None:
    retained = store(max_count=2, max_bytes=10)
    retained.set("a", "x", 4)
    retained.set("b", "x", 4)
    with pytest.raises(RetainedLimitExceeded):
        retained.set("c", "x", 1)
    with pytest.raises(RetainedLimitExceeded):
        retained.set("a", "x", 7)  # replacing counts the new size
    retained.set("a", "x", 6)
    assert (retained.count, retained.total_bytes) == (2, 10)
    assert retained.get("c", 0.0) is None
