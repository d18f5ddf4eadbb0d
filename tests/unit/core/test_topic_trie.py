"""The topic trie against a plain recursive reference matcher."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.topic_trie import ROUTE_CACHE_SIZE, TopicTrie, split_words

from .helpers import make_broker, publish


def reference_match(pattern: str, key: str) -> bool:
    """RabbitMQ semantics, written the obvious way: '*' one word, '#' zero or more."""

    def go(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        head = p[0]
        if head == "#":
            return any(go(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (head == "*" or head == k[0]) and go(p[1:], k[1:])

    return go(split_words(pattern), split_words(key))


def test_split_words_follows_rabbitmq() -> None:
    assert split_words("") == []
    assert split_words("a") == ["a"]
    assert split_words("a..b") == ["a", "", "b"]
    assert split_words(".a") == ["", "a"]
    assert split_words("a.") == ["a", ""]
    assert split_words(".") == ["", ""]


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "", True),
        ("#", "a.b.c", True),
        ("*", "", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("", "", True),
        ("", "a", False),
        ("a.#", "a", True),
        ("#.a", "a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.*.b", "a.b", False),
        ("a.*", "a.", True),
        ("*.a", ".a", True),
        ("a.*.b", "a..b", True),
        ("*.*", ".", True),
        ("#.#", "", True),
        ("a*", "ab", False),
        ("a*", "a*", True),
        ("plant.*.temp", "plant.7.temp", True),
        ("plant.*.temp", "plant.7.humidity", False),
    ],
)
def test_examples(pattern: str, key: str, expected: bool) -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "q")
    assert (trie.match(key) == ["q"]) is expected
    assert reference_match(pattern, key) is expected


def test_each_destination_once_and_refcounted() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.*", "q")
    trie.add("#", "q")
    trie.add("a.b", "q")
    trie.add("a.b", "q")  # a second binding (other arguments) to the same pattern
    assert trie.match("a.b") == ["q"]
    assert trie.remove("a.b", "q")
    assert trie.remove("a.*", "q")
    assert trie.remove("#", "q")
    assert trie.match("a.b") == ["q"]  # one a.b binding is left
    assert trie.remove("a.b", "q")
    assert trie.match("a.b") == []
    assert not trie.remove("a.b", "q")
    assert trie.size == 0


def test_removal_prunes_nodes() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.b.c.d", "q")
    trie.remove("a.b.c.d", "q")
    assert trie._root.empty()


def test_many_hashes_stay_cheap() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(".".join(["#"] * 12) + ".z", "q")
    key = ".".join(["a"] * 40)
    assert trie.match(key) == []
    assert trie.match(key + ".z") == ["q"]


PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#"])
KEY_WORDS = st.sampled_from(["a", "b", "c", ""])
patterns = st.lists(PATTERN_WORDS, max_size=5).map(".".join)
keys = st.lists(KEY_WORDS, max_size=6).map(".".join)


@settings(max_examples=200, deadline=None)
@given(
    bindings=st.lists(st.tuples(patterns, st.integers(0, 5)), max_size=25),
    probe_keys=st.lists(keys, min_size=1, max_size=10),
    drop=st.lists(st.booleans(), max_size=25),
)
def test_trie_matches_reference(
    bindings: list[tuple[str, int]], probe_keys: list[str], drop: list[bool]
) -> None:
    trie: TopicTrie[int] = TopicTrie()
    for pattern, dest in bindings:
        trie.add(pattern, dest)

    def check(live: list[tuple[str, int]]) -> None:
        for key in probe_keys:
            expected = {d for p, d in live if reference_match(p, key)}
            got = trie.match(key)
            assert len(got) == len(set(got))
            assert set(got) == expected, (key, live)

    check(bindings)
    kept = []
    for i, (pattern, dest) in enumerate(bindings):
        if i < len(drop) and drop[i]:
            assert trie.remove(pattern, dest)
        else:
            kept.append((pattern, dest))
    check(kept)
    for pattern, dest in kept:
        assert trie.remove(pattern, dest)
    assert trie._root.empty()


@settings(max_examples=100, deadline=None)
@given(
    bindings=st.lists(st.tuples(patterns, st.integers(0, 4)), min_size=1, max_size=15),
    probe_keys=st.lists(keys, min_size=1, max_size=8),
    drop=st.lists(st.booleans(), min_size=15, max_size=15),
)
def test_topic_exchange_cache_follows_unbinds(
    bindings: list[tuple[str, int]], probe_keys: list[str], drop: list[bool]
) -> None:
    _, vhost, _ = make_broker()
    for i in range(5):
        vhost.declare_queue(f"q{i}")
    for pattern, dest in bindings:
        vhost.bind_queue(f"q{dest}", "amq.topic", pattern)

    def check(live: list[tuple[str, int]]) -> None:
        for key in probe_keys:
            expected = sorted({f"q{d}" for p, d in live if reference_match(p, key)})
            assert sorted(publish(vhost, "amq.topic", key)) == expected
            assert sorted(publish(vhost, "amq.topic", key)) == expected  # from the cache

    check(bindings)
    live = list(dict.fromkeys(bindings))  # binding twice is idempotent
    kept = []
    for i, (pattern, dest) in enumerate(live):
        if drop[i]:
            vhost.unbind_queue(f"q{dest}", "amq.topic", pattern)
        else:
            kept.append((pattern, dest))
    check(kept)


def test_route_cache_is_bounded() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.topic", "k.*")
    exchange = vhost.exchange("amq.topic")
    for i in range(ROUTE_CACHE_SIZE + 10):
        assert publish(vhost, "amq.topic", f"k.{i}") == ["q"]
    assert len(exchange._cache) <= ROUTE_CACHE_SIZE  # type: ignore[attr-defined]
