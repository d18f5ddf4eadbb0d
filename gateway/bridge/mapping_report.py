"""What `gateway mappings check` and `gateway mappings explain` print (plain text lines)."""

from __future__ import annotations

from gateway.bridge.mapping_rules import MappingSet, Rule
from gateway.bridge.mappings import TopicMap
from gateway.bridge.topics import RoutingKeyTooLong
from gateway.mqtt.codec_errors import InvalidTopic
from gateway.mqtt.topics import parse_shared_subscription, validate_topic_filter


def describe_rule(rule: Rule) -> str:
    declared = (
        f"declared {rule.exchange_type}, durable={str(rule.durable).lower()}"
        if rule.declare
        else "not declared"
    )
    return (
        f"{rule.origin}: rule {rule.name!r}: {rule.topic} -> exchange {rule.exchange!r} "
        f"({declared}) key {rule.template.source!r}; {rule.qos.describe()}; "
        f"direction {rule.direction}"
    )


def check_lines(mappings: MappingSet, default_exchange: str) -> list[str]:
    """One line per rule in evaluation order, then the default rule."""
    lines = [describe_rule(rule) for rule in mappings.rules]
    lines.extend(
        f"{rule.origin}: rule {rule.name!r}: the default rule, stated explicitly"
        for rule in mappings.defaults
    )
    lines.append(
        f"default rule: every other topic -> exchange {default_exchange!r} key '{{topic}}' "
        f"({len(mappings.rules)} rule(s) in {len(mappings.files)} file(s))"
    )
    return lines


def explain_lines(topic_map: TopicMap, topic: str) -> list[str]:
    """Where a publish to ``topic`` goes (a topic name), and what subscribing to it binds."""
    try:
        validate_topic_filter(topic)
        group, topic_filter = parse_shared_subscription(topic)
    except InvalidTopic as exc:
        return [f"{topic!r} is not a valid topic or topic filter: {exc}"]
    lines: list[str] = []
    if group is not None:
        lines.append(f"publish {topic}: a shared subscription cannot be published to")
    elif "+" not in topic and "#" not in topic:
        try:
            lines.append(f"publish {topic}: {topic_map.route(topic).describe()}")
        except RoutingKeyTooLong as exc:
            lines.append(f"publish {topic}: refused: {exc}")
    else:
        lines.append(f"publish {topic}: a filter cannot be published to")
    try:
        bindings = topic_map.bindings(topic_filter)
    except RoutingKeyTooLong as exc:
        return [*lines, f"subscribe {topic}: refused: {exc}"]
    for exchange, key in bindings:
        lines.append(f"subscribe {topic}: bind exchange {exchange!r} key {key!r}")
    return lines
