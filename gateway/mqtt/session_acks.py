"""Acknowledgements that wait for the store's commit (DESIGN.md sections 5 and 7).

A QoS 1/2 PUBLISH that a durable queue took is acknowledged (PUBACK/PUBREC) only once the store
has committed it, and every acknowledgement after it waits too, so the client sees them in
PUBLISH order [MQTT-4.6.0-2]. A stored session change (CONNACK, SUBACK, UNSUBACK) waits the same
way, as a callable that sends it and whatever must follow it.

Most connections never wait for anything: the handler makes its `HeldAcks` on the first held
item only, so an idle connection pays nothing for this (issue 7, S7).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.mqtt.packets import PubAck, PubRec

if TYPE_CHECKING:
    from gateway.core.broker import Broker
    from gateway.mqtt.session_handler import ClientHandler

# What may be held: a packet, or a callable that sends one (and what follows it).
Held = PubAck | PubRec | Callable[[], None]


def written(broker: Broker) -> int:
    """How many records the store has been handed so far (0 without a store)."""
    barrier = broker.commit_barrier
    return 0 if barrier is None else barrier.written


def written_since(broker: Broker, before: int) -> int:
    """The record to wait for when the store was handed records since ``before``, else 0."""
    now = written(broker)
    return now if now != before else 0


def send_held(handler: ClientHandler, item: Held) -> None:
    if callable(item):
        item()
    else:
        handler.conn.send(item)


class HeldAcks:
    """One connection's acknowledgements waiting for commits, oldest first."""

    __slots__ = ("_handler", "_items")

    def __init__(self, handler: ClientHandler) -> None:
        self._handler = handler
        # (record number to wait for, 0 for one held only to keep the order; the item).
        self._items: deque[tuple[int, Held]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, wait_for: int, item: Held) -> None:
        """Hold ``item`` until record ``wait_for`` and everything held before it are out."""
        items = self._items
        items.append((wait_for, item))
        if len(items) == 1:
            barrier = self._handler.hub.broker.commit_barrier
            assert barrier is not None
            barrier.after_commit(wait_for, self._committed)

    def _committed(self) -> None:
        handler = self._handler
        items = self._items
        if handler.closed or not items:
            return
        barrier = handler.hub.broker.commit_barrier
        # No barrier any more: the store closed, which commits everything first.
        committed = barrier.committed if barrier is not None else items[-1][0]
        while items and items[0][0] <= committed and not handler.closed:
            send_held(handler, items.popleft()[1])
        handler.on_output()
        if items and barrier is not None:
            barrier.after_commit(items[0][0], self._committed)
