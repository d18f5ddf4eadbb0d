"""MQTT topic-filter algebra for mapping rules: match with captures, containment, intersection.

A rule's namespace is an MQTT topic filter. Publishing needs the `+` and `#` parts of a topic
(the template's placeholders); validation needs to know whether one namespace contains another
or overlaps it; subscribing needs the filter of the topics two filters have in common. All three
follow MQTT matching, including MQTT-4.7.2-1: a filter starting with `+` or `#` matches no topic
starting with `$`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Captures:
    """What a namespace's wildcards matched: one level per `+`, and the `#` remainder.

    ``rest`` is None when the namespace has no `#`; an empty tuple when `#` matched the parent
    level only (`a/#` matching `a`).
    """

    plus: tuple[str, ...]
    rest: tuple[str, ...] | None


def _dollar_guard(filter_first: str, other_first: str) -> bool:
    """True when a wildcard first level meets a `$` level: no match (MQTT-4.7.2-1)."""
    return filter_first in ("+", "#") and other_first.startswith("$")


def capture(namespace: tuple[str, ...], levels: list[str]) -> Captures | None:
    """Match topic (or filter) ``levels`` against ``namespace``; None when it does not match.

    Used with filter levels too (for subscriptions): a `+` or `#` level of the filter is then
    captured as it is, which is what the binding key needs.
    """
    if _dollar_guard(namespace[0], levels[0]):
        return None
    plus: list[str] = []
    for index, part in enumerate(namespace):
        if part == "#":
            return Captures(tuple(plus), tuple(levels[index:]))
        if index >= len(levels):
            return None
        level = levels[index]
        if part == "+":
            plus.append(level)
        elif part != level:
            return None
    if len(levels) != len(namespace):
        return None
    return Captures(tuple(plus), None)


def contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Every topic that ``inner`` matches is matched by ``outer``."""
    if inner[0].startswith("$") and outer[0] in ("+", "#"):
        return False
    for index, part in enumerate(outer):
        if part == "#":
            return True
        if index >= len(inner):
            return False
        level = inner[index]
        if level == "#":
            return False
        if part == "+":
            continue
        if level == "+" or level != part:
            return False
    return len(inner) == len(outer)


def intersect(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...] | None:
    """The filter matching exactly the topics both filters match, or None when there are none."""
    if _dollar_guard(first[0], second[0]) or _dollar_guard(second[0], first[0]):
        return None
    out: list[str] = []
    for index in range(max(len(first), len(second))):
        a = first[index] if index < len(first) else None
        b = second[index] if index < len(second) else None
        if a == "#":
            return (*out, *second[index:]) if b is not None else tuple(out)
        if b == "#":
            return (*out, *first[index:]) if a is not None else tuple(out)
        if a is None or b is None:
            return None
        if a == "+":
            out.append(b)
        elif b == "+" or a == b:
            out.append(a)
        else:
            return None
    return tuple(out)


def is_wildcard(levels: tuple[str, ...] | list[str]) -> bool:
    return any(level in ("+", "#") for level in levels)
