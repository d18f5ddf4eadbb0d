"""The hook a durable store implements to follow what the core does.

Calls happen synchronously, in the order of the changes, and only for durable things: durable
exchanges and queues, bindings whose source and destination are both durable, and persistent
messages in durable queues. Deleting a queue reports ``on_queue_deleted`` once instead of an
``on_removed`` per message still in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
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
