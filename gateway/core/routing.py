"""Publishing through a virtual host: route a message to its queues, offer it to each, and
dead-letter what leaves a queue unconsumed.

The functions take the virtual host first and are installed as ``VirtualHost`` methods
(``vhost.publish(...)``); they live here so that vhost.py keeps declarations and consuming.
``publish`` reports which queues took the message; ``publish_outcome`` gives the same verdict
as a small int without building lists, for adapters that only need to know whether the
message was routed and whether a queue refused it (one call per published message).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.core.deadletter import REJECTED, dead_letter_copy, is_cycle
from gateway.core.errors import AccessRefused, NotFound
from gateway.core.exchanges import DirectExchange, FanoutExchange
from gateway.core.queues import Queue
from gateway.core.topic_trie import TopicExchange

if TYPE_CHECKING:
    from gateway.core.exchanges import Destination, Exchange
    from gateway.core.message import Message
    from gateway.core.vhost import VirtualHost

# What ``publish_outcome`` reports.
UNROUTABLE: Final = 0  # no queue matched (mandatory return, MQTT "no matching subscribers")
ACCEPTED: Final = 1  # every matching queue took it
REFUSED: Final = 2  # routed, and at least one queue refused it (overflow reject-publish)


@dataclass(slots=True)
class RouteResult:
    """``queues`` took the message; ``rejected`` refused it (overflow reject-publish).

    ``routed`` is False when no queue matched at all (mandatory return, MQTT "no subscribers").
    """

    queues: list[Queue]
    rejected: list[Queue]
    routed: bool


def _source(vh: VirtualHost, name: str) -> Exchange:
    source = vh._exchanges.get(name)
    if source is None:
        raise NotFound(f"no {vh._rs('exchange', name)}")
    if source.internal:
        raise AccessRefused(f"cannot publish to internal {vh._rs('exchange', name)}")
    return source


def publish(vh: VirtualHost, exchange: str, message: Message, *, mandatory: bool = False
            ) -> RouteResult:  # fmt: skip
    """Route and enqueue. ``mandatory`` changes nothing here: the adapter returns the message
    itself when ``routed`` is False."""
    source = vh._exchanges.get(exchange)
    if source is None or source.internal:
        source = _source(vh, exchange)  # raises
    dests = source.route(message)
    if source._e2e or not dests:
        queues = follow(vh, source, dests, message)
        if not queues:
            return RouteResult([], [], False)
    else:
        # No exchange bindings: all are queues (no typing.cast: it is a call per publish).
        queues = dests  # type: ignore[assignment]
    now = vh._clock()
    if len(queues) == 1:
        # The common case (one subscriber queue): no list building loop.
        queue = queues[0]
        if queue._offer(message, now):
            return RouteResult([queue], [], True)
        return RouteResult([], [] if queue.deleted else [queue], True)
    accepted: list[Queue] = []
    rejected: list[Queue] = []
    for queue in queues:
        if queue._offer(message, now):
            accepted.append(queue)
        elif not queue.deleted:
            rejected.append(queue)
    return RouteResult(accepted, rejected, True)


def publish_outcome(vh: VirtualHost, exchange: str, message: Message) -> int:
    """``publish`` reduced to its verdict: :data:`UNROUTABLE`, :data:`ACCEPTED` or
    :data:`REFUSED` (the same routing, offers and errors; no lists)."""
    if not exchange:
        # The default exchange: the queue the routing key names. It has no bindings and no
        # alternate exchange, and cannot be changed.
        named = vh._queues.get(message.routing_key)
        if named is None:
            return UNROUTABLE
        if named._offer(message, vh._clock()) or named.deleted:
            return ACCEPTED
        return REFUSED
    source = vh._exchanges.get(exchange)
    if source is None or source.internal:
        source = _source(vh, exchange)  # raises
    dests = source.route(message)
    if source._e2e or not dests:
        dests = follow(vh, source, dests, message)
        if not dests:
            return UNROUTABLE
    now = vh._clock()
    if len(dests) == 1:
        queue: Queue = dests[0]  # type: ignore[assignment]  # follow() gave queues only
        if queue._offer(message, now) or queue.deleted:
            return ACCEPTED
        return REFUSED
    outcome = ACCEPTED
    for queue in dests:  # type: ignore[assignment]
        if not queue._offer(message, now) and not queue.deleted:
            outcome = REFUSED
    return outcome


def route_from(vh: VirtualHost, source: Exchange, message: Message) -> Sequence[Queue]:
    return follow(vh, source, source.route(message), message)


def follow(
    vh: VirtualHost, source: Exchange, dests: Sequence[Destination], message: Message
) -> Sequence[Queue]:
    """The queues reached from ``source``'s own ``dests`` (its ``route`` result)."""
    if dests and not source._e2e:
        return dests  # type: ignore[return-value]  # no exchange bindings: all are queues
    if not dests and source.alternate_exchange is None:
        return ()
    # General case: follow exchange-to-exchange bindings and alternate exchanges, each
    # exchange at most once, each queue once.
    exchanges = vh._exchanges
    queues: dict[Queue, None] = {}
    seen: set[Exchange] = {source}
    pending: list[tuple[Exchange, Sequence[Destination]]] = [(source, dests)]
    while pending:
        exchange, found = pending.pop()
        if not found and exchange.alternate_exchange is not None:
            alternate = exchanges.get(exchange.alternate_exchange)
            if alternate is not None and alternate not in seen:
                seen.add(alternate)
                pending.append((alternate, alternate.route(message)))
        for dest in found:
            if isinstance(dest, Queue):
                queues[dest] = None
            elif dest not in seen:
                seen.add(dest)
                pending.append((dest, dest.route(message)))
    return list(queues)


def dead_letter(vh: VirtualHost, queue: Queue, message: Message, reason: str) -> None:
    """Republish a message that left ``queue`` for ``reason`` to its dead-letter exchange."""
    dlx_name = queue.dead_letter_exchange
    if dlx_name is None:
        return
    dlx = vh._exchanges.get(dlx_name)
    if dlx is None:
        return  # as RabbitMQ: a missing dead-letter exchange drops the message
    copy, deaths = dead_letter_copy(
        message,
        queue=queue.name,
        reason=reason,
        exchange=dlx_name,
        routing_key=queue.dead_letter_routing_key,
        wall_time=vh.broker.wall_clock(),
    )
    targets = route_from(vh, dlx, copy)
    if reason != REJECTED:
        targets = [q for q in targets if not is_cycle(q.name, deaths)]
    now = vh._clock()
    for target in targets:
        target._offer(copy, now)


# -- the MQTT QoS 0 shortcut: routes cached per (exchange, routing key) ----------------------
#
# A publish whose every target is a direct sink (core/sinks.py) that can forward what the
# publisher sent never needs a ``Message``. An adapter caches ``route_targets`` under
# ``vh.routing_version`` (bumped by every binding and exchange change, the only state a
# key-routed exchange's answer depends on) and offers its packet with ``offer_packet``; the
# first target that cannot take the packet gets a ``Message`` through ``offer_rest``. What a
# queue holds (a backlog, a direct consumer, deletion) is checked live at every offer.
# A direct sink takes the packet with ``DirectConsumer.deliver_packet`` (core/sinks.py).

_KEY_ROUTED: Final = (TopicExchange, DirectExchange, FanoutExchange)


def route_targets(vh: VirtualHost, exchange: str, message: Message) -> tuple[Queue, ...] | None:
    """The queues ``publish_outcome(exchange, message)`` offers ``message`` to, when every
    message with its routing key reaches the same ones (None otherwise: a headers exchange,
    exchange-to-exchange bindings, an alternate exchange taking the unroutable)."""
    source = vh._exchanges.get(exchange)
    if source is None or source.internal or source._e2e or type(source) not in _KEY_ROUTED:
        return None
    dests = source.route(message)
    if not dests and source.alternate_exchange is not None:
        return None
    return tuple(dests)  # type: ignore[arg-type]  # no exchange bindings: all are queues


def offer_packet(queues: tuple[Queue, ...], packet: object) -> int:
    """Hand ``packet`` to each queue's direct sink in order; the index of the first queue that
    needs a ``Message`` instead (``len(queues)`` when none does). A deleted queue is skipped as
    ``_offer`` skips it."""
    index = 0
    for queue in queues:
        if not queue.deleted:
            direct = queue._direct
            if direct is None or queue._ready:
                return index
            if not direct.deliver_packet(queue, packet):
                return index
        index += 1
    return index


def offer_rest(vh: VirtualHost, queues: tuple[Queue, ...], start: int, message: Message) -> int:
    """``publish_outcome``'s offers from ``queues[start]`` on (the earlier ones took their
    packet): :data:`ACCEPTED` or :data:`REFUSED`."""
    now = vh._clock()
    if not start and len(queues) == 1:
        # One queue (a QoS 1 PUBLISH to one MQTT subscriber): no slice, no loop.
        queue = queues[0]
        return ACCEPTED if queue._offer(message, now) or queue.deleted else REFUSED
    outcome = ACCEPTED
    for queue in queues[start:]:
        if not queue._offer(message, now) and not queue.deleted:
            outcome = REFUSED
    return outcome
