"""MQTT topics <-> AMQP routing keys (DESIGN.md section 4).

Two modes:

- ``strict`` (default) is lossless for MQTT: `/` becomes `.`, and characters that mean something
  to AMQP inside a level are percent-escaped (`.` -> `%2E`, `*` -> `%2A`, `%` -> `%25`). In a
  filter, `+` and `#` levels become `*` and `#`. In the other direction AMQP words get `/`, `+`,
  `#` escaped (`%2F`, `%2B`, `%23`) and the gateway's own escapes undone.
- ``rabbitmq`` is byte-for-byte RabbitMQ's MQTT plugin: swap `/` and `.`, `+` and `*`; a `.`
  inside an MQTT level splits it (lossy), which is what migrating users already live with.

Some AMQP routing keys make no valid MQTT topic name: the empty key, keys with U+0000 (legal in
an AMQP short string, forbidden in MQTT [MQTT-4.7.3-2]) and, in rabbitmq mode, keys with `*`,
`+` or `#`. `routing_key_to_topic` translates them anyway; callers check `is_valid_topic_name`
and do not send such a message to MQTT subscribers (dropped and counted, never a broken
connection). A key is at most 255 bytes and escaping at most triples it: a topic never passes
MQTT's 65535 bytes.

Translations are pure and cached per translator: the same few topics are published over and over.
"""

from __future__ import annotations

from typing import Literal

MAX_ROUTING_KEY_BYTES = 255
_CACHE_LIMIT = 16_384

TopicMode = Literal["strict", "rabbitmq"]


class RoutingKeyTooLong(ValueError):
    """The translated routing key exceeds AMQP's 255-byte shortstr limit."""


def _escape_mqtt_level(level: str) -> str:
    if "%" in level:
        level = level.replace("%", "%25")
    if "." in level:
        level = level.replace(".", "%2E")
    if "*" in level:
        level = level.replace("*", "%2A")
    return level


def _amqp_word_to_mqtt_level(word: str) -> str:
    if "/" in word:
        word = word.replace("/", "%2F")
    if "+" in word:
        word = word.replace("+", "%2B")
    if "#" in word:
        word = word.replace("#", "%23")
    if "%" in word:
        # Undo only the escapes the gateway writes; %25 last so "%252E" stays "%2E".
        word = word.replace("%2E", ".").replace("%2A", "*").replace("%25", "%")
    return word


def is_valid_topic_name(topic: str) -> bool:
    """Whether a translated topic may be sent in a PUBLISH (non-empty, no wildcard, no U+0000)."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def _checked(key: str) -> str:
    if len(key) > MAX_ROUTING_KEY_BYTES or len(key.encode()) > MAX_ROUTING_KEY_BYTES:
        raise RoutingKeyTooLong(
            f"routing key for this topic is {len(key.encode())} bytes; AMQP allows "
            f"{MAX_ROUTING_KEY_BYTES}"
        )
    return key


class TopicTranslator:
    """Cached translation in one mode. One instance per gateway (the mode is configuration)."""

    __slots__ = ("_filter_cache", "_key_cache", "_topic_cache", "mode")

    def __init__(self, mode: TopicMode = "strict") -> None:
        if mode not in ("strict", "rabbitmq"):
            raise ValueError(f"unknown topic mode {mode!r}; expected 'strict' or 'rabbitmq'")
        self.mode: TopicMode = mode
        self._topic_cache: dict[str, str] = {}
        self._filter_cache: dict[str, str] = {}
        self._key_cache: dict[str, str] = {}

    def topic_to_routing_key(self, topic: str) -> str:
        """An MQTT topic name (no wildcards) as an AMQP routing key; RoutingKeyTooLong past
        255 bytes (the MQTT side answers 0x90 Topic Name invalid)."""
        key = self._topic_cache.get(topic)
        if key is None:
            key = _checked(self._translate_topic(topic))
            if len(self._topic_cache) >= _CACHE_LIMIT:
                self._topic_cache.clear()
            self._topic_cache[topic] = key
        return key

    def topic_to_header_key(self, topic: str) -> str:
        """A topic in AMQP form for a header (`x-reply-to-topic`): a header is a long string,
        so no 255-byte limit applies; a key that long simply cannot be published to."""
        key = self._topic_cache.get(topic)
        return self._translate_topic(topic) if key is None else key

    def _translate_topic(self, topic: str) -> str:
        if self.mode == "rabbitmq":
            return topic.replace("/", ".")
        return ".".join([_escape_mqtt_level(lv) for lv in topic.split("/")])

    def filter_to_binding_key(self, topic_filter: str) -> str:
        """An MQTT topic filter (validated by the caller) as a topic-exchange binding key."""
        key = self._filter_cache.get(topic_filter)
        if key is None:
            if self.mode == "rabbitmq":
                key = _checked(topic_filter.replace("/", ".").replace("+", "*"))
            else:
                words = []
                for level in topic_filter.split("/"):
                    if level == "+":
                        words.append("*")
                    elif level == "#":
                        words.append("#")
                    else:
                        words.append(_escape_mqtt_level(level))
                key = _checked(".".join(words))
            if len(self._filter_cache) >= _CACHE_LIMIT:
                self._filter_cache.clear()
            self._filter_cache[topic_filter] = key
        return key

    def routing_key_to_topic(self, routing_key: str) -> str:
        """An AMQP routing key as the MQTT topic an MQTT subscriber sees."""
        topic = self._key_cache.get(routing_key)
        if topic is None:
            if self.mode == "rabbitmq":
                topic = routing_key.replace("*", "+").replace(".", "/")
            else:
                topic = "/".join([_amqp_word_to_mqtt_level(w) for w in routing_key.split(".")])
            if len(self._key_cache) >= _CACHE_LIMIT:
                self._key_cache.clear()
            self._key_cache[routing_key] = topic
        return topic
