"""An MQTT session: the state that outlives one connection (DESIGN.md section 5).

A session owns one core queue, `mqtt-subscription-<client id>`, bound once per topic filter on
the MQTT exchange, and consumes it (plus one shared queue per `$share` subscription) as a core
`Consumer`. While the client is away a persistent session keeps its subscriptions and its
in-flight deliveries: `can_accept()` is False, so the core queues for it, and on reconnect the
in-flight messages go out again with DUP and their original packet identifiers
[MQTT-4.4.0-1]. The connection-facing half is `session_handler.ClientHandler`.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.bridge.convert import (
    A_CLIENT,
    A_RETAINED_FOR,
    A_TOPIC,
    MqttView,
    remaining_expiry,
)
from gateway.core.consumers import Delivery
from gateway.core.consumers import Subscription as CoreSubscription
from gateway.core.errors import CoreError
from gateway.core.sinks import set_direct
from gateway.mqtt.packets import EMPTY_PROPERTIES, MQTT_5, Properties, SubscriptionOptions
from gateway.mqtt.session_flow import forward_qos0
from gateway.mqtt.topics import matches

if TYPE_CHECKING:
    from gateway.core.message import Message
    from gateway.core.queues import Queue
    from gateway.mqtt.session_handler import ClientHandler
    from gateway.mqtt.session_hub import MqttHub

_MATCH_CACHE_LIMIT = 4096
# How management shows a session queue in direct delivery (RabbitMQ's MQTT QoS 0 queue type).
QOS0_QUEUE_TYPE = "mqtt-qos0"


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


@dataclass(slots=True)
class Outbound:
    """A QoS 1/2 message sent to the client and not yet completed."""

    packet_id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties
    delivery: Delivery | None  # None once PUBREC settled it in the queue (QoS 2, PUBREL sent)

    @property
    def awaiting_pubcomp(self) -> bool:
        return self.delivery is None


@dataclass(frozen=True, slots=True)
class _Match:
    qos: int
    identifiers: tuple[int, ...]
    retain_as_published: bool


# Per topic: what every matching subscription asks for, and what the ones without No Local
# ask for (the answer for the client's own messages) [MQTT-3.8.3-3].
_Matches = tuple[_Match | None, _Match | None]
_NO_MATCH: _Matches = (None, None)
_NO_IDS: frozenset[int] = frozenset()


class Session:
    """Subscriptions, in-flight messages and QoS 2 state of one client id.

    Every connected client has one, most of them idle (issue 7, S7): slots, and what only some
    sessions need (the queue name, QoS 2 state, the match cache) is made on first use.
    """

    __slots__ = (
        "_inbound_qos2",
        "_match_cache",
        "_next_packet_id",
        "_queue_name",
        "_resume_due",
        "attached_at",
        "batching",
        "client_id",
        "core",
        "dropped_deliveries",
        "expires_at",
        "expiry_interval",
        "handler",
        "hub",
        "inflight",
        "queue_declared",
        "subscriptions",
    )

    def __init__(self, hub: MqttHub, client_id: str, *, expiry_interval: int) -> None:
        self.hub = hub
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self._queue_name: str | None = None
        self.queue_declared = False
        self.subscriptions: dict[str, TopicSubscription] = {}  # by full filter ($share incl.)
        self.core: CoreSubscription | None = None  # consumer of the session queue
        self.inflight: dict[int, Outbound] = {}  # by packet id, oldest first
        self._inbound_qos2: set[int] | None = None
        self.handler: ClientHandler | None = None
        self.expires_at: float | None = None  # set while disconnected
        self.attached_at = 0.0  # when the current connection took the session
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

    def _match(self, topic: str, own: bool) -> _Match | None:
        """Subscriptions (not shared ones) that this topic matches, folded into one delivery:
        the highest QoS and every Subscription Identifier [MQTT-3.3.4-3, MQTT-3.3.4-5]."""
        cache = self._match_cache
        if cache is None:
            cache = self._match_cache = {}
        cached = cache.get(topic)
        if cached is None:
            cached = self._compute_match(topic)
            if len(cache) >= _MATCH_CACHE_LIMIT:
                cache.clear()
            cache[topic] = cached
        return cached[1] if own else cached[0]

    def _compute_match(self, topic: str) -> _Matches:
        found = [
            sub
            for sub in self.subscriptions.values()
            if sub.share_group is None and matches(sub.match_filter, topic)
        ]
        if not found:
            return _NO_MATCH
        return _fold(found), _fold([sub for sub in found if not sub.options.no_local])

    # -- core Consumer -----------------------------------------------------------------------

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

    def deliver(self, delivery: Delivery) -> None:
        handler = self.handler
        message = delivery.message
        annotations = message.annotations
        hub = self.hub
        view: MqttView = hub.view_of(message)
        retained_for = annotations.get(A_RETAINED_FOR)
        if retained_for is not None:
            # A retained message queued for one subscription when it was made: RETAIN stays
            # set whatever Retain As Published says [MQTT-3.3.1-9].
            sub = self.subscriptions.get(str(retained_for))
            if sub is None:
                delivery.queue.ack(delivery)
                return
            qos = min(view.qos, sub.options.qos)
            retain = True
            identifiers: tuple[int, ...] = () if sub.identifier is None else (sub.identifier,)
        else:
            topic = view.topic
            if A_TOPIC not in annotations and not _valid_topic_name(topic):
                # An AMQP routing key that makes no MQTT topic name ("" or, in rabbitmq
                # mode, one with `*`): sending it would break the client's connection.
                self._drop(delivery)
                return
            if hub.translator.mode == "rabbitmq" and message.exchange == hub.settings.exchange:
                topic = hub.translator.routing_key_to_topic(message.routing_key)
            shared = self._shared_subscription(delivery)
            if shared is not None:
                if not matches(shared.match_filter, topic):
                    # A $-topic bound through a leading wildcard [MQTT-4.7.2-1].
                    self._drop(delivery)
                    return
                qos = min(view.qos, shared.options.qos)
                retain = view.retain and shared.options.retain_as_published
                identifiers = () if shared.identifier is None else (shared.identifier,)
            else:
                match = self._match(topic, annotations.get(A_CLIENT) == self.client_id)
                if match is None:
                    # Bound through a key that MQTT matching rejects ($-topics under a leading
                    # wildcard), or only No Local subscriptions matched the client's own message.
                    self._drop(delivery)
                    return
                qos = min(view.qos, match.qos)
                retain = view.retain and match.retain_as_published
                identifiers = match.identifiers
        if handler is None:  # only while `restore_inflight` runs: can_accept() says so
            self._take_back(delivery, view, retain, identifiers)
            return
        props = view.properties
        if handler.protocol_level == MQTT_5:
            expiry = remaining_expiry(view.expiry_interval, delivery.entry.enqueued_at,
                                      hub.clock())  # fmt: skip
            if identifiers or expiry != props.message_expiry_interval:
                props = _with_delivery_fields(props, identifiers, expiry)
        else:
            props = EMPTY_PROPERTIES
        if qos == 0:
            if delivery.entry.enqueued_at < self.attached_at:
                # As Mosquitto (queue_qos0_messages false): QoS 0 traffic that arrived while
                # the client was away is not kept for it [MQTT-3.1.2-5 leaves it optional].
                self._drop(delivery)
                return
            delivery.queue.ack(delivery)
            if not handler.send_publish(view.topic, message.body, 0, retain, False, None, props):
                self.dropped_deliveries += 1
            return
        packet_id = self._allocate_packet_id()
        out = Outbound(packet_id, view.topic, message.body, qos, retain, props, delivery)
        # DUP is for a resend to this client on the same packet id (`resend_inflight`); a
        # message requeued elsewhere is a first delivery here [MQTT-3.3.1-3].
        if not handler.send_publish(view.topic, message.body, qos, retain, False, packet_id,
                                    props):  # fmt: skip
            # Larger than the client's Maximum Packet Size: discarded as if delivered
            # [MQTT-3.1.2-25].
            self._drop(delivery)
            return
        self.inflight[packet_id] = out
        if self.expiry_interval > 0 and message.persistent and delivery.queue.durable:
            # The store keeps the id with the message, for a resend after a restart.
            store = hub.session_store
            if store is not None:
                store.sent(self.client_id, delivery.queue, delivery.entry.seq, packet_id, qos)

    def deliver_direct(self, queue: Queue, message: Message) -> bool:
        """QoS 0 straight to the client (``Queue._offer``'s direct path). False for what needs
        the queue: a paused socket (unless [mqtt] qos0_overflow is "drop"), a retained copy,
        a routing key that needs checking, a remaining expiry to compute."""
        handler = self.handler
        if handler is None:
            return False
        if not handler.writable:
            if self.hub.settings.qos0_overflow != "drop":
                return False  # into the backlog, whose watermark holds the publishers
            queue.dropped += 1
            return True
        annotations = message.annotations
        if A_RETAINED_FOR in annotations:
            return False
        hub = self.hub
        view: MqttView = hub.view_of(message)
        topic = view.topic
        if A_TOPIC not in annotations and not _valid_topic_name(topic):
            return False  # an AMQP routing key that makes no topic name: deliver() drops it
        if hub.translator.mode == "rabbitmq" and message.exchange == hub.settings.exchange:
            topic = hub.translator.routing_key_to_topic(message.routing_key)
        match = self._match(topic, annotations.get(A_CLIENT) == self.client_id)
        if match is None:
            self.dropped_deliveries += 1  # No Local, or a $-topic under a leading wildcard
            return True
        props = view.properties
        if handler.protocol_level == MQTT_5:
            if view.expiry_interval is not None:
                return False
            if match.identifiers:
                props = _with_delivery_fields(props, match.identifiers, None)
        else:
            props = EMPTY_PROPERTIES
        retain = view.retain and match.retain_as_published
        if not forward_qos0(handler, view, message.body, retain, props):
            self.dropped_deliveries += 1
        return True

    def _drop(self, delivery: Delivery) -> None:
        self.dropped_deliveries += 1
        delivery.queue.ack(delivery)

    def _shared_subscription(self, delivery: Delivery) -> TopicSubscription | None:
        queue = delivery.queue
        core = self.core
        if core is not None and queue is core.queue:
            return None  # the session queue
        name = queue.name
        for sub in self.subscriptions.values():
            if sub.shared_queue == name:
                return sub
        return None

    def _allocate_packet_id(self) -> int:
        """Next free outbound identifier; ids in flight are never reused [MQTT-2.2.1-3]."""
        inflight = self.inflight
        candidate = self._next_packet_id
        while candidate in inflight:
            candidate = candidate + 1 if candidate < 0xFFFF else 1
        self._next_packet_id = candidate + 1 if candidate < 0xFFFF else 1
        return candidate

    def restore_inflight(self, outbound: Iterable[tuple[int, int, int]]) -> None:
        """Store recovery (session detached): the session queue's messages that were in
        flight to the client, ``(seq, packet id, qos)`` in send order, go back in flight under
        their packet ids; the client gets them first, with DUP, when it resumes the session
        [MQTT-4.4.0-1, MQTT-4.6.0-1]. They are the head of the queue; the first entry that is
        not one of them ends this (the rest go out as new deliveries, with new ids)."""
        pending = {seq: (packet_id, qos) for seq, packet_id, qos in outbound}
        if self.core is None or not pending:
            return
        hub = self.hub
        hub.restoring = (self, pending)
        try:
            self.core.resume()
        finally:
            hub.restoring = None

    def _take_back(
        self, delivery: Delivery, view: MqttView, retain: bool, identifiers: tuple[int, ...]
    ) -> None:
        hub = self.hub
        restoring = hub.restoring
        found = None
        if restoring is not None and restoring[0] is self and self.core is not None \
                and delivery.queue is self.core.queue:  # fmt: skip
            found = restoring[1].pop(delivery.entry.seq, None)
        if found is None or found[0] in self.inflight:
            # Not one that was in flight (or its id is taken): a new delivery later.
            hub.restoring = None
            delivery.queue.reject(delivery, requeue=True)
            return
        packet_id, qos = found
        props = view.properties
        expiry = remaining_expiry(view.expiry_interval, delivery.entry.enqueued_at, hub.clock())
        if identifiers or expiry != props.message_expiry_interval:
            props = _with_delivery_fields(props, identifiers, expiry)
        self.inflight[packet_id] = Outbound(packet_id, view.topic, delivery.message.body, qos,
                                            retain, props, delivery)  # fmt: skip
        # New ids continue after the restored ones (and never take one in flight).
        self._next_packet_id = packet_id + 1 if packet_id < 0xFFFF else 1

    # -- acknowledgements from the client ------------------------------------------------------

    def puback(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 1:
            return False
        del self.inflight[packet_id]
        if out.delivery is not None:
            out.delivery.queue.ack(out.delivery)
        self.resume()
        return True

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


def _valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def _fold(subscriptions: list[TopicSubscription]) -> _Match | None:
    if not subscriptions:
        return None
    identifiers = tuple(sub.identifier for sub in subscriptions if sub.identifier is not None)
    return _Match(
        max(sub.options.qos for sub in subscriptions),
        identifiers,
        any(sub.options.retain_as_published for sub in subscriptions),
    )


def _with_delivery_fields(
    props: Properties, identifiers: tuple[int, ...], expiry: int | None
) -> Properties:
    return Properties(
        payload_format_indicator=props.payload_format_indicator,
        message_expiry_interval=expiry,
        content_type=props.content_type,
        response_topic=props.response_topic,
        correlation_data=props.correlation_data,
        subscription_identifiers=identifiers,
        user_properties=props.user_properties,
    )
