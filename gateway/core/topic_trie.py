"""Topic matching: a trie over dot-separated words, and the topic exchange built on it.

Words follow RabbitMQ's ``split_topic_key``: "" is zero words, "a..b" is ["a", "", "b"],
"a." is ["a", ""]. In a binding key a whole word ``*`` matches exactly one word and ``#`` zero or
more; any other word (even "a*") matches itself only.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.core.exchanges import Binding, BindingKey, Destination, Exchange

if TYPE_CHECKING:
    from gateway.core.message import Message

D = TypeVar("D", bound=Hashable)

ROUTE_CACHE_SIZE = 4096


def split_words(key: str) -> list[str]:
    return key.split(".") if key else []


class _Node(Generic[D]):
    __slots__ = ("children", "dests", "hash", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node[D]] = {}
        self.star: _Node[D] | None = None
        self.hash: _Node[D] | None = None
        # Destination -> number of bindings ending here (same pattern, other arguments).
        self.dests: dict[D, int] = {}

    def empty(self) -> bool:
        return not self.dests and not self.children and self.star is None and self.hash is None

    def child(self, word: str) -> _Node[D] | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        return self.children.get(word)

    def make_child(self, word: str) -> _Node[D]:
        node = self.child(word)
        if node is None:
            node = _Node()
            if word == "*":
                self.star = node
            elif word == "#":
                self.hash = node
            else:
                self.children[word] = node
        return node

    def drop_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        else:
            del self.children[word]


class TopicTrie(Generic[D]):
    """Patterns to destinations; ``match`` returns each matching destination once."""

    __slots__ = ("_root", "size")

    def __init__(self) -> None:
        self._root: _Node[D] = _Node()
        self.size = 0  # number of (pattern, destination) bindings held

    def add(self, pattern: str, dest: D) -> None:
        node = self._root
        for word in split_words(pattern):
            node = node.make_child(word)
        node.dests[dest] = node.dests.get(dest, 0) + 1
        self.size += 1

    def remove(self, pattern: str, dest: D) -> bool:
        """Drop one binding of ``dest`` to ``pattern``; prunes nodes left empty."""
        path: list[tuple[_Node[D], str]] = []
        node = self._root
        for word in split_words(pattern):
            nxt = node.child(word)
            if nxt is None:
                return False
            path.append((node, word))
            node = nxt
        count = node.dests.get(dest)
        if count is None:
            return False
        if count > 1:
            node.dests[dest] = count - 1
        else:
            del node.dests[dest]
        self.size -= 1
        for parent, word in reversed(path):
            if not node.empty():
                break
            parent.drop_child(word)
            node = parent
        return True

    def match(self, routing_key: str) -> list[D]:
        words = split_words(routing_key)
        found: dict[D, None] = {}
        # (node id, position) pairs already explored: keeps "#.#.#" patterns linear.
        seen: set[tuple[int, int]] = set()
        self._match(self._root, words, 0, len(words), found, seen)
        return list(found)

    def _match(
        self,
        node: _Node[D],
        words: Sequence[str],
        i: int,
        n: int,
        found: dict[D, None],
        seen: set[tuple[int, int]],
    ) -> None:
        mark = (id(node), i)
        if mark in seen:
            return
        seen.add(mark)
        if i == n:
            if node.dests:
                for dest in node.dests:
                    found[dest] = None
            if node.hash is not None:
                self._match(node.hash, words, i, n, found, seen)  # '#' matching no word
            return
        child = node.children.get(words[i])
        if child is not None:
            self._match(child, words, i + 1, n, found, seen)
        if node.star is not None:
            self._match(node.star, words, i + 1, n, found, seen)
        hash_node = node.hash
        if hash_node is not None:
            for j in range(i, n + 1):
                self._match(hash_node, words, j, n, found, seen)


class TopicExchange(Exchange):
    """Routes through the trie, with a bounded cache of routing key -> destinations."""

    type_name = "topic"
    __slots__ = ("_cache", "_trie")

    def _init_index(self) -> None:
        self._trie: TopicTrie[Destination] = TopicTrie()
        self._cache: dict[str, tuple[Destination, ...]] = {}

    def route(self, message: Message) -> Sequence[Destination]:
        key = message.routing_key
        hit = self._cache.get(key)
        if hit is None:
            hit = tuple(self._trie.match(key))
            if len(self._cache) >= ROUTE_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        self._trie.add(binding.routing_key, dest)
        self._cache.clear()

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        self._trie.remove(binding.routing_key, dest)
        self._cache.clear()
