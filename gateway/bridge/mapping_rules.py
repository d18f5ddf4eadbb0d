"""Mapping-rule files: `*.toml` in the mappings directory, parsed, checked, compiled to `Rule`s.

Every error is one line naming the file and the rule, so `gateway run` and `gateway mappings
check` can print it as it is. Checks: unknown keys and wrong types (msgspec structs that forbid
unknown fields), bad topic filters, bad templates (see mapping_template), unknown exchange types,
conflicting declarations of one exchange, duplicate names, rules an earlier rule makes
unreachable, namespaces that partially overlap, and rules on one exchange whose keys could not
be told apart when read back for subscribers.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from gateway.bridge.mapping_filters import contains, intersect
from gateway.bridge.mapping_template import (
    DEFAULT_TEMPLATE,
    Template,
    TemplateError,
    keys_may_collide,
    parse_template,
)
from gateway.core.vhost import EXCHANGE_TYPES, PREDECLARED_EXCHANGES
from gateway.tomlschema import split_validation_error

Direction = Literal["both", "publish", "subscribe"]

DEFAULT_EXCHANGE = "amq.topic"


class MappingError(ValueError):
    """A mapping file or rule that cannot be used; one line per problem in ``errors``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0] if len(errors) == 1 else f"{len(errors)} errors: {errors[0]}")
        self.errors = errors


class QosSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max: int = 2
    delivery_mode: int | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    topic: str
    exchange: str
    exchange_type: str = "topic"
    declare: bool = False
    durable: bool = True
    routing_key: str = DEFAULT_TEMPLATE
    qos: QosSpec = msgspec.field(default_factory=QosSpec)
    direction: Direction = "both"


class FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    rule: list[RuleSpec] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QosPolicy:
    """Applied to MQTT publishes of a rule: QoS capped at ``max``; ``delivery_mode`` forced."""

    max: int = 2
    delivery_mode: int | None = None

    @property
    def is_neutral(self) -> bool:
        return self.max == 2 and self.delivery_mode is None

    def describe(self) -> str:
        mode = "from QoS" if self.delivery_mode is None else str(self.delivery_mode)
        return f"qos max {self.max}, delivery_mode {mode}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    origin: str  # the file it came from
    topic: str
    levels: tuple[str, ...]
    exchange: str
    exchange_type: str
    declare: bool
    durable: bool
    template: Template
    qos: QosPolicy
    direction: Direction

    @property
    def publishes(self) -> bool:
        return self.direction != "subscribe"

    @property
    def subscribes(self) -> bool:
        return self.direction != "publish"

    def where(self) -> str:
        return f"{self.origin}: rule {self.name!r}"


def is_default_rule(rule: Rule, default_exchange: str) -> bool:
    """A rule that says exactly what the implicit default rule does (mappings/default.toml)."""
    return (
        rule.topic == "#"
        and rule.exchange == default_exchange
        and rule.template.is_topic_only
        and rule.qos.is_neutral
        and rule.direction == "both"
        and not rule.declare
    )


def _topic_filter_error(topic: str) -> str | None:
    if not topic:
        return "topic: empty topic filter"
    if "\x00" in topic:
        return "topic: contains U+0000"
    if topic.startswith("$share/"):
        return "topic: a shared-subscription filter is not a namespace"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            return f"topic: '+' must fill a whole level in {topic!r}"
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return f"topic: '#' must be the whole last level in {topic!r}"
    return None


_PREDECLARED = dict(PREDECLARED_EXCHANGES)


def _compile(spec: RuleSpec, origin: str) -> tuple[Rule | None, list[str]]:
    where = f"{origin}: rule {spec.name!r}"
    errors: list[str] = []
    if not spec.name:
        errors.append(f"{where}: name: expected a non-empty name")
    problem = _topic_filter_error(spec.topic)
    if problem is not None:
        return None, [*errors, f"{where}: {problem}"]
    levels = tuple(spec.topic.split("/"))
    if spec.exchange_type not in EXCHANGE_TYPES:
        known = ", ".join(sorted(EXCHANGE_TYPES))
        errors.append(
            f"{where}: exchange_type: unknown exchange type {spec.exchange_type!r} "
            f"(expected one of {known})"
        )
    if spec.declare:
        if spec.exchange == "":
            errors.append(f"{where}: declare: the default exchange '' cannot be declared")
        elif (
            spec.exchange.startswith("amq.")
            and _PREDECLARED.get(spec.exchange) != spec.exchange_type
        ):
            errors.append(
                f"{where}: declare: {spec.exchange!r} uses the reserved prefix 'amq.' "
                "and is not a predeclared exchange of that type"
            )
    if spec.exchange == "" and spec.direction != "publish":
        errors.append(
            f"{where}: exchange: the default exchange '' takes no bindings; use "
            'direction = "publish"'
        )
    if not 0 <= spec.qos.max <= 2:
        errors.append(f"{where}: qos.max: expected 0, 1 or 2, got {spec.qos.max}")
    if spec.qos.delivery_mode not in (None, 1, 2):
        errors.append(
            f"{where}: qos.delivery_mode: expected 1 (transient) or 2 (persistent), "
            f"got {spec.qos.delivery_mode}"
        )
    try:
        template = parse_template(spec.routing_key, levels.count("+"), levels[-1] == "#")
    except TemplateError as exc:
        errors.append(f"{where}: routing_key {spec.routing_key!r}: {exc}")
        return None, errors
    if errors:
        return None, errors
    rule = Rule(
        name=spec.name,
        origin=origin,
        topic=spec.topic,
        levels=levels,
        exchange=spec.exchange,
        exchange_type=spec.exchange_type,
        declare=spec.declare,
        durable=spec.durable,
        template=template,
        qos=QosPolicy(spec.qos.max, spec.qos.delivery_mode),
        direction=spec.direction,
    )
    return rule, []


def _describe(err: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.rule[0].qos.max`" as "key ...: what"."""
    key, message = split_validation_error(err)
    return f"{key or '(top level)'}: {message}"


def parse_file(text: str, origin: str) -> tuple[list[Rule], list[str]]:
    """Rules of one file's text, and the errors of those that could not be compiled."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{origin}: not valid TOML: {exc}"]
    rules: list[Rule] = []
    errors: list[str] = []
    table = raw.get("rule")
    if isinstance(table, list):
        # Convert rule by rule so one bad rule names itself and the others are still checked.
        for index, item in enumerate(table):
            name = item.get("name") if isinstance(item, dict) else None
            label = f"rule {name!r}" if isinstance(name, str) else f"rule #{index + 1}"
            try:
                spec = msgspec.convert(item, RuleSpec)
            except msgspec.ValidationError as err:
                detail = _describe(err)
                errors.append(f"{origin}: {label}: {detail}")
                continue
            rule, problems = _compile(spec, origin)
            errors.extend(problems)
            if rule is not None:
                rules.append(rule)
        raw = {key: value for key, value in raw.items() if key != "rule"}
    try:
        msgspec.convert(raw, FileSpec)
    except msgspec.ValidationError as err:
        errors.append(f"{origin}: {_describe(err)} (a mappings file holds [[rule]] tables only)")
    return rules, errors


def _sides(rule: Rule) -> set[str]:
    return {"publish", "subscribe"} if rule.direction == "both" else {rule.direction}


def check_rules(rules: list[Rule], default_exchange: str) -> list[str]:
    """Errors between rules: names, reachability, overlaps, declarations, key collisions."""
    errors: list[str] = []
    names: dict[str, Rule] = {}
    for rule in rules:
        first = names.get(rule.name)
        if first is not None:
            errors.append(f"{rule.where()}: name already used by {first.where()}")
        else:
            names[rule.name] = rule
    user = [rule for rule in rules if not is_default_rule(rule, default_exchange)]
    for later_index, later in enumerate(user):
        for earlier in user[:later_index]:
            if not _sides(earlier) & _sides(later):
                continue  # one maps publishes only, the other subscriptions only
            if contains(earlier.levels, later.levels):
                if _sides(later) <= _sides(earlier):
                    errors.append(
                        f"{later.where()}: unreachable: topic {later.topic!r} lies inside "
                        f"{earlier.where()} (topic {earlier.topic!r}), which comes first"
                    )
                    break
                continue  # the later rule still maps the other direction
            if contains(later.levels, earlier.levels):
                continue  # narrower first: fine
            if intersect(earlier.levels, later.levels) is not None:
                errors.append(
                    f"{later.where()}: ambiguous: topic {later.topic!r} partially overlaps "
                    f"{earlier.where()} (topic {earlier.topic!r}); make one contain the other "
                    "or make them disjoint"
                )
                break
    declared: dict[str, Rule] = {}
    for rule in user:
        if not rule.declare:
            continue
        other = declared.get(rule.exchange)
        if other is None:
            declared[rule.exchange] = rule
        elif (other.exchange_type, other.durable) != (rule.exchange_type, rule.durable):
            errors.append(
                f"{rule.where()}: declare: exchange {rule.exchange!r} is declared differently "
                f"by {other.where()} ({other.exchange_type}, durable={other.durable})"
            )
    # Keys read back for subscribers: rules sharing an exchange must not render the same key.
    readers = [rule for rule in user if rule.subscribes]
    default_template = parse_template(DEFAULT_TEMPLATE, 0, False)
    for index, rule in enumerate(readers):
        if rule.exchange == default_exchange and keys_may_collide(rule.template, default_template):
            errors.append(
                f"{rule.where()}: routing_key {rule.template.source!r} on {default_exchange!r} "
                "could give the same key as the default rule; use another exchange or '{topic}'"
            )
            continue
        for other in readers[:index]:
            if other.exchange == rule.exchange and keys_may_collide(other.template, rule.template):
                errors.append(
                    f"{rule.where()}: routing_key {rule.template.source!r} could give the same "
                    f"key on exchange {rule.exchange!r} as {other.where()} "
                    f"({other.template.source!r}); start them with different literal words"
                )
                break
    return errors


@dataclass(frozen=True, slots=True)
class MappingSet:
    """The rules of a mappings directory, in evaluation order, default-equivalent ones left out."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()
    # Explicit rules that restate the default (reported by `mappings check`, not evaluated).
    defaults: tuple[Rule, ...] = ()


EMPTY = MappingSet()


def load_texts(texts: list[tuple[str, str]], default_exchange: str = DEFAULT_EXCHANGE
               ) -> MappingSet:  # fmt: skip
    """Rules from (origin, text) pairs in order; MappingError lists every problem found."""
    rules: list[Rule] = []
    errors: list[str] = []
    for origin, text in texts:
        found, problems = parse_file(text, origin)
        rules.extend(found)
        errors.extend(problems)
    errors.extend(check_rules(rules, default_exchange))
    if errors:
        raise MappingError(errors)
    return MappingSet(
        rules=tuple(r for r in rules if not is_default_rule(r, default_exchange)),
        files=tuple(origin for origin, _ in texts),
        defaults=tuple(r for r in rules if is_default_rule(r, default_exchange)),
    )


def load_directory(directory: Path, default_exchange: str = DEFAULT_EXCHANGE) -> MappingSet:
    """Every `*.toml` directly in ``directory``, in file name order."""
    if not directory.is_dir():
        raise MappingError([f"{directory}: not a directory"])
    texts: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError([f"{path}: cannot read: {exc}"]) from None
    return load_texts(texts, default_exchange)
