"""The hook a durable store implements to follow what the core does.

Calls happen synchronously, in the order of the changes, and only for durable things: durable
exchanges and queues, bindings whose source and destination are both durable, and persistent
messages in durable queues. Deleting a queue reports ``on_queue_deleted`` once instead of an
``on_removed`` per message still in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.exchanges import Binding, Exchange
    from gateway.core.message import QueueEntry
    from gateway.core.queues import Queue


class BrokerObserver(Protocol):
    def on_exchange_declared(self, exchange: Exchange) -> None: ...

    def on_exchange_deleted(self, exchange: Exchange) -> None: ...

    def on_queue_declared(self, queue: Queue) -> None: ...

    def on_queue_deleted(self, queue: Queue) -> None: ...

    def on_binding_added(self, binding: Binding) -> None: ...

    def on_binding_removed(self, binding: Binding) -> None: ...

    def on_enqueued(self, queue: Queue, entry: QueueEntry) -> None: ...

    def on_removed(self, queue: Queue, entry: QueueEntry) -> None: ...


class CommitBarrier(Protocol):
    """What adapters wait on before confirming a publish that a store recorded.

    ``written`` counts the records the store has been handed; when it changes across a publish,
    the publish touched a durable queue, and its confirm waits for ``after_commit``.
    ``committed`` is the number of the last record on disk.
    """

    @property
    def written(self) -> int: ...

    @property
    def committed(self) -> int: ...

    def after_commit(self, written: int, callback: Callable[[], None]) -> None: ...
