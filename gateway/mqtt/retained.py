"""Retained messages in a topic trie, so wildcard subscriptions get them too.

RabbitMQ's MQTT plugin looks retained messages up by exact topic only, so `sensors/+/temp` never
sees `sensors/1/temp`'s last value. Here a subscription walks the trie with its filter. Limits on
count and total bytes are enforced at `set`; Message Expiry is honoured at lookup time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Retained(Generic[T]):
    topic: str
    value: T
    size: int
    expires_at: float | None


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    retained: Retained[T] | None = None


class RetainedLimitExceeded(Exception):
    """Storing this message would pass the configured count or byte limit."""


class RetainedStore(Generic[T]):
    """Topic -> last retained value, matched by MQTT filters (`+`, `#`, `$`-topic rule)."""

    def __init__(self, *, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._root: _Node[T] = _Node()
        self.count = 0
        self.total_bytes = 0
        # Told of every change: (topic, the new retained message or None when cleared). The
        # store sets it to persist retained messages.
        self.listener: Callable[[str, Retained[T] | None], None] | None = None

    def set(self, topic: str, value: T, size: int, expires_at: float | None = None) -> None:
        """Store or replace the retained message of `topic` (size 0 clears it, as MQTT says)."""
        if size == 0:
            self.clear(topic)
            return
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        old = node.retained
        new_count = self.count + (0 if old is not None else 1)
        new_bytes = self.total_bytes + size - (old.size if old is not None else 0)
        if new_count > self.max_count or new_bytes > self.max_bytes:
            self._prune(topic)
            raise RetainedLimitExceeded(
                f"retained store full ({self.count} messages, {self.total_bytes} bytes; "
                f"limits {self.max_count} and {self.max_bytes})"
            )
        node.retained = Retained(topic, value, size, expires_at)
        self.count, self.total_bytes = new_count, new_bytes
        if self.listener is not None:
            self.listener(topic, node.retained)

    def get(self, topic: str, now: float) -> Retained[T] | None:
        node: _Node[T] | None = self._root
        for level in topic.split("/"):
            node = node.children.get(level) if node is not None else None
        if node is None or node.retained is None:
            return None
        if node.retained.expires_at is not None and node.retained.expires_at <= now:
            self.clear(topic)
            return None
        return node.retained

    def clear(self, topic: str) -> None:
        path = [self._root]
        for level in topic.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        old = path[-1].retained
        if old is not None:
            path[-1].retained = None
            self.count -= 1
            self.total_bytes -= old.size
            if self.listener is not None:
                self.listener(topic, None)
        self._prune(topic)

    def _prune(self, topic: str) -> None:
        """Drop trie nodes that hold nothing, so cleared topics do not leak memory."""
        levels = topic.split("/")
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.children or node.retained is not None:
                return
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic_filter: str, now: float) -> list[Retained[T]]:
        """Every live retained message whose topic matches the filter."""
        found = list(self._walk(self._root, topic_filter.split("/"), 0))
        live = []
        for item in found:
            if item.expires_at is not None and item.expires_at <= now:
                self.clear(item.topic)
            else:
                live.append(item)
        return live

    def _walk(self, node: _Node[T], levels: list[str], depth: int) -> Iterator[Retained[T]]:
        if depth == len(levels):
            if node.retained is not None:
                yield node.retained
            return
        level = levels[depth]
        if level == "#":
            # "a/#" also matches "a" itself (MQTT-4.7.1-2).
            if node.retained is not None and depth > 0:
                yield node.retained
            yield from self._descendants(node, skip_dollar=depth == 0)
        elif level == "+":
            for name, child in node.children.items():
                if depth == 0 and name.startswith("$"):
                    continue  # MQTT-4.7.2-1: leading wildcards do not match $-topics
                yield from self._walk(child, levels, depth + 1)
        else:
            exact = node.children.get(level)
            if exact is not None:
                yield from self._walk(exact, levels, depth + 1)

    def _descendants(self, node: _Node[T], *, skip_dollar: bool) -> Iterator[Retained[T]]:
        for name, child in node.children.items():
            if skip_dollar and name.startswith("$"):
                continue
            if child.retained is not None:
                yield child.retained
            yield from self._descendants(child, skip_dollar=False)

    def __iter__(self) -> Iterator[Retained[T]]:
        if self._root.retained is not None:
            yield self._root.retained
        yield from self._descendants(self._root, skip_dollar=False)
