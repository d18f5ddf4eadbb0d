"""Mapping rules at run time: where an MQTT publish goes, what a subscription binds, and which
MQTT topic a message on a rule's exchange is seen under (README: mappings/README.md).

`TopicMap` is the one object the MQTT adapter asks. Evaluation order for a publish to topic T:

1. built-in reply topics (`$amqp/reply/<queue>`, gateway/bridge/reply.py): the default exchange
   "" with the queue name as key, direct reply-to (`amq.rabbitmq.reply-to.*`) included;
2. the user rules, in (file name, rule) order: the first whose namespace matches T;
3. the default rule: the MQTT exchange (`amq.topic`) with the translated topic as key.

Answers are cached per topic, as the translator caches its translations: with no user rules a
publish costs one dict lookup, as it did before rules existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from gateway.bridge.convert import A_TOPIC, A_VIEW, MqttView, mqtt_view
from gateway.bridge.mapping_filters import Captures, capture, contains, intersect, is_wildcard
from gateway.bridge.mapping_rules import EMPTY, MappingError, MappingSet, Rule
from gateway.bridge.reply import REPLY_EXCHANGE, queue_for_reply_topic
from gateway.bridge.topics import TopicTranslator
from gateway.core.errors import CoreError
from gateway.core.message import Message
from gateway.core.vhost import VirtualHost
from gateway.mqtt.topics import matches

# RabbitMQ's direct reply-to address prefix: such a key names a channel, not a queue.
DIRECT_REPLY_PREFIX = "amq.rabbitmq.reply-to."

_CACHE_LIMIT = 16_384
# Annotation holding the view of a message read back through a rule: (message id, map, view).
_A_MAPPED = "bridge.mapped_view"


@dataclass(frozen=True, slots=True)
class PublishRoute:
    """Where one MQTT topic's publishes go, and the QoS policy they get."""

    exchange: str
    routing_key: str
    rule: Rule | None = None  # None: the default rule, or a reply topic
    qos_max: int = 2
    delivery_mode: int | None = None
    direct_reply: bool = False
    # Anything beyond exchange and key (QoS cap, forced delivery mode, direct reply-to): the
    # adapter checks this one flag on its common path.
    special: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        special = self.qos_max < 2 or self.delivery_mode is not None or self.direct_reply
        object.__setattr__(self, "special", special)

    def describe(self) -> str:
        if self.rule is not None:
            source = f"rule {self.rule.name!r} ({self.rule.origin})"
        elif self.exchange == REPLY_EXCHANGE:
            source = "built-in reply topic rule"
        else:
            source = "default rule"
        mode = "from QoS" if self.delivery_mode is None else str(self.delivery_mode)
        return (
            f"{source}: exchange {self.exchange!r} routing key {self.routing_key!r}; "
            f"qos max {self.qos_max}, delivery_mode {mode}"
        )


def _publish_captures(rule: Rule, levels: list[str]) -> Captures | None:
    found = capture(rule.levels, levels)
    if found is None:
        return None
    template = rule.template
    if found.rest == ("",) and template.fixed_count == 0 and template.variable is not None:
        # A template of `{#}` alone renders both `ns` and `ns/` as the empty key: the root
        # keeps it, and the single empty level falls through to later rules.
        return None
    return found


def _fill(levels: tuple[str, ...], captures: Captures) -> str:
    out: list[str] = []
    plus = iter(captures.plus)
    for level in levels:
        if level == "+":
            out.append(next(plus))
        elif level == "#":
            out.extend(captures.rest or ())
        else:
            out.append(level)
    return "/".join(out)


def _valid_topic(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


class TopicMap:
    """The rules of one gateway over its topic translator (one per MQTT hub)."""

    def __init__(
        self,
        translator: TopicTranslator,
        mappings: MappingSet = EMPTY,
        *,
        exchange: str = "amq.topic",
    ) -> None:
        self.translator = translator
        self.mappings = mappings
        self.exchange = exchange
        self._publish_rules = tuple(rule for rule in mappings.rules if rule.publishes)
        self._subscribe_rules = tuple(rule for rule in mappings.rules if rule.subscribes)
        # Exchanges whose keys are read back through rules. Rules on the MQTT exchange itself
        # use its default form (validation makes sure), so that exchange keeps the plain path.
        reverse: dict[str, list[Rule]] = {}
        for rule in self._subscribe_rules:
            if rule.exchange != exchange:
                reverse.setdefault(rule.exchange, []).append(rule)
        self._reverse = {name: tuple(rules) for name, rules in reverse.items()}
        self._routes: dict[str, PublishRoute] = {}
        self._topics: dict[tuple[str, str], tuple[str, int] | None] = {}
        # Exchanges where an AMQP publish with x-mqtt-retain sets a retained message.
        self.retain_exchanges = frozenset({exchange, *self._reverse})
        # How a core message looks to an MQTT subscriber: without rules read back, the plain
        # function (a closure: cheaper per delivery than a functools.partial with a keyword).
        self.view: Callable[[Message], MqttView] = self._mapped_view
        if not self._reverse:

            def plain_view(message: Message) -> MqttView:
                return mqtt_view(message, translator)

            self.view = plain_view

    @property
    def has_rules(self) -> bool:
        return bool(self.mappings.rules)

    # -- publishing --------------------------------------------------------------------------

    def route(self, topic: str) -> PublishRoute:
        """Exchange, key and QoS policy of a publish to ``topic`` (RoutingKeyTooLong if the
        key would pass 255 bytes)."""
        route = self._routes.get(topic)
        if route is None:
            route = self._compute_route(topic)
            if len(self._routes) >= _CACHE_LIMIT:
                self._routes.clear()
            self._routes[topic] = route
        return route

    def _compute_route(self, topic: str) -> PublishRoute:
        queue = queue_for_reply_topic(topic)
        if queue is not None:
            return PublishRoute(
                REPLY_EXCHANGE, queue, direct_reply=queue.startswith(DIRECT_REPLY_PREFIX)
            )
        if self._publish_rules:
            levels = topic.split("/")
            for rule in self._publish_rules:
                found = _publish_captures(rule, levels)
                if found is not None:
                    key = rule.template.render(found, topic, self.translator, as_filter=False)
                    return PublishRoute(
                        rule.exchange, key, rule, rule.qos.max, rule.qos.delivery_mode
                    )
        return PublishRoute(self.exchange, self.translator.topic_to_routing_key(topic))

    # -- subscribing -------------------------------------------------------------------------

    def bindings(self, topic_filter: str, default_key: str | None = None) -> tuple[
        tuple[str, str], ...
    ]:  # fmt: skip
        """(exchange, binding key) pairs a subscription to ``topic_filter`` needs.

        One per rule whose namespace meets the filter (the common part, through the rule's
        template), plus the MQTT exchange unless one rule mapping both directions holds the
        whole filter. Direct exchanges take only exact keys, so a wildcard part binds nothing
        there; fanout and headers exchanges take everything (the session then filters by
        topic, as it always does).
        """
        if default_key is None:
            default_key = self.translator.filter_to_binding_key(topic_filter)
        if not self._subscribe_rules:
            return ((self.exchange, default_key),)
        levels = tuple(topic_filter.split("/"))
        found: list[tuple[str, str]] = []
        covered = False
        for rule in self._subscribe_rules:
            common = intersect(rule.levels, levels)
            if common is None:
                continue
            if rule.direction == "both" and contains(rule.levels, levels):
                covered = True
            binding = self._rule_binding(rule, common)
            if binding is not None and binding not in found:
                found.append(binding)
            empty = self._empty_key_binding(rule, common)
            if empty is not None and empty not in found:
                found.append(empty)
        if not covered and (self.exchange, default_key) not in found:
            found.append((self.exchange, default_key))
        return tuple(found)

    def _rule_binding(self, rule: Rule, common: tuple[str, ...]) -> tuple[str, str] | None:
        kind = rule.exchange_type
        if kind in ("fanout", "headers"):
            return rule.exchange, ""
        if kind == "direct" and is_wildcard(common):
            return None
        found = capture(rule.levels, list(common))
        assert found is not None  # the common part lies inside the namespace
        key = rule.template.render(found, "/".join(common), self.translator, as_filter=True)
        return rule.exchange, key

    def _empty_key_binding(self, rule: Rule, common: tuple[str, ...]) -> tuple[str, str] | None:
        """A binding for the empty routing key when a topic of the filter maps to it.

        Empty captures can render the empty key (`factory//telemetry` through `{1}.{#}`), and
        AMQP reads "" as zero words, which no `*` in the rendered binding matches.
        """
        if rule.exchange_type != "topic":
            return None
        read = rule.template.read("", self.translator)
        if read is None:
            return None
        found, topic = read
        if topic is None:
            topic = _fill(rule.levels, found)
        if not _valid_topic(topic) or not matches("/".join(common), topic):
            return None
        return rule.exchange, ""

    # -- reading keys back -------------------------------------------------------------------

    def topic_for(self, exchange: str, routing_key: str) -> tuple[str, int] | None:
        """The MQTT topic (and QoS cap) a key on a rule's exchange stands for, or None when
        no rule reads it (the default translation applies)."""
        cache_key = (exchange, routing_key)
        if cache_key in self._topics:
            return self._topics[cache_key]
        result = None
        for rule in self._reverse.get(exchange, ()):
            read = rule.template.read(routing_key, self.translator)
            if read is None:
                continue
            found, topic = read
            if topic is None:
                topic = _fill(rule.levels, found)
            levels = topic.split("/")
            if _valid_topic(topic) and _publish_captures(rule, levels) is not None:
                result = (topic, rule.qos.max)
                break
        if len(self._topics) >= _CACHE_LIMIT:
            self._topics.clear()
        self._topics[cache_key] = result
        return result

    def _mapped_view(self, message: Message) -> MqttView:
        if message.exchange not in self._reverse:
            return mqtt_view(message, self.translator)
        annotations = message.annotations
        origin_topic = annotations.get(A_TOPIC)
        if isinstance(origin_topic, str):
            route = self._routes.get(origin_topic)
            if route is None:
                route = self.route(origin_topic)
            built = annotations.get(A_VIEW)
            if (
                isinstance(built, MqttView)
                and route.exchange == message.exchange
                and route.routing_key == message.routing_key
            ):
                return built  # MQTT-origin and still under the key it was published with
        cached = annotations.get(_A_MAPPED)
        if isinstance(cached, tuple) and cached[0] == message.id and cached[1] is self:
            hit: MqttView = cached[2]
            return hit
        base = mqtt_view(message, self.translator)
        found = self.topic_for(message.exchange, message.routing_key)
        if found is None:
            view = base
        else:
            topic, qos_max = found
            view = MqttView(
                topic, min(base.qos, qos_max), base.retain, base.properties, base.expiry_interval
            )
        annotations[_A_MAPPED] = (message.id, self, view)
        return view


def force_delivery_mode(message: Message, delivery_mode: int) -> None:
    """A rule's QoS policy: the message is persistent (2) or transient (1) whatever its QoS."""
    message.properties = dataclasses.replace(message.properties, delivery_mode=delivery_mode)


def declare_exchanges(vhost: VirtualHost, mappings: MappingSet) -> None:
    """Declare the exchanges of rules with ``declare = true`` (at start, before listeners)."""
    for rule in mappings.rules:
        if rule.declare:
            try:
                vhost.declare_exchange(rule.exchange, rule.exchange_type, durable=rule.durable)
            except CoreError as exc:
                raise MappingError([f"{rule.where()}: declare: {exc.text}"]) from None
