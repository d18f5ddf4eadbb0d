"""The topic table of DESIGN.md section 4, row by row, in both modes and both directions, with
hypothesis properties: strict mode is lossless for MQTT topics, and a topic matches a filter in
MQTT exactly when its routing key matches the filter's binding key in the core's topic trie."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.topics import (
    MAX_ROUTING_KEY_BYTES,
    RoutingKeyTooLong,
    TopicTranslator,
    is_valid_topic_name,
)
from gateway.core.topic_trie import TopicTrie
from gateway.mqtt.topics import matches, validate_topic_filter, validate_topic_name

STRICT = TopicTranslator("strict")
RABBIT = TopicTranslator("rabbitmq")

# (MQTT topic name, strict routing key, rabbitmq-mode routing key)
TOPICS = [
    ("a/b/c", "a.b.c", "a.b.c"),
    ("v1.2/x", "v1%2E2.x", "v1.2.x"),  # rabbitmq: the dot splits the level
    ("star*/x", "star%2A.x", "star*.x"),
    ("*", "%2A", "*"),
    ("100%", "100%25", "100%"),
    ("%2E", "%252E", "%2E"),  # a literal escape sequence survives strict mode
    ("a//b", "a..b", "a..b"),
    ("/a", ".a", ".a"),
    ("a/", "a.", "a."),
    ("/", ".", "."),
    ("$SYS/broker/load", "$SYS.broker.load", "$SYS.broker.load"),
    ("$aws/things/t1", "$aws.things.t1", "$aws.things.t1"),
    ("spBv1.0/group/NDATA/node", "spBv1%2E0.group.NDATA.node", "spBv1.0.group.NDATA.node"),
    ("spBv1.0/g/DDATA/n/dev", "spBv1%2E0.g.DDATA.n.dev", "spBv1.0.g.DDATA.n.dev"),
    ("température/salle 1", "température.salle 1", "température.salle 1"),
    ("日本/東京", "日本.東京", "日本.東京"),
    ("emoji/🙂.x", "emoji.🙂%2Ex", "emoji.🙂.x"),
]


@pytest.mark.parametrize(("topic", "strict_key", "rabbit_key"), TOPICS)
def test_topic_to_routing_key_both_modes(topic: str, strict_key: str, rabbit_key: str) -> None:
    assert STRICT.topic_to_routing_key(topic) == strict_key
    assert RABBIT.topic_to_routing_key(topic) == rabbit_key
    # The strict key comes back as the same topic.
    assert STRICT.routing_key_to_topic(strict_key) == topic


# (MQTT filter, strict binding key, rabbitmq-mode binding key)
FILTERS = [
    ("a/+/#", "a.*.#", "a.*.#"),
    ("#", "#", "#"),
    ("+", "*", "*"),
    ("+/+", "*.*", "*.*"),
    ("/+", ".*", ".*"),
    ("a//#", "a..#", "a..#"),
    ("v1.2/+", "v1%2E2.*", "v1.2.*"),
    ("sport/tennis/*", "sport.tennis.%2A", "sport.tennis.*"),  # rabbitmq: `*` is a wildcard
    ("100%/+", "100%25.*", "100%.*"),
    ("$SYS/#", "$SYS.#", "$SYS.#"),
    ("spBv1.0/+/NDATA/#", "spBv1%2E0.*.NDATA.#", "spBv1.0.*.NDATA.#"),
    ("日本/+", "日本.*", "日本.*"),
]


@pytest.mark.parametrize(("topic_filter", "strict_key", "rabbit_key"), FILTERS)
def test_filter_to_binding_key_both_modes(
    topic_filter: str, strict_key: str, rabbit_key: str
) -> None:
    assert STRICT.filter_to_binding_key(topic_filter) == strict_key
    assert RABBIT.filter_to_binding_key(topic_filter) == rabbit_key


# (AMQP routing key, topic in strict mode, topic in rabbitmq mode, strict topic valid to send)
KEYS = [
    ("a.b.c", "a/b/c", "a/b/c", True),
    ("user.signup", "user/signup", "user/signup", True),
    ("x/y.z", "x%2Fy/z", "x/y/z", True),
    ("a+b.c#", "a%2Bb/c%23", "a+b/c#", True),
    ("a.*.c", "a/*/c", "a/+/c", True),  # `*` in a routing key is an ordinary word
    ("a%2Eb.c", "a.b/c", "a%2Eb/c", True),
    ("50%25", "50%", "50%25", True),
    ("50%", "50%", "50%", True),  # a lone % is not an escape
    ("%41", "%41", "%41", True),  # nor is an escape the gateway never writes
    ("a..b", "a//b", "a//b", True),
    (".", "/", "/", True),
    ("nul\x00byte", "nul\x00byte", "nul\x00byte", False),
    ("#", "%23", "#", True),
    ("", "", "", False),
    ("$SYS.x", "$SYS/x", "$SYS/x", True),
    ("spBv1%2E0.g.NDATA.n", "spBv1.0/g/NDATA/n", "spBv1%2E0/g/NDATA/n", True),
    ("café.ü", "café/ü", "café/ü", True),
]


@pytest.mark.parametrize(("key", "strict_topic", "rabbit_topic", "valid"), KEYS)
def test_routing_key_to_topic_both_modes(
    key: str, strict_topic: str, rabbit_topic: str, valid: bool
) -> None:
    assert STRICT.routing_key_to_topic(key) == strict_topic
    assert RABBIT.routing_key_to_topic(key) == rabbit_topic
    assert is_valid_topic_name(strict_topic) is valid
    if valid:
        validate_topic_name(strict_topic)  # what a client would accept


@pytest.mark.parametrize("key", ["a.*.c", "a.#", "nul\x00", "a+b", ""])
def test_rabbitmq_mode_keys_that_make_no_topic_name_are_flagged(key: str) -> None:
    assert not is_valid_topic_name(RABBIT.routing_key_to_topic(key))


def test_every_255_byte_key_makes_a_topic_mqtt_can_carry() -> None:
    worst = "/" * MAX_ROUTING_KEY_BYTES  # every byte escapes to three
    topic = STRICT.routing_key_to_topic(worst)
    assert len(topic.encode()) == 3 * MAX_ROUTING_KEY_BYTES < 65535
    validate_topic_name(topic)


@pytest.mark.parametrize("translator", [STRICT, RABBIT], ids=["strict", "rabbitmq"])
def test_keys_over_255_bytes_are_refused_for_topics_and_filters(
    translator: TopicTranslator,
) -> None:
    assert translator.topic_to_routing_key("a" * 255) == "a" * 255
    with pytest.raises(RoutingKeyTooLong):
        translator.topic_to_routing_key("a" * 256)
    with pytest.raises(RoutingKeyTooLong):
        translator.topic_to_routing_key("é" * 128)  # 128 characters, 256 bytes
    with pytest.raises(RoutingKeyTooLong):
        translator.filter_to_binding_key("a/" * 127 + "+/#")


def test_strict_escapes_count_towards_the_limit() -> None:
    assert STRICT.topic_to_routing_key("." * 85) == "%2E" * 85
    with pytest.raises(RoutingKeyTooLong):
        STRICT.topic_to_routing_key("." * 86)  # 86 bytes of topic, 258 of key
    assert RABBIT.topic_to_routing_key("." * 86) == "." * 86


def test_header_form_has_no_length_limit_and_agrees_with_the_key() -> None:
    long_topic = "reply/" + "x" * 300
    assert STRICT.topic_to_header_key(long_topic) == "reply." + "x" * 300
    assert STRICT.topic_to_header_key("a.b/c") == STRICT.topic_to_routing_key("a.b/c")
    assert RABBIT.topic_to_header_key("a.b/c") == "a.b.c"


def test_translations_are_cached_per_translator() -> None:
    translator = TopicTranslator("strict")
    first = translator.topic_to_routing_key("cache/" + "x" * 20)
    assert translator.topic_to_routing_key("cache/" + "x" * 20) is first
    key = translator.filter_to_binding_key("cache/+")
    assert translator.filter_to_binding_key("cache/+") is key
    topic = translator.routing_key_to_topic("cache.y")
    assert translator.routing_key_to_topic("cache.y") is topic


# -- properties ----------------------------------------------------------------------------------

# Characters that mean something to one side or the other, plus ordinary and non-ASCII ones.
LEVEL_CHARS = "ab.*%2E5$é日 "
levels = st.text(alphabet=LEVEL_CHARS, max_size=5)
topic_names = st.lists(levels, min_size=1, max_size=6).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(levels, st.just("+")), min_size=1, max_size=5))
    if draw(st.booleans()):
        parts.append("#")
    return "/".join(parts) or "+"


@settings(max_examples=300, deadline=None)
@given(topic_names)
def test_strict_topic_key_topic_is_the_identity(topic: str) -> None:
    translator = TopicTranslator("strict")
    key = translator.topic_to_routing_key(topic)
    assert key.count(".") == topic.count("/")  # one word per level
    assert "*" not in key  # a literal star never acts as a wildcard
    assert translator.routing_key_to_topic(key) == topic


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_strict_key_to_topic_never_emits_a_wildcard(key: str) -> None:
    topic = STRICT.routing_key_to_topic(key)
    assert "+" not in topic
    assert "#" not in topic
    # Only the empty key and U+0000 make no topic name; the caller drops those.
    assert is_valid_topic_name(topic) == (key != "" and "\x00" not in key)


@settings(max_examples=300, deadline=None)
@given(topic_filters(), topic_names)
def test_strict_filter_matching_agrees_with_the_topic_trie(topic_filter: str, topic: str) -> None:
    validate_topic_filter(topic_filter)
    validate_topic_name(topic)
    trie: TopicTrie[str] = TopicTrie()
    trie.add(STRICT.filter_to_binding_key(topic_filter), "q")
    amqp_match = trie.match(STRICT.topic_to_routing_key(topic)) == ["q"]
    # The one difference is MQTT's: $-topics escape leading wildcards [MQTT-4.7.2-1]; the
    # MQTT session enforces it on delivery.
    dollar_rule = topic.startswith("$") and topic_filter[0] in "+#"
    assert matches(topic_filter, topic) == (amqp_match and not dollar_rule)
