"""The MQTT world of one gateway: sessions by client id, retained messages, pending wills.

Everything here is synchronous and takes its time from `clock`; the listener calls
`handle_timer()` when `next_timer()` says so (session expiry, Will Delay).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.bridge.convert import (
    MqttView,
    message_from_plain_publish,
    message_from_publish,
    message_qos,
    plain_views,
    view_function,
)
from gateway.bridge.mapping_rules import EMPTY as NO_MAPPINGS
from gateway.bridge.mapping_rules import MappingSet
from gateway.bridge.mappings import PublishRoute, TopicMap, force_delivery_mode
from gateway.bridge.topics import RoutingKeyTooLong, TopicTranslator
from gateway.core.broker import Broker
from gateway.core.errors import CoreError
from gateway.core.message import Message
from gateway.core.routing import ACCEPTED, UNROUTABLE, offer_packet, offer_rest, route_targets
from gateway.core.users import UserDatabase
from gateway.core.vhost import VirtualHost
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    Properties,
    Publish,
    ReasonCode,
    Will,
    make_publish,
)
from gateway.mqtt.retained import RetainedLimitExceeded, RetainedStore
from gateway.mqtt.session import Outbound, Session, TopicSubscription
from gateway.mqtt.session_delivery import SessionDelivery
from gateway.mqtt.session_fanout import RawFanout, RawTarget
from gateway.mqtt.session_hub_types import (
    MqttSettings,
    PendingWill,
    PublishRefused,
    SessionStore,
    WillStore,
)
from gateway.mqtt.session_retained import HubRetained, RetainedValue
from gateway.store.mqtt_sessions import StoredSession

if TYPE_CHECKING:
    from gateway.core.queues import Queue
    from gateway.mqtt.session_handler import ClientHandler

__all__ = [
    "MqttHub",
    "MqttSettings",
    "PendingWill",
    "PublishRefused",
    "RetainedValue",  # kept in session_retained.py; the store's golden files name it here
    "SessionStore",
    "WillStore",
]

_NO_PACKET_LIMIT = 1 << 28  # above the largest MQTT packet
_PLAIN_ROUTES_MAX = 4096  # topics; the cache is cleared when full, which only costs misses


class _PlainRoute:
    """Where PUBLISHes to one topic on the default path go; for QoS 0, also the queues its
    routing key reached at ``version`` (the vhost's ``routing_version``), -1 for none yet;
    for QoS 1/2 the same in ``acked_targets`` and ``acked_version`` (a QoS 1 message always
    gets a ``Message``, so any key-routed route may be kept: `route_targets`)."""

    __slots__ = ("acked_targets", "acked_version", "exchange", "routing_key", "targets",
                 "version", "views")  # fmt: skip

    def __init__(self, exchange: str, routing_key: str, views: tuple[MqttView, ...]) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.views = views
        self.version = -1
        self.targets: tuple[Queue, ...] = ()
        self.acked_version = -1
        self.acked_targets: tuple[Queue, ...] = ()


def _not_qos0(message: Message) -> bool:
    return message_qos(message) > 0


class MqttHub(HubRetained):
    def __init__(
        self,
        broker: Broker,
        users: UserDatabase,
        settings: MqttSettings,
        clock: Callable[[], float],
        mappings: MappingSet = NO_MAPPINGS,
    ) -> None:
        self.broker = broker
        self.users = users
        self.settings = settings
        self.clock = clock
        self.vhost: VirtualHost = broker.vhost(settings.vhost)
        self.translator = TopicTranslator("rabbitmq" if settings.topic_mode == "rabbitmq" else
                                          "strict")  # fmt: skip
        # rabbitmq topic mode: a delivery's topic is read back from its routing key.
        self.rabbitmq_topics = self.translator.mode == "rabbitmq"
        # Mapping rules (gateway/bridge/mappings.py): where publishes go, what subscriptions
        # bind, and the topic a message on a rule's exchange is seen under.
        self.topic_map = TopicMap(self.translator, mappings, exchange=settings.exchange)
        self.view_of: Callable[[Message], MqttView] = self.topic_map.view
        if not self.topic_map.has_rules:
            # No rule reads a key back: the plain `mqtt_view`, in one call per delivery.
            self.view_of = view_function(self.translator)
        # topic -> (exchange, routing key, plain views) of topics on the default path (no
        # rule policy, not $SYS): one look-up per PUBLISH. topic_map never changes.
        self._plain_routes: dict[str, _PlainRoute] = {}
        # QoS 0 plain publishes may skip the Message (`route_plain`) when `view_of` gives a
        # message the plain view it was built with, and the topic a subscriber matches is
        # that view's (no rule maps it back, no rabbitmq-mode key reading).
        self._qos0_packets = not self.topic_map.has_rules and not self.rabbitmq_topics
        # While a lone QoS 0 PUBLISH is routed for a `RawFanout` (session_fanout.py): each
        # queue that took it as a packet, in order, after its session if that session wrote
        # the publisher's bytes (`SessionDelivery.deliver_packet` and `_forward_qos0` append).
        self.raw_written: list[Queue | SessionDelivery] | None = None
        # Set by the composition root: delivers to an AMQP direct reply-to consumer
        # (`amq.rabbitmq.reply-to.<token>`), which is a channel, not a queue.
        self.direct_reply: Callable[[str, Message], bool] | None = None
        self.sessions: dict[str, Session] = {}
        # Set by the store: told when a persistent session's durable state changes or ends.
        self.session_store: SessionStore | None = None
        self.will_store: WillStore | None = None
        self._stored_sessions: set[str] = set()
        # While store recovery hands a session its in-flight messages back
        # (`Session.restore_inflight`): that session and {queue seq: (packet id, qos)}.
        self.restoring: tuple[SessionDelivery, dict[int, tuple[int, int]]] | None = None
        self.retained: RetainedStore[RetainedValue] = RetainedStore(
            max_count=settings.retained_max_count, max_bytes=settings.retained_max_bytes
        )
        self.connections = 0
        # (deadline, seq, kind, key): kind "will" or "expiry"; stale entries are skipped.
        self._timers: list[tuple[float, int, str, str]] = []
        self._timer_seq = itertools.count()
        # Wills waiting out their Will Delay, by client id (read-only outside the hub).
        self.delayed_wills: dict[str, PendingWill] = {}
        self._will_generation = itertools.count(1)
        self.stats = {
            "published": 0,
            "delivered": 0,
            "wills_sent": 0,
            "unroutable": 0,
            "refused": 0,  # PUBLISHes not taken (not authorised, bad payload, quota)
            "retained_refused": 0,  # AMQP-side retains past the store's limits
        }

    # -- sessions ----------------------------------------------------------------------------

    def assign_client_id(self) -> str:
        while True:
            candidate = "gw-" + secrets.token_hex(8)
            if candidate not in self.sessions:
                return candidate

    def match_filter(self, topic_filter: str, binding_key: str) -> str:
        """The filter deliveries are matched against: in rabbitmq mode a `.` inside a level
        splits it, so the filter is compared in the form its binding key gives it."""
        if self.translator.mode == "rabbitmq":
            return self.translator.routing_key_to_topic(binding_key)
        return topic_filter

    def queue_exists(self, name: str) -> bool:
        try:
            self.vhost.queue(name)
        except CoreError:
            return False
        return True

    def queue_arguments(self) -> dict[str, object]:
        """Session and shared-subscription queues keep at most `max_queued_messages`; past
        that the oldest go, so a client away for long gets the most recent traffic."""
        return {"x-max-length": self.settings.max_queued_messages, "x-overflow": "drop-head"}

    def ensure_session_queue(self, session: Session) -> None:
        """Declare and consume the session queue the first time a subscription needs it."""
        if session.queue_declared and self.queue_exists(session.queue_name):
            return
        arguments = self.queue_arguments()
        if session.persistent:
            self.vhost.declare_queue(session.queue_name, durable=True, arguments=arguments)
        else:
            self.vhost.declare_queue(
                session.queue_name, exclusive=True, owner=session, arguments=arguments
            )
        session.queue_declared = True
        if session.core is None or not session.core.active:
            session.core = self.vhost.consume(
                session.queue_name, session, tag=f"mqtt-{session.client_id}", no_ack=False,
                owner=session,
            )  # fmt: skip

    def bind_all(self, queue: str, bindings: tuple[tuple[str, str], ...], owner: object) -> None:
        """Bind a queue for one subscription (one binding per exchange mapping rules give):
        all of them, or none when a rule's exchange does not exist (CoreError)."""
        for exchange, _ in bindings:
            self.vhost.exchange(exchange)
        for exchange, key in bindings:
            self.vhost.bind_queue(queue, exchange, key, owner=owner)

    def discard_session(self, session: Session) -> None:
        """End a session for good: its queue, bindings, shared memberships and state."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        for sub in list(session.subscriptions.values()):
            if sub.core is not None and sub.core.active:
                sub.core.cancel(requeue_unacked=True)
        session.requeue_inflight()
        session.subscriptions.clear()
        if session.core is not None and session.core.active:
            session.core.cancel(requeue_unacked=True)
        session.core = None
        self.vhost.owner_closed(session)
        # A session may have changed its expiry since it declared the queue (DISCONNECT with
        # Session Expiry 0): delete whatever kind of queue it has.
        if session.queue_declared:
            with contextlib.suppress(CoreError):
                self.vhost.delete_queue(session.queue_name, owner=session)
        session.queue_declared = False
        if session.client_id in self._stored_sessions and self.session_store is not None:
            self._stored_sessions.discard(session.client_id)
            self.session_store.discarded(session.client_id)

    def session_detached(self, session: Session) -> None:
        """The client went away; a persistent session waits for it until it expires."""
        session.detach()
        # Shared subscriptions hand their unacked messages to the other members now.
        for sub in session.subscriptions.values():
            if sub.core is not None:
                sub.core.requeue_unacked()
        for packet_id, out in list(session.inflight.items()):
            if out.delivery is not None and out.delivery.settled:
                del session.inflight[packet_id]
        if not session.persistent:
            self.discard_session(session)
            return
        self._set_offline_policy(session, offline=True)
        if session.expiry_interval < 0xFFFFFFFF:
            session.expires_at = self.clock() + session.expiry_interval
            self._schedule(session.expires_at, "expiry", session.client_id)
        self.session_changed(session)

    def _set_offline_policy(self, session: Session, *, offline: bool) -> None:
        """While the client is away its queue takes no QoS 0 messages (as Mosquitto's
        queue_qos0_messages false): a burst of them cannot push queued QoS 1/2 messages out."""
        if not session.queue_declared:
            return
        try:
            queue = self.vhost.queue(session.queue_name)
        except CoreError:
            return
        queue.admit = _not_qos0 if offline else None

    def session_attached(self, session: Session) -> None:
        self._set_offline_policy(session, offline=False)
        self.session_changed(session)

    # -- persistence -------------------------------------------------------------------------

    def session_changed(self, session: Session) -> None:
        """Subscriptions, expiry or QoS 2 state changed: the store keeps persistent ones."""
        store = self.session_store
        if store is None or self.sessions.get(session.client_id) is not session:
            return
        if session.persistent:
            self._stored_sessions.add(session.client_id)
            store.saved(session)
        elif session.client_id in self._stored_sessions:
            self._stored_sessions.discard(session.client_id)
            store.discarded(session.client_id)

    def restore_session(self, stored: StoredSession) -> None:
        """A persistent session recovered from the store, detached until its client returns
        (its queue and bindings were recovered with the core). $share subscriptions are not
        kept: their queues are not durable."""
        client_id = stored.client_id
        session = Session(self, client_id, expiry_interval=stored.expiry_interval)
        for sub in stored.subscriptions:
            session.subscriptions[sub.full_filter] = TopicSubscription(
                sub.topic_filter, sub.subscription_options, sub.identifier, sub.binding_key,
                match_filter=sub.match_filter, bindings=sub.bindings,
            )  # fmt: skip
        for packet_id in stored.inbound_qos2:
            session.hold_inbound_qos2(packet_id)
        for packet_id in stored.outbound_pubrel:
            # PUBREC'd before the restart: the reconnecting client gets its PUBREL first.
            session.inflight[packet_id] = Outbound(packet_id, "", b"", 2, False,
                                                   EMPTY_PROPERTIES, None)  # fmt: skip
        self.sessions[client_id] = session
        self._stored_sessions.add(client_id)
        if self.queue_exists(session.queue_name):
            session.queue_declared = True
            session.core = self.vhost.consume(
                session.queue_name, session, tag=f"mqtt-{client_id}", no_ack=False,
                owner=session,
            )  # fmt: skip
            session.core.pushback = False  # offline: holds no publishers (core/flow.py)
            self._set_offline_policy(session, offline=True)
            session.restore_inflight(stored.outbound)
        session.expires_at = stored.expires_at
        if stored.expires_at is not None:
            self._schedule(stored.expires_at, "expiry", client_id)

    def forget_sessionless_queues(self) -> None:
        """Delete recovered session queues whose session ended while the gateway was down
        (or was never stored): a clean session of that client id must be able to take the
        name as its exclusive queue."""
        live = {session.queue_name for session in self.sessions.values()}
        for queue in self.vhost.queues():
            if queue.name.startswith("mqtt-subscription-") and queue.name not in live:
                with contextlib.suppress(CoreError):
                    self.vhost.delete_queue(queue.name)

    # -- wills -------------------------------------------------------------------------------

    def schedule_will(self, client_id: str, will: Will, delay: int, session_ends_in: float | None
                      ) -> None:  # fmt: skip
        """Publish now, or after Will Delay (or when the session ends, if sooner)."""
        if session_ends_in is not None:
            delay = min(delay, int(session_ends_in))
        if delay <= 0:
            self.publish_will(client_id, will)
            return
        due = self.clock() + delay
        self.restore_will(client_id, will, due)
        if self.will_store is not None:
            self.will_store.saved(client_id, will, due)

    def restore_will(self, client_id: str, will: Will, due: float) -> None:
        """Hold ``will`` for ``client_id`` until ``due`` (also a will recovered from the store)."""
        self.delayed_wills[client_id] = PendingWill(client_id, will, next(self._will_generation))
        self._schedule(due, "will", client_id)

    def _pop_will(self, client_id: str) -> PendingWill | None:
        pending = self.delayed_wills.pop(client_id, None)
        if pending is not None and self.will_store is not None:
            self.will_store.discarded(client_id)
        return pending

    def pending_will(self, client_id: str) -> Will | None:
        """The will waiting out its Will Delay for this client id, if any."""
        pending = self.delayed_wills.get(client_id)
        return None if pending is None else pending.will

    def take_pending_will(self, client_id: str) -> Will | None:
        """A new connection for the client id arrived within Will Delay: the delayed will is
        no longer due [MQTT-3.1.3-9]; the caller publishes it if the session ends now."""
        pending = self._pop_will(client_id)
        return None if pending is None else pending.will

    def publish_will(self, client_id: str, will: Will) -> None:
        props = will.properties
        if props is not EMPTY_PROPERTIES:
            # Will Delay Interval belongs to the will, not to the message subscribers get.
            props = Properties(
                payload_format_indicator=props.payload_format_indicator,
                message_expiry_interval=props.message_expiry_interval,
                content_type=props.content_type,
                response_topic=props.response_topic,
                correlation_data=props.correlation_data,
                user_properties=props.user_properties,
            )
        publish = Publish(will.topic, will.payload, will.qos, will.retain, False, None, props)
        try:
            self.route_publish(publish, client_id)
            self.stats["wills_sent"] += 1
        except (PublishRefused, CoreError):
            pass  # nobody to tell: the client is gone

    # -- publishing --------------------------------------------------------------------------

    def route_publish(self, publish: Publish, client_id: str) -> int:
        """Route one PUBLISH through the core; retain handling included. The verdict is
        ``VirtualHost.publish_outcome``'s (core/routing.py: UNROUTABLE, ACCEPTED, REFUSED)."""
        topic = publish.topic
        plain = self._plain_routes.get(topic)
        if plain is None:
            if topic == "$SYS" or topic.startswith("$SYS/"):
                raise PublishRefused(ReasonCode.NOT_AUTHORIZED, "clients may not publish to $SYS")
            try:
                route = self.topic_map.route(topic)
            except RoutingKeyTooLong as exc:
                raise PublishRefused(ReasonCode.TOPIC_NAME_INVALID, str(exc)) from None
            if route.special:
                return self._route_special(publish, client_id, route)
            # Only the default path is cached: a topic found here passed the checks above.
            if len(self._plain_routes) >= _PLAIN_ROUTES_MAX:
                self._plain_routes.clear()
            plain = self._plain_routes[topic] = _PlainRoute(
                route.exchange, route.routing_key, plain_views(topic, self.translator)
            )
        exchange = plain.exchange
        routing_key = plain.routing_key
        views = plain.views
        if publish.properties is EMPTY_PROPERTIES:
            message = message_from_plain_publish(
                exchange, routing_key, topic, publish.payload, publish.qos, publish.retain,
                client_id, views,
            )  # fmt: skip
        else:
            message = message_from_publish(
                publish, exchange=exchange, routing_key=routing_key,
                client_id=client_id, translator=self.translator,
            )  # fmt: skip
        if publish.retain:
            self.store_retained(message, publish)
        self.stats["published"] += 1
        outcome = self.vhost.publish_outcome(exchange, message)
        if outcome == UNROUTABLE:
            self.stats["unroutable"] += 1
        return outcome

    def route_plain(
        self, topic: str, payload: bytes, client_id: str, qos: int,
        raw: bytes | None = None, raw_level: int = 0,
    ) -> int:  # fmt: skip
        """`route_publish` of a PUBLISH without DUP, RETAIN or properties. QoS 0 to queues
        whose direct sinks forward the publisher's bytes (clean-session QoS 0 subscribers)
        builds no ``Message``: the queues come from the route cached for the topic while the
        vhost's routing is unchanged, the first one that needs a ``Message`` gets one. ``raw``:
        the whole PUBLISH as the publisher sent it (protocol level ``raw_level``), which a
        subscriber of that level may be sent as it is (`SessionDelivery.deliver_packet`)."""
        plain = self._plain_routes.get(topic)
        if plain is None:  # not seen yet, or not on the default path: the full way
            # (Routing never reads the packet id.)
            publish = make_publish(topic, payload, qos, False, False, None, EMPTY_PROPERTIES)
            return self.route_publish(publish, client_id)
        vhost = self.vhost
        if not qos and plain.version == vhost.routing_version:
            self.stats["published"] += 1
            targets = plain.targets
            if not targets:
                self.stats["unroutable"] += 1
                return UNROUTABLE
            start = offer_packet(
                targets, (topic, payload, client_id, plain.views[0], raw, raw_level)
            )
            if start == len(targets):
                return ACCEPTED
            message = message_from_plain_publish(
                plain.exchange, plain.routing_key, topic, payload, 0, False, client_id,
                plain.views,
            )  # fmt: skip
            return offer_rest(vhost, targets, start, message)
        exchange = plain.exchange
        message = message_from_plain_publish(
            exchange, plain.routing_key, topic, payload, qos, False, client_id, plain.views
        )
        self.stats["published"] += 1
        version = vhost.routing_version
        if qos and plain.acked_version == version:
            # QoS 1: the queues cached for the topic, offered as `publish_outcome` would.
            targets = plain.acked_targets
            if not targets:
                self.stats["unroutable"] += 1
                return UNROUTABLE
            return offer_rest(vhost, targets, 0, message)
        outcome = vhost.publish_outcome(exchange, message)
        if outcome == UNROUTABLE:
            self.stats["unroutable"] += 1
        if qos:
            if vhost.routing_version == version:
                found = route_targets(vhost, exchange, message)
                if found is not None:
                    plain.acked_targets = found
                    plain.acked_version = version
            return outcome
        if self._qos0_packets and vhost.routing_version == version:
            # Remember the queues for the next QoS 0 PUBLISH to this topic.
            found = route_targets(vhost, exchange, message)
            if found is not None and plain.views[0].routing_key == plain.routing_key:
                plain.targets = found
                plain.version = version
        return outcome

    def raw_fanout(self, handler: ClientHandler, topic: str,
                   written: list[Queue | SessionDelivery]) -> RawFanout | None:  # fmt: skip
        """The `RawFanout` of the lone QoS 0 PUBLISH to ``topic`` that ``handler``'s read just
        routed (``written``: what `raw_written` recorded), if every queue it reached took it as
        a packet; None otherwise (a queue needed a ``Message``, or it was not routed through
        the cached queues)."""
        plain = self._plain_routes.get(topic)
        if plain is None or plain.version != self.vhost.routing_version:
            return None  # not routed through the cached queues (`route_plain`)
        queues = plain.targets
        targets: list[RawTarget] = []
        raw_session: SessionDelivery | None = None
        for item in written:
            if isinstance(item, SessionDelivery):
                raw_session = item
                continue
            index = len(targets)
            session = item._direct
            if index >= len(queues) or item is not queues[index] or not isinstance(
                session, SessionDelivery
            ):  # fmt: skip
                return None
            client = session.handler
            if client is None:
                return None
            conn = client.conn
            limit = -1  # not the bytes: `deliver_packet` each time
            if raw_session is session:
                limit = conn.client_maximum_packet_size or _NO_PACKET_LIMIT
            targets.append((item, session, client, session._match_cache, conn, client.owner,
                            limit))  # fmt: skip
            raw_session = None
        if len(targets) != len(queues):
            return None
        return RawFanout(handler, handler.conn.decoder, topic, plain.views[0], tuple(targets))

    def _route_special(self, publish: Publish, client_id: str, route: PublishRoute
                       ) -> int:  # fmt: skip
        """A mapping rule's QoS policy, or a reply to an AMQP direct reply-to consumer."""
        if publish.qos > route.qos_max:
            publish = dataclasses.replace(publish, qos=route.qos_max)  # the rule's QoS cap
        message = message_from_publish(
            publish, exchange=route.exchange, routing_key=route.routing_key,
            client_id=client_id, translator=self.translator,
        )  # fmt: skip
        if route.delivery_mode is not None:
            force_delivery_mode(message, route.delivery_mode)
        if publish.retain:
            self.store_retained(message, publish)
        self.stats["published"] += 1
        if route.direct_reply:
            hook = self.direct_reply
            routed = hook is not None and hook(route.routing_key, message)
            outcome = ACCEPTED if routed else UNROUTABLE
        else:
            outcome = self.vhost.publish_outcome(route.exchange, message)
        if outcome == UNROUTABLE:
            self.stats["unroutable"] += 1
        return outcome

    def store_retained(self, message: Message, publish: Publish) -> None:
        """A PUBLISH with RETAIN: kept (or cleared), or refused past the store's limits."""
        try:
            self.keep_retained(message, publish)
        except RetainedLimitExceeded as exc:
            raise PublishRefused(ReasonCode.QUOTA_EXCEEDED, str(exc)) from None

    # -- timers ------------------------------------------------------------------------------

    def _schedule(self, deadline: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (deadline, next(self._timer_seq), kind, key))

    def next_timer(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def handle_timer(self) -> None:
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(timers)
            if kind == "will":
                pending = self._pop_will(key)
                if pending is not None:
                    self.publish_will(key, pending.will)
            else:
                session = self.sessions.get(key)
                if (
                    session is not None
                    and session.handler is None
                    and session.expires_at is not None
                    and session.expires_at <= now
                ):
                    pending = self._pop_will(key)
                    if pending is not None:
                        self.publish_will(key, pending.will)
                    self.discard_session(session)
