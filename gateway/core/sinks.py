"""Direct delivery: a queue that hands each message straight to one consumer, no queue entry.

RabbitMQ's MQTT QoS 0 queue type in spirit. While a queue has a direct consumer, ``_offer``
first asks it to take the message as it is (``deliver_direct``): no ``QueueEntry``, no
``Delivery``, no credit or ack bookkeeping. The consumer answers False for anything it cannot
take that way (its socket is paused, a message that needs per-delivery work), and the message
then goes the ordinary way: into the ready backlog, whose watermarks hold the publishers
(core/flow.py), and out through the queue's subscription when the consumer resumes. A message
never overtakes the backlog: the direct path is only tried while nothing is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.core.message import Message
    from gateway.core.queues import Queue

# The argument that shows the queue's type to management (as RabbitMQ's x-queue-type).
QUEUE_TYPE_ARGUMENT = "x-queue-type"


class DirectConsumer(Protocol):
    def deliver_direct(self, queue: Queue, message: Message) -> bool:
        """Send ``message`` now, or count it as dropped; False: let ``queue`` take it."""
        ...

    def deliver_packet(self, queue: Queue, packet: Any) -> bool:
        """``deliver_direct`` for a publish that has no ``Message`` yet (core/routing.py
        ``offer_packet``: a cached route, the publisher's own bytes; the packet's shape is the
        adapter's own); False: it needs one."""
        ...


def set_direct(queue: Queue, consumer: DirectConsumer | None, queue_type: str) -> None:
    """Turn direct delivery on for ``consumer`` (shown as ``queue_type``), or off (None)."""
    if consumer is None:
        if queue._direct is not None:
            queue._direct = None
            if queue.arguments.get(QUEUE_TYPE_ARGUMENT) == queue_type:
                del queue.arguments[QUEUE_TYPE_ARGUMENT]
        return
    if queue.durable:
        raise ValueError("direct delivery skips the store: only for transient queues")
    queue._direct = consumer
    queue.arguments[QUEUE_TYPE_ARGUMENT] = queue_type
