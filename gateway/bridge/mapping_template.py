"""Routing-key templates of mapping rules: parse, render a key, and read a key back.

A template is AMQP words joined by `.`. A word is a literal or a whole placeholder:

- ``{1}``, ``{2}``, ... the 1st, 2nd `+` level of the namespace, as one AMQP word;
- ``{#}`` the levels the namespace's trailing `#` matched, as zero or more words;
- ``{topic}`` the whole topic, as the default rule translates it.

Reversibility is checked when the template is parsed: every wildcard of the namespace is used
exactly once (or ``{topic}`` alone carries all of them), and at most one placeholder spans a
variable number of words, so the fixed words around it locate it in any key. When ``{#}``
matched nothing (`a/#` matching `a`), its word and the dot next to it are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.bridge.mapping_filters import Captures
from gateway.bridge.topics import MAX_ROUTING_KEY_BYTES, RoutingKeyTooLong, TopicTranslator

DEFAULT_TEMPLATE = "{topic}"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class TemplateError(ValueError):
    """A template that cannot be used; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Word:
    """One template word: ``kind`` is "literal", "plus" (``index`` is 0-based), "rest", "topic"."""

    kind: str
    text: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    words: tuple[Word, ...]
    # Position of the one variable-width word ({#} or {topic}), if any.
    variable: int | None

    @property
    def fixed_count(self) -> int:
        return len(self.words) - (0 if self.variable is None else 1)

    @property
    def prefix(self) -> tuple[Word, ...]:
        return self.words if self.variable is None else self.words[: self.variable]

    @property
    def suffix(self) -> tuple[Word, ...]:
        return () if self.variable is None else self.words[self.variable + 1 :]

    @property
    def is_topic_only(self) -> bool:
        """The default rule's form: the key is the translated topic itself."""
        return len(self.words) == 1 and self.words[0].kind == "topic"

    # -- MQTT -> AMQP ------------------------------------------------------------------------

    def render(
        self, captures: Captures, topic: str, translator: TopicTranslator, *, as_filter: bool
    ) -> str:
        """The routing key (or, with ``as_filter``, the binding key) for a matched topic."""
        convert = translator.filter_to_binding_key if as_filter else translator.topic_to_routing_key
        parts: list[str] = []
        for word in self.words:
            kind = word.kind
            if kind == "literal":
                parts.append(word.text)
            elif kind == "plus":
                parts.append(convert(captures.plus[word.index]))
            elif kind == "rest":
                rest = captures.rest
                assert rest is not None
                if rest:
                    parts.append(convert("/".join(rest)))
            else:
                parts.append(convert(topic))
        key = ".".join(parts)
        if len(key) > MAX_ROUTING_KEY_BYTES or len(key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise RoutingKeyTooLong(
                f"routing key for this topic is {len(key.encode())} bytes; AMQP allows "
                f"{MAX_ROUTING_KEY_BYTES}"
            )
        return key

    # -- AMQP -> MQTT ------------------------------------------------------------------------

    def read(self, key: str, translator: TopicTranslator) -> tuple[Captures, str | None] | None:
        """The captures (and, for ``{topic}``, the topic) a key was rendered from, or None."""
        words = key.split(".")
        if self.variable is not None and self.fixed_count == 0 and key == "":
            words = []  # the variable word rendered as nothing
        count = len(words)
        fixed = self.fixed_count
        if count < fixed or (self.variable is None and count != fixed):
            return None
        plus: dict[int, str] = {}
        prefix, suffix = self.prefix, self.suffix
        pairs = list(zip(prefix, words, strict=False))
        if suffix:
            pairs += list(zip(suffix, words[count - len(suffix) :], strict=True))
        for word, text in pairs:
            if word.kind == "literal":
                if word.text != text:
                    return None
            else:
                plus[word.index] = translator.routing_key_to_topic(text)
        rest: tuple[str, ...] | None = None
        topic: str | None = None
        if self.variable is not None:
            middle = words[len(prefix) : count - len(suffix)]
            if self.words[self.variable].kind == "rest":
                rest = () if not middle else tuple(
                    translator.routing_key_to_topic(".".join(middle)).split("/")
                )  # fmt: skip
            else:
                if not middle:
                    return None
                topic = translator.routing_key_to_topic(".".join(middle))
        return Captures(tuple(plus[i] for i in sorted(plus)), rest), topic


def parse_template(source: str, plus_levels: int, has_rest: bool) -> Template:
    """Parse and check a template against its namespace (``plus_levels`` `+`, a `#` or not)."""
    if source == "":
        raise TemplateError("routing_key template is empty")
    words: list[Word] = []
    variable: int | None = None
    seen: set[str] = set()
    for position, text in enumerate(source.split(".")):
        match = _PLACEHOLDER.fullmatch(text)
        if match is None:
            if "{" in text or "}" in text:
                raise TemplateError(
                    f"word {text!r}: a placeholder must be a whole word between dots "
                    "(e.g. 'plant.{1}.{#}')"
                )
            if "*" in text or "#" in text:
                raise TemplateError(
                    f"word {text!r}: literal words may not hold AMQP wildcards '*' or '#'"
                )
            words.append(Word("literal", text))
            continue
        name = match.group(1)
        if name in seen:
            raise TemplateError(f"placeholder {{{name}}} used twice")
        seen.add(name)
        if name == "#":
            if not has_rest:
                raise TemplateError("{#} used but the topic filter has no trailing '#'")
            words.append(Word("rest"))
        elif name == "topic":
            words.append(Word("topic"))
        elif name.isdigit() and name.isascii() and int(name) >= 1:
            number = int(name)
            if number > plus_levels:
                raise TemplateError(
                    f"{{{name}}} used but the topic filter has only {plus_levels} '+' level(s)"
                )
            words.append(Word("plus", index=number - 1))
        else:
            raise TemplateError(
                f"unknown placeholder {{{name}}} (expected {{1}}, {{2}}, ..., {{#}} or {{topic}})"
            )
        if name in ("#", "topic"):
            if variable is not None:
                raise TemplateError(
                    "not reversible: {#} and {topic} both span several words; use one"
                )
            variable = position
    if "topic" in seen:
        if len(seen) > 1:
            raise TemplateError("not reversible: {topic} already holds every level; use it alone")
    else:
        missing = [f"{{{i}}}" for i in range(1, plus_levels + 1) if str(i) not in seen]
        if has_rest and "#" not in seen:
            missing.append("{#}")
        if missing:
            raise TemplateError(
                f"not reversible: the key would lose {', '.join(missing)} (every wildcard of "
                "the topic filter must appear in the key, or use {topic})"
            )
    return Template(source, tuple(words), variable)


def keys_may_collide(first: Template, second: Template) -> bool:
    """Whether two templates could render the same key (so it could not be read back).

    Conservative: two templates are told apart only by a differing literal at the same place
    from the start or from the end, or by word counts that cannot meet.
    """
    if (
        first.words == second.words
        and first.variable is not None
        and first.words[first.variable].kind == "topic"
    ):
        return False  # the same words around the translated topic: the same topic comes back
    for a, b in zip(first.prefix, second.prefix, strict=False):
        if a.kind == b.kind == "literal" and a.text != b.text:
            return False
    for a, b in zip(reversed(first.suffix), reversed(second.suffix), strict=False):
        if a.kind == b.kind == "literal" and a.text != b.text:
            return False
    if first.variable is None and second.variable is None:
        return len(first.words) == len(second.words)
    if first.variable is None:
        return len(first.words) >= second.fixed_count
    if second.variable is None:
        return len(second.words) >= first.fixed_count
    return True
