"""MQTT topic names and filters (spec 4.7), and shared subscriptions (spec 4.8.2).

Pure MQTT rules; translating to AMQP routing keys is `gateway/bridge/`'s job.
"""

from __future__ import annotations

from gateway.mqtt.codec_errors import InvalidTopic
from gateway.mqtt.packets import ReasonCode

MAX_TOPIC_BYTES = 0xFFFF
SHARE_PREFIX = "$share/"


def _check_common(text: str, what: str, reason: ReasonCode) -> None:
    if not text:
        raise InvalidTopic(f"empty {what} [MQTT-4.7.3-1]", reason)
    if "\x00" in text:
        raise InvalidTopic(f"{what} contains U+0000 [MQTT-4.7.3-2]", reason)
    # Four bytes per character at most: only encode when the length could matter.
    if len(text) * 4 > MAX_TOPIC_BYTES and len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"{what} longer than 65535 bytes [MQTT-4.7.3-3]", reason)


def validate_topic_name(topic: str) -> None:
    """Raise InvalidTopic (0x90) unless `topic` may be published to."""
    _check_common(topic, "topic name", ReasonCode.TOPIC_NAME_INVALID)
    if "+" in topic or "#" in topic:
        raise InvalidTopic("wildcard in a topic name [MQTT-4.7.0-1]", ReasonCode.TOPIC_NAME_INVALID)


def validate_topic_filter(topic_filter: str) -> None:
    """Raise InvalidTopic (0x8F) unless `topic_filter` is a valid filter.

    A shared subscription is validated as a whole: its group and its inner filter.
    """
    if topic_filter.startswith(SHARE_PREFIX):
        topic_filter = parse_shared_subscription(topic_filter)[1]
    _check_common(topic_filter, "topic filter", ReasonCode.TOPIC_FILTER_INVALID)
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            raise InvalidTopic(
                f"'+' must fill a whole level in {topic_filter!r} [MQTT-4.7.1-2]",
                ReasonCode.TOPIC_FILTER_INVALID,
            )
        if "#" in level and (level != "#" or index != last):
            raise InvalidTopic(
                f"'#' must be the whole last level in {topic_filter!r} [MQTT-4.7.1-1]",
                ReasonCode.TOPIC_FILTER_INVALID,
            )


def parse_shared_subscription(topic_filter: str) -> tuple[str | None, str]:
    """Split `$share/<group>/<filter>` into (group, filter); other filters give (None, filter).

    Raise InvalidTopic (0x8F) for an empty share name [MQTT-4.8.2-1], one holding '+' or '#',
    or no filter after it [MQTT-4.8.2-2]. The inner filter is not otherwise validated here.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, slash, inner = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group:
        raise InvalidTopic(
            f"empty share name in {topic_filter!r} [MQTT-4.8.2-1]", ReasonCode.TOPIC_FILTER_INVALID
        )
    if "+" in group or "#" in group:
        raise InvalidTopic(
            f"bad share name in {topic_filter!r} [MQTT-4.8.2-2]", ReasonCode.TOPIC_FILTER_INVALID
        )
    if not slash or not inner:
        raise InvalidTopic(
            f"no topic filter in {topic_filter!r} [MQTT-4.8.2-2]", ReasonCode.TOPIC_FILTER_INVALID
        )
    return group, inner


def has_wildcards(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """Reference matcher: does a valid (non-shared) filter match a valid topic name?

    Topics starting with '$' are not matched by a filter starting with a wildcard
    [MQTT-4.7.2-1]. '#' also matches its parent level ("a/#" matches "a").
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    count = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= count:
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == count
