"""The session as a core consumer: messages from its queues to the client (DESIGN.md section 5).

`SessionDelivery` is the half of `Session` that the core calls: `deliver` for a message of the
session queue or of a shared queue (`deliver_each` for a batch from the backlog, as large as
the free in-flight window: `batch_credit`; `Session.deliver_many` takes the common case faster,
session_delivery_fast.py), `deliver_direct` for QoS 0 without the queue
(core/sinks.py), and the store recovery that takes in-flight messages back
(`restore_inflight`). Per delivery it
folds the matching subscriptions into one QoS, RETAIN and identifier set [MQTT-3.3.4-3,
MQTT-3.3.4-5], takes a packet identifier for QoS 1/2 and writes the PUBLISH; where nothing about
the PUBLISH is per subscriber the header comes from the message's view, encoded once per
message shape rather than once per delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
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
from gateway.mqtt.connection_states import ConnectionState
from gateway.mqtt.packets import EMPTY_PROPERTIES, MQTT_5, Properties
from gateway.mqtt.topics import matches

if TYPE_CHECKING:
    from gateway.core.consumers import Subscription as CoreSubscription
    from gateway.core.message import Message
    from gateway.core.queues import Queue
    from gateway.mqtt.session import TopicSubscription
    from gateway.mqtt.session_handler import ClientHandler
    from gateway.mqtt.session_hub import MqttHub

_MATCH_CACHE_LIMIT = 4096
# `on_output` tells the listener there is output: needed for the first PUBLISH after a drain
# (the others wait in the same buffer) and, for its early flush of a large backlog
# (FLUSH_EARLY_CHUNKS), now and then after that: whenever the chunk count is a multiple of 64.
_TELL_EVERY = 63
_CONNECTED = ConnectionState.CONNECTED
_NO_LIMIT = 1 << 62  # no Maximum Packet Size from the client
_new_outbound = object.__new__


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


class SessionDelivery:
    """What `Session` does as a core `Consumer` (a mixin: the state it writes is in its
    slots, what it reads is `Session`'s)."""

    __slots__ = ("_match_cache", "_next_packet_id", "dropped_deliveries")

    hub: MqttHub
    client_id: str
    handler: ClientHandler | None
    core: CoreSubscription | None
    subscriptions: dict[str, TopicSubscription]
    inflight: dict[int, Outbound]
    expiry_interval: int
    attached_at: float
    dropped_deliveries: int
    _next_packet_id: int
    _match_cache: dict[str, _Matches] | None

    def _matches(self, topic: str) -> _Matches:
        """Subscriptions (not shared ones) that this topic matches, folded into one delivery:
        the highest QoS and every Subscription Identifier [MQTT-3.3.4-3, MQTT-3.3.4-5]; for
        other clients' messages and for the client's own (the pair's second)."""
        cache = self._match_cache
        if cache is None:
            cache = self._match_cache = {}
        cached = cache.get(topic)
        if cached is None:
            cached = self._compute_match(topic)
            if len(cache) >= _MATCH_CACHE_LIMIT:
                cache.clear()
            cache[topic] = cached
        return cached

    def _compute_match(self, topic: str) -> _Matches:
        found = [
            sub
            for sub in self.subscriptions.values()
            if sub.share_group is None and matches(sub.match_filter, topic)
        ]
        if not found:
            return _NO_MATCH
        folded = _fold(found)
        if not any(sub.options.no_local for sub in found):
            # One object for both: a delivery need not ask whose message it is.
            return folded, folded
        return folded, _fold([sub for sub in found if not sub.options.no_local])

    def batch_credit(self) -> int:
        """The most a queue's batch may hand over (core/dispatch.py `credit_of`, asked after
        `can_accept`): the free in-flight window, so a batch never overfills it."""
        handler = self.handler
        if handler is None:
            return 1  # store recovery takes in-flight messages back one at a time
        return handler.window - len(self.inflight)

    def deliver_each(self, deliveries: list[Delivery]) -> None:
        """A batch from a queue's backlog (the refill after a read of PUBACKs), in order: the
        queue asked `can_accept` once for all of them, and `batch_credit` bounded them. Each
        goes through `deliver`: the general path, which `Session.deliver_many`
        (session_delivery_fast.py) takes for a batch or a message its fast path does not
        cover."""
        deliver = self.deliver
        done = 0
        try:
            for delivery in deliveries:
                deliver(delivery)
                done += 1
        except BaseException:
            # An internal error mid-batch: what the batch did not reach goes back to its queue
            # (requeued, so marked redelivered) instead of staying taken; the error propagates.
            rest = [d for d in deliveries[done + 1 :] if not d.settled]
            if rest:
                rest[0].queue.requeue(rest)
            raise

    def deliver(self, delivery: Delivery) -> None:
        handler = self.handler
        message = delivery.entry.message
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
            if hub.rabbitmq_topics and message.exchange == hub.settings.exchange:
                topic = hub.translator.routing_key_to_topic(message.routing_key)
            core = self.core
            shared = None
            if core is None or delivery.queue is not core.queue:
                shared = self._shared_subscription(delivery)
            if shared is None:  # the session queue
                cache = self._match_cache
                cached = None if cache is None else cache.get(topic)
                if cached is None:
                    cached = self._matches(topic)
                match = cached[0]
                if match is not cached[1] and annotations.get(A_CLIENT) == self.client_id:
                    match = cached[1]  # the client's own message: No Local applies
                if match is None:
                    # Bound through a key that MQTT matching rejects ($-topics under a leading
                    # wildcard), or only No Local subscriptions matched the client's own message.
                    self._drop(delivery)
                    return
                view_qos = view.qos
                qos = match.qos if match.qos < view_qos else view_qos
                retain = view.retain and match.retain_as_published
                identifiers = match.identifiers
            else:
                if not matches(shared.match_filter, topic):
                    # A $-topic bound through a leading wildcard [MQTT-4.7.2-1].
                    self._drop(delivery)
                    return
                qos = min(view.qos, shared.options.qos)
                retain = view.retain and shared.options.retain_as_published
                identifiers = () if shared.identifier is None else (shared.identifier,)
        if handler is None:  # only while `restore_inflight` runs: can_accept() says so
            self._take_back(delivery, view, retain, identifiers)
            return
        props = view.properties
        v5 = handler.protocol_level == MQTT_5
        if v5:
            expiry = view.expiry_interval
            if expiry is not None:
                expiry = remaining_expiry(expiry, delivery.entry.enqueued_at, hub.clock())
            if identifiers or expiry != props.message_expiry_interval:
                props = _with_delivery_fields(props, identifiers, expiry)
        else:
            props = EMPTY_PROPERTIES
        body = message.body
        if qos == 0:
            if delivery.entry.enqueued_at < self.attached_at:
                # As Mosquitto (queue_qos0_messages false): QoS 0 traffic that arrived while
                # the client was away is not kept for it [MQTT-3.1.2-5 leaves it optional].
                self._drop(delivery)
                return
            delivery.queue.ack(delivery)
            if not handler.send_publish(view.topic, body, 0, retain, False, None, props):
                self.dropped_deliveries += 1
            return
        # The next free packet id; ids in flight are never reused [MQTT-2.2.1-3].
        inflight = self.inflight
        packet_id = self._next_packet_id
        while packet_id in inflight:
            packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
        self._next_packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
        # DUP is for a resend to this client on the same packet id (`resend_inflight`); a
        # message requeued elsewhere is a first delivery here [MQTT-3.3.1-3].
        conn = handler.conn
        if conn.client_topic_alias_maximum or (v5 and props is not view.properties):
            # Something per subscriber (an outbound Topic Alias, Subscription Identifiers,
            # a remaining expiry): encoded for this delivery alone.
            sent = handler.send_publish(view.topic, body, qos, retain, False, packet_id, props)
        else:
            queued = conn.send_encoded(
                view.acked_header(len(body), qos, retain, v5, packet_id), body
            )
            sent = queued > 0
            if sent:
                hub.stats["delivered"] += 1
                if queued <= 2 or not queued & _TELL_EVERY:
                    handler.on_output()
        if not sent:
            # Larger than the client's Maximum Packet Size: discarded as if delivered
            # [MQTT-3.1.2-25].
            self._drop(delivery)
            return
        # Outbound(packet_id, view.topic, body, qos, retain, props, delivery) without the
        # constructor call: one per QoS 1/2 delivery.
        out: Outbound = _new_outbound(Outbound)
        out.packet_id = packet_id
        out.topic = view.topic
        out.payload = body
        out.qos = qos
        out.retain = retain
        out.properties = props
        out.delivery = delivery
        inflight[packet_id] = out
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
        if hub.rabbitmq_topics and message.exchange == hub.settings.exchange:
            topic = hub.translator.routing_key_to_topic(message.routing_key)
        return self._forward_qos0(handler, view, topic, message.body, annotations.get(A_CLIENT))

    def deliver_packet(
        self, queue: Queue, packet: tuple[str, bytes, str, MqttView, bytes | None, int]
    ) -> bool:
        """`deliver_direct` of a plain QoS 0 PUBLISH that no ``Message`` was built for
        (core/routing.py `offer_packet`): ``packet`` is the hub's ``(topic, payload, publisher
        client id, view, raw, raw level)``, the view one of `plain_views(topic)` that
        `hub.view_of` would give its message (the hub sends packets only when no mapping rule
        or rabbitmq topic mode could make them differ); ``raw``, when not None, the whole
        PUBLISH as the publisher sent it at protocol level ``raw level``."""
        handler = self.handler
        if handler is None:
            return False
        if not handler.writable:
            if self.hub.settings.qos0_overflow != "drop":
                return False
            queue.dropped += 1
            return True
        topic, body, sender, view, raw, raw_level = packet
        if raw_level != handler.protocol_level:
            raw = None  # another version's encoding: the header is made for this client
        taken = self._forward_qos0(handler, view, topic, body, sender, raw)
        written = self.hub.raw_written
        if written is not None and taken:
            # Recorded for a `RawFanout` (session_fanout.py): the queue took the packet, after
            # this session if it wrote the publisher's bytes (`_forward_qos0`).
            written.append(queue)
        return taken

    def _forward_qos0(
        self, handler: ClientHandler, view: MqttView, topic: str, body: bytes, sender: object,
        raw: bytes | None = None,
    ) -> bool:  # fmt: skip
        """The QoS 0 forward of `deliver_direct` once the message is known to fit it: match,
        No Local (``sender`` is the publisher's client id), header, append. ``raw``: the
        PUBLISH as its publisher sent it, in this client's protocol level, written as it is
        when nothing about it is per subscriber and nothing is queued before it."""
        cache = self._match_cache
        cached = None if cache is None else cache.get(topic)
        if cached is None:
            cached = self._matches(topic)
        match = cached[0]
        if match is not cached[1] and sender == self.client_id:
            match = cached[1]  # the client's own message: No Local applies
        if match is None:
            self.dropped_deliveries += 1  # No Local, or a $-topic under a leading wildcard
            return True
        props = view.properties
        v5 = handler.protocol_level == MQTT_5
        if v5:
            if view.expiry_interval is not None:
                return False
            if match.identifiers:
                props = _with_delivery_fields(props, match.identifiers, None)
        else:
            props = EMPTY_PROPERTIES
        retain = view.retain and match.retain_as_published
        conn = handler.conn
        if conn.client_topic_alias_maximum or (v5 and props is not view.properties):
            # Something per subscriber (an outbound Topic Alias, Subscription Identifiers).
            sent = handler.send_publish(view.topic, body, 0, retain, False, None, props)
        else:
            if (
                raw is not None
                and not retain
                and conn.state is _CONNECTED
                and (conn.client_maximum_packet_size or _NO_LIMIT) >= len(raw)
                and handler.owner.write_now(raw)
            ):
                # The publisher's own bytes, unchanged: a plain QoS 0 PUBLISH without RETAIN
                # is what this subscriber would be sent (issue 7, S6).
                hub = self.hub
                hub.stats["delivered"] += 1
                written = hub.raw_written
                if written is not None:  # recorded for a `RawFanout` (`deliver_packet`)
                    written.append(self)
                return True
            # The header the view caches per payload size, RETAIN and version: the bytes the
            # publisher sent, with the QoS 0 flags, encoded once for a whole fan-out
            # (DESIGN.md section 9).
            queued = conn.send_encoded(view.qos0_header(len(body), retain, v5), body)
            sent = queued > 0
            if sent:
                self.hub.stats["delivered"] += 1
                if queued <= 2 or not queued & _TELL_EVERY:
                    handler.on_output()
        if not sent:
            self.dropped_deliveries += 1  # too large for the client, or it is gone
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
