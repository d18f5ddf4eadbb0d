"""Exchanges and bindings: the base class and the direct, fanout, headers and default types.

An exchange maps a message to destinations (queues or other exchanges). Each type keeps the
structure that makes its own lookup cheap and returns a tuple of unique destinations; the
virtual host follows exchange-to-exchange bindings and alternate exchanges on top of that.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeAlias

from gateway.core.arguments import erlang_term, type_name
from gateway.core.errors import PreconditionFailed

if TYPE_CHECKING:
    from gateway.core.message import Message
    from gateway.core.queues import Queue

Destination: TypeAlias = "Queue | Exchange"
# (destination is a queue, destination name, routing key, frozen arguments)
BindingKey: TypeAlias = tuple[bool, str, str, Hashable]
# A binding as seen from its destination: (source exchange name, key at the source).
SourceKey: TypeAlias = tuple[str, BindingKey]


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding as plain data (what observers and listings see)."""

    vhost: str
    source: str
    destination: str
    destination_is_queue: bool
    routing_key: str
    arguments: Mapping[str, object] = field(default_factory=dict)


def freeze(value: object) -> Hashable:
    """A hashable, order-independent form of binding arguments (tables, arrays, bytes)."""
    if isinstance(value, Mapping):
        return ("table", frozenset((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(freeze(v) for v in value))
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return ("bool", value)  # keep True distinct from 1
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def binding_key(dest: Destination, routing_key: str, arguments: Mapping[str, object]) -> BindingKey:
    return (dest.is_queue, dest.name, routing_key, freeze(arguments))


class Exchange:
    """Base class. Subclasses implement ``route`` and keep their index in ``_bind``/``_unbind``."""

    type_name: ClassVar[str] = ""
    is_queue: ClassVar[bool] = False

    __slots__ = (
        "_e2e",
        "_sources",
        "_targets",
        "alternate_exchange",
        "arguments",
        "auto_delete",
        "bindings",
        "deleted",
        "durable",
        "internal",
        "name",
        "vhost",
    )

    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, object] | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, object] = dict(arguments or {})
        ae = self.arguments.get("alternate-exchange")
        self.alternate_exchange: str | None = ae if isinstance(ae, str) else None
        # Bindings where this exchange is the source, with their destination objects.
        self.bindings: dict[BindingKey, Binding] = {}
        self._targets: dict[BindingKey, Destination] = {}
        # Bindings where this exchange is the destination (to drop them when it goes).
        self._sources: dict[SourceKey, Binding] = {}
        self._e2e = 0  # how many bindings lead to exchanges (0: route() returns only queues)
        self.deleted = False
        self._init_index()

    def _init_index(self) -> None:
        """Set up the type's routing index (called by ``__init__``)."""

    def route(self, message: Message) -> Sequence[Destination]:
        raise NotImplementedError

    def validate_binding(self, arguments: Mapping[str, object]) -> None:
        """Raise 406 for arguments this type cannot bind with."""

    def add_binding(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        self.bindings[key] = binding
        self._targets[key] = dest
        if not dest.is_queue:
            self._e2e += 1
        self._bind(key, binding, dest)

    def remove_binding(self, key: BindingKey) -> tuple[Binding, Destination] | None:
        binding = self.bindings.pop(key, None)
        if binding is None:
            return None
        dest = self._targets.pop(key)
        if not dest.is_queue:
            self._e2e -= 1
        self._unbind(key, binding, dest)
        return binding, dest

    def targets(self) -> list[tuple[BindingKey, Binding, Destination]]:
        return [(k, b, self._targets[k]) for k, b in self.bindings.items()]

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        raise NotImplementedError

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vhost={self.vhost!r}>"


def _count_add(counts: dict[Destination, int], dest: Destination) -> None:
    counts[dest] = counts.get(dest, 0) + 1


def _count_remove(counts: dict[Destination, int], dest: Destination) -> None:
    left = counts.get(dest, 0) - 1
    if left > 0:
        counts[dest] = left
    else:
        counts.pop(dest, None)


class DirectExchange(Exchange):
    type_name = "direct"
    __slots__ = ("_counts", "_routes")

    def _init_index(self) -> None:
        # Several bindings may join the same key to the same destination (other arguments):
        # count them so the destination stays until the last one goes.
        self._counts: dict[str, dict[Destination, int]] = {}
        self._routes: dict[str, tuple[Destination, ...]] = {}

    def route(self, message: Message) -> Sequence[Destination]:
        return self._routes.get(message.routing_key, ())

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        counts = self._counts.setdefault(binding.routing_key, {})
        _count_add(counts, dest)
        self._routes[binding.routing_key] = tuple(counts)

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        routing_key = binding.routing_key
        counts = self._counts.get(routing_key)
        if counts is None:
            return
        _count_remove(counts, dest)
        if counts:
            self._routes[routing_key] = tuple(counts)
        else:
            del self._counts[routing_key]
            del self._routes[routing_key]


class FanoutExchange(Exchange):
    type_name = "fanout"
    __slots__ = ("_all", "_counts")

    def _init_index(self) -> None:
        self._counts: dict[Destination, int] = {}
        self._all: tuple[Destination, ...] = ()

    def route(self, message: Message) -> Sequence[Destination]:
        return self._all

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        _count_add(self._counts, dest)
        self._all = tuple(self._counts)

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        _count_remove(self._counts, dest)
        self._all = tuple(self._counts)


X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")
_ABSENT = object()


def _same_value(expected: object, actual: object) -> bool:
    # Header tables keep booleans apart from integers (Python's True == 1 would merge them).
    return isinstance(expected, bool) == isinstance(actual, bool) and expected == actual


class _HeadersBinding:
    __slots__ = ("dest", "match_all", "pattern")

    def __init__(self, dest: Destination, arguments: Mapping[str, object]) -> None:
        mode = arguments.get("x-match", "all")
        with_x = mode in ("all-with-x", "any-with-x")
        self.dest = dest
        self.match_all = mode in ("all", "all-with-x")
        # x-match itself never takes part; other x- keys only in the -with-x modes.
        self.pattern = tuple(
            (k, v)
            for k, v in arguments.items()
            if k != "x-match" and (with_x or not k.startswith("x-"))
        )

    def matches(self, headers: Mapping[str, object]) -> bool:
        if self.match_all:
            for key, expected in self.pattern:
                actual = headers.get(key, _ABSENT)
                if actual is _ABSENT or (
                    expected is not None and not _same_value(expected, actual)
                ):
                    return False
            return True
        for key, expected in self.pattern:
            actual = headers.get(key, _ABSENT)
            if actual is not _ABSENT and (expected is None or _same_value(expected, actual)):
                return True
        return False


class HeadersExchange(Exchange):
    """Matches on message headers; a binding value of None (void) means "present"."""

    type_name = "headers"
    __slots__ = ("_entries",)

    def _init_index(self) -> None:
        self._entries: dict[BindingKey, _HeadersBinding] = {}

    def validate_binding(self, arguments: Mapping[str, object]) -> None:
        if "x-match" not in arguments:
            return
        mode = arguments["x-match"]
        if not isinstance(mode, str):
            raise PreconditionFailed(
                f"Invalid x-match field type {type_name(mode)} (value {erlang_term(mode)}); "
                "expected longstr"
            )
        if mode not in X_MATCH_MODES:
            raise PreconditionFailed(
                f"Invalid x-match field value {erlang_term(mode)}; "
                "expected all, any, all-with-x, or any-with-x"
            )

    def route(self, message: Message) -> Sequence[Destination]:
        headers = message.properties.headers or {}
        found: dict[Destination, None] = {}
        for entry in self._entries.values():
            if entry.dest not in found and entry.matches(headers):
                found[entry.dest] = None
        return tuple(found)

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        self._entries[key] = _HeadersBinding(dest, binding.arguments)

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        self._entries.pop(key, None)


class DefaultExchange(Exchange):
    """The nameless exchange: routes to the queue named by the routing key, holds no bindings."""

    type_name = "direct"
    __slots__ = ("_queues",)

    def __init__(self, vhost: str, queues: Mapping[str, Queue]) -> None:
        super().__init__("", vhost, durable=True)
        self._queues = queues

    def route(self, message: Message) -> Sequence[Destination]:
        queue = self._queues.get(message.routing_key)
        return () if queue is None else (queue,)

    def _bind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        raise AssertionError("the default exchange holds no bindings")

    def _unbind(self, key: BindingKey, binding: Binding, dest: Destination) -> None:
        raise AssertionError("the default exchange holds no bindings")
