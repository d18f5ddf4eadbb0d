"""An MQTT session: the state that outlives one connection (DESIGN.md section 5).

A session owns one core queue, `mqtt-subscription-<client id>`, bound once per topic filter on
the MQTT exchange, and consumes it (plus one shared queue per `$share` subscription) as a core
`Consumer`. While the client is away a persistent session keeps its subscriptions and its
in-flight deliveries: `can_accept()` is False, so the core queues for it, and on reconnect the
in-flight messages go out again with DUP and their original packet identifiers
[MQTT-4.4.0-1]. The connection-facing half is `session_handler.ClientHandler`.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.core.consumers import Subscription as CoreSubscription
from gateway.core.errors import CoreError
from gateway.core.settlement import ack_each
from gateway.core.sinks import set_direct
from gateway.mqtt import session_delivery_fast
from gateway.mqtt.packets import SubscriptionOptions
from gateway.mqtt.session_delivery import Outbound, SessionDelivery

__all__ = ["QOS0_QUEUE_TYPE", "Outbound", "Session", "TopicSubscription"]

if TYPE_CHECKING:
    from gateway.core.consumers import Delivery
    from gateway.mqtt.session_delivery import _Matches
    from gateway.mqtt.session_handler import ClientHandler
    from gateway.mqtt.session_hub import MqttHub

# How management shows a session queue in direct delivery (RabbitMQ's MQTT QoS 0 queue type).
QOS0_QUEUE_TYPE = "mqtt-qos0"
_NO_IDS: frozenset[int] = frozenset()


@dataclass(slots=True)
class TopicSubscription:
    """One SUBSCRIBE entry as the session keeps it."""

    topic_filter: str  # the filter without any $share prefix
    options: SubscriptionOptions
    identifier: int | None
    binding_key: str
    share_group: str | None = None
    shared_queue: str | None = None
    core: CoreSubscription | None = None  # shared subscriptions consume their own queue
    # What deliveries are matched against: the filter itself, or in rabbitmq topic mode the
    # filter as the routing key makes it (a `.` inside a level splits it there).
    match_filter: str = ""
    # (exchange, binding key) pairs this subscription bound (mapping rules may add exchanges).
    bindings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.match_filter:
            self.match_filter = self.topic_filter


class Session(SessionDelivery):
    """Subscriptions, in-flight messages and QoS 2 state of one client id.

    Every connected client has one, most of them idle (issue 7, S7): slots, and what only some
    sessions need (the queue name, QoS 2 state, the match cache) is made on first use. What
    the core calls to deliver is in `SessionDelivery` (session_delivery.py).
    """

    __slots__ = (
        "_inbound_qos2",
        "_queue_name",
        "_resume_due",
        "attached_at",
        "batching",
        "client_id",
        "core",
        "expires_at",
        "expiry_interval",
        "handler",
        "hub",
        "inflight",
        "queue_declared",
        "subscriptions",
    )

    def __init__(
        self,
        hub: MqttHub,
        client_id: str,
        *,
        expiry_interval: int,
        handler: ClientHandler | None = None,
    ) -> None:
        """`handler`: attached from the start, which for a new session (no queue, nothing
        subscribed) is all `attach` does."""
        self.hub = hub
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self._queue_name: str | None = None
        self.queue_declared = False
        self.subscriptions: dict[str, TopicSubscription] = {}  # by full filter ($share incl.)
        self.core: CoreSubscription | None = None  # consumer of the session queue
        self.inflight: dict[int, Outbound] = {}  # by packet id, oldest first
        self._inbound_qos2: set[int] | None = None
        self.handler = handler
        self.expires_at: float | None = None  # set while disconnected
        # When the current connection took the session.
        self.attached_at = 0.0 if handler is None else hub.clock()
        self.dropped_deliveries = 0  # too large for the client, or No Local
        self._next_packet_id = 1
        self._match_cache: dict[str, _Matches] | None = None
        # While the handler works through one read, window space freed by acks is handed to
        # the queues once at the end (`end_batch`), not once per PUBACK.
        self.batching = False
        self._resume_due = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    @property
    def queue_name(self) -> str:
        """`mqtt-subscription-<client id>`, the session queue (declared at the first
        subscription)."""
        name = self._queue_name
        if name is None:
            name = self._queue_name = f"mqtt-subscription-{self.client_id}"
        return name

    # -- inbound QoS 2 -------------------------------------------------------------------------

    @property
    def inbound_qos2(self) -> Set[int]:
        """Packet ids PUBREC'd and awaiting PUBREL (read-only; see the methods below)."""
        ids = self._inbound_qos2
        return _NO_IDS if ids is None else ids

    def hold_inbound_qos2(self, packet_id: int) -> None:
        """A QoS 2 PUBLISH was routed: duplicates with this id are not routed again."""
        ids = self._inbound_qos2
        if ids is None:
            ids = self._inbound_qos2 = set()
        ids.add(packet_id)

    def release_inbound_qos2(self, packet_id: int) -> bool:
        """PUBREL: forget the id; False if it was not held."""
        ids = self._inbound_qos2
        if ids is None or packet_id not in ids:
            return False
        ids.discard(packet_id)
        return True

    def attach(self, handler: ClientHandler) -> None:
        self.handler = handler
        self.expires_at = None
        self.attached_at = self.hub.clock()
        if self.core is not None or self.subscriptions:  # a new session has none (S7)
            self.hub.broker.flow.set_pushback(self.core_subscriptions(), True)
        self.update_direct()

    def detach(self) -> None:
        self.handler = None
        self.update_direct()
        # Nobody drains an offline session's queues: they must not hold publishers (they are
        # bounded by their length limit instead).
        self.hub.broker.flow.set_pushback(self.core_subscriptions(), False)

    def core_subscriptions(self) -> list[CoreSubscription]:
        """The core subscriptions this session consumes through (its queue, shared queues)."""
        subs = [] if self.core is None else [self.core]
        subs.extend(sub.core for sub in self.subscriptions.values() if sub.core is not None)
        return subs

    # -- subscriptions -----------------------------------------------------------------------

    def subscriptions_changed(self) -> None:
        self._match_cache = None
        self.update_direct()
        self.hub.session_changed(self)

    def update_direct(self) -> None:
        """An attached clean session whose (non-shared) subscriptions are all QoS 0 takes its
        queue's messages directly (core/sinks.py, DESIGN.md section 5): no entry, no ack."""
        if not self.queue_declared:
            return
        try:
            queue = self.hub.vhost.queue(self.queue_name)
        except CoreError:
            return
        direct = (
            self.handler is not None
            and not self.persistent
            and not queue.durable
            and all(sub.options.qos == 0 for sub in self.subscriptions.values()
                    if sub.share_group is None)
        )  # fmt: skip
        set_direct(queue, self if direct else None, QOS0_QUEUE_TYPE)

    # -- core Consumer -----------------------------------------------------------------------

    # The batch from a queue's backlog (core/dispatch.py): the common QoS 1/2 case without
    # the general path's per-message branches, the rest through `deliver` (`deliver_each`).
    deliver_many = session_delivery_fast.deliver_many

    def can_accept(self) -> bool:
        handler = self.handler
        if handler is None:
            # Store recovery taking back what was in flight (`restore_inflight`).
            restoring = self.hub.restoring
            return restoring is not None and restoring[0] is self and bool(restoring[1])
        return handler.writable and len(self.inflight) < handler.window

    def cancelled_by_server(self) -> None:
        # The session queue or a shared queue was deleted (e.g. through the AMQP side).
        self.queue_declared = self.queue_declared and self.hub.queue_exists(self.queue_name)
        if self.core is not None and not self.core.active:
            self.core = None
        for sub in self.subscriptions.values():
            if sub.core is not None and not sub.core.active:
                sub.core = None

    # -- acknowledgements from the client ------------------------------------------------------

    def puback(self, packet_id: int) -> bool:
        inflight = self.inflight
        out = inflight.get(packet_id)
        if out is None or out.qos != 1:
            return False
        del inflight[packet_id]
        delivery = out.delivery
        if delivery is not None:
            delivery.queue.ack(delivery)
        if self.batching:
            self._resume_due = True  # `resume`, once per read (`end_batch`)
        else:
            self.resume()
        return True

    def pubacks(self, events: Sequence[object]) -> int:
        """`puback` for each packet id at the head of ``events`` (a read's events), in one
        loop; how many there were."""
        inflight = self.inflight
        pop = inflight.pop
        count = 0
        settled = False
        # Settled in one `ack_each` after the loop (the session's subscriptions have no
        # prefetch: an ack dispatches nothing, so doing them after the loop changes nothing).
        acked: list[Delivery] = []
        for packet_id in events:
            if not isinstance(packet_id, int):
                break
            count += 1
            out = inflight.get(packet_id)
            if out is None or out.qos != 1:
                continue
            pop(packet_id)
            delivery = out.delivery
            if delivery is not None:
                acked.append(delivery)
            settled = True
        if acked:
            ack_each(acked)
        if settled:
            if self.batching:
                self._resume_due = True  # `resume`, once per read (`end_batch`)
            else:
                self.resume()
        return count

    def pubrec(self, packet_id: int, failed: bool) -> bool:
        """QoS 2 step 1: the client has the message; settle it in the queue, await PUBCOMP."""
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 2:
            return False
        delivery = out.delivery
        out.delivery = None
        if failed:
            # A PUBREC with a failure code ends the exchange [MQTT-4.3.3-?]: no PUBREL.
            del self.inflight[packet_id]
        elif delivery is not None:
            # A persistent session stores "PUBREL due" before its queue forgets the message.
            self.hub.session_changed(self)
        if delivery is not None:
            delivery.queue.ack(delivery)
        if failed:
            self.resume()
        return True

    def pubcomp(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or not out.awaiting_pubcomp:
            return False
        del self.inflight[packet_id]
        self.hub.session_changed(self)
        self.resume()
        return True

    def resume(self) -> None:
        """Window space or socket space came back: let the queues deliver again."""
        if self.batching:
            self._resume_due = True
            return
        if self.core is not None:
            self.core.resume()
        for sub in self.subscriptions.values():
            if sub.core is not None:
                sub.core.resume()

    def end_batch(self) -> None:
        """The read is handled: deliver into whatever window its acks opened."""
        self.batching = False
        if self._resume_due:
            self._resume_due = False
            self.resume()

    def requeue_inflight(self) -> None:
        """Give unsettled deliveries back to their queues (clean session end, shared subs)."""
        for out in list(self.inflight.values()):
            if out.delivery is not None and not out.delivery.settled:
                out.delivery.queue.reject(out.delivery, requeue=True)
        self.inflight.clear()
