"""The MQTT world of one gateway: sessions by client id, retained messages, pending wills.

Everything here is synchronous and takes its time from `clock`; the listener calls
`handle_timer()` when `next_timer()` says so (session expiry, Will Delay).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from gateway.bridge.convert import (
    A_CLIENT,
    A_PROPS,
    A_QOS,
    A_RETAIN,
    A_RETAINED_FOR,
    A_TOPIC,
    MqttView,
    message_from_publish,
)
from gateway.bridge.topics import RoutingKeyTooLong, TopicTranslator
from gateway.core.broker import Broker
from gateway.core.errors import CoreError
from gateway.core.message import Message
from gateway.core.users import UserDatabase
from gateway.core.vhost import RouteResult, VirtualHost
from gateway.mqtt.packets import Publish, ReasonCode, Will
from gateway.mqtt.retained import RetainedLimitExceeded, RetainedStore
from gateway.mqtt.session import Session


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """MQTT limits and choices; built by the listener from the config's [mqtt] table."""

    exchange: str = "amq.topic"
    vhost: str = "/"
    topic_mode: str = "strict"
    max_packet_size: int = 1024 * 1024
    max_inflight: int = 100
    max_queued_messages: int = 10_000
    max_connections: int = 100_000
    max_session_expiry: int = 7 * 86_400
    topic_alias_maximum: int = 64
    max_keepalive: int = 65535
    retained_max_count: int = 100_000
    retained_max_bytes: int = 256 * 1024 * 1024
    connect_timeout: float = 10.0


@dataclass(slots=True)
class RetainedValue:
    """What the retained store keeps: the MQTT view of the message and its payload."""

    view: MqttView
    payload: bytes


class PublishRefused(Exception):
    """A PUBLISH the gateway will not route; carries the MQTT 5 reason code."""

    def __init__(self, reason_code: ReasonCode, text: str) -> None:
        super().__init__(text)
        self.reason_code = reason_code
        self.text = text


@dataclass(slots=True)
class PendingWill:
    client_id: str
    will: Will
    generation: int


class MqttHub:
    def __init__(
        self,
        broker: Broker,
        users: UserDatabase,
        settings: MqttSettings,
        clock: Callable[[], float],
    ) -> None:
        self.broker = broker
        self.users = users
        self.settings = settings
        self.clock = clock
        self.vhost: VirtualHost = broker.vhost(settings.vhost)
        self.translator = TopicTranslator("rabbitmq" if settings.topic_mode == "rabbitmq" else
                                          "strict")  # fmt: skip
        self.sessions: dict[str, Session] = {}
        self.retained: RetainedStore[RetainedValue] = RetainedStore(
            max_count=settings.retained_max_count, max_bytes=settings.retained_max_bytes
        )
        self.connections = 0
        # (deadline, seq, kind, key): kind "will" or "expiry"; stale entries are skipped.
        self._timers: list[tuple[float, int, str, str]] = []
        self._timer_seq = itertools.count()
        self._wills: dict[str, PendingWill] = {}
        self._will_generation = itertools.count(1)
        self.stats = {"published": 0, "delivered": 0, "wills_sent": 0, "unroutable": 0}

    # -- sessions ----------------------------------------------------------------------------

    def assign_client_id(self) -> str:
        while True:
            candidate = "gw-" + secrets.token_hex(8)
            if candidate not in self.sessions:
                return candidate

    def queue_exists(self, name: str) -> bool:
        try:
            self.vhost.queue(name)
        except CoreError:
            return False
        return True

    def ensure_session_queue(self, session: Session) -> None:
        """Declare and consume the session queue the first time a subscription needs it."""
        if session.queue_declared and self.queue_exists(session.queue_name):
            return
        arguments: dict[str, object] = {
            "x-max-length": self.settings.max_queued_messages,
            "x-overflow": "drop-head",
        }
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
        if session.queue_declared and session.persistent and self.queue_exists(session.queue_name):
            self.vhost.delete_queue(session.queue_name)
        session.queue_declared = False

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
        if session.expiry_interval < 0xFFFFFFFF:
            session.expires_at = self.clock() + session.expiry_interval
            self._schedule(session.expires_at, "expiry", session.client_id)

    # -- wills -------------------------------------------------------------------------------

    def schedule_will(self, client_id: str, will: Will, delay: int, session_ends_in: float | None
                      ) -> None:  # fmt: skip
        """Publish now, or after Will Delay (or when the session ends, if sooner)."""
        if session_ends_in is not None:
            delay = min(delay, int(session_ends_in))
        if delay <= 0:
            self.publish_will(client_id, will)
            return
        pending = PendingWill(client_id, will, next(self._will_generation))
        self._wills[client_id] = pending
        self._schedule(self.clock() + delay, "will", client_id)

    def cancel_will(self, client_id: str) -> None:
        """A new connection for the client id arrived within Will Delay [MQTT-3.1.3-9]."""
        self._wills.pop(client_id, None)

    def publish_will(self, client_id: str, will: Will) -> None:
        publish = Publish(will.topic, will.payload, will.qos, will.retain, False, None,
                          will.properties)  # fmt: skip
        try:
            self.route_publish(publish, client_id)
            self.stats["wills_sent"] += 1
        except (PublishRefused, CoreError):
            pass  # nobody to tell: the client is gone

    # -- publishing --------------------------------------------------------------------------

    def route_publish(self, publish: Publish, client_id: str) -> RouteResult:
        """Route one PUBLISH through the core; retain handling included."""
        topic = publish.topic
        if topic.startswith("$SYS"):
            raise PublishRefused(ReasonCode.NOT_AUTHORIZED, "clients may not publish to $SYS")
        try:
            routing_key = self.translator.topic_to_routing_key(topic)
        except RoutingKeyTooLong as exc:
            raise PublishRefused(ReasonCode.TOPIC_NAME_INVALID, str(exc)) from None
        message = message_from_publish(
            publish, exchange=self.settings.exchange, routing_key=routing_key,
            client_id=client_id, translator=self.translator,
        )  # fmt: skip
        if publish.retain:
            self.store_retained(message, publish)
        self.stats["published"] += 1
        result = self.vhost.publish(self.settings.exchange, message)
        if not result.routed:
            self.stats["unroutable"] += 1
        return result

    def store_retained(self, message: Message, publish: Publish) -> None:
        props = publish.properties
        expires_at = None
        if props.message_expiry_interval is not None:
            expires_at = self.clock() + props.message_expiry_interval
        view = MqttView(publish.topic, publish.qos, True, props, props.message_expiry_interval)
        try:
            self.retained.set(
                publish.topic, RetainedValue(view, publish.payload), len(publish.payload),
                expires_at,
            )  # fmt: skip
        except RetainedLimitExceeded as exc:
            raise PublishRefused(ReasonCode.QUOTA_EXCEEDED, str(exc)) from None
        del message

    def send_retained(self, session: Session, full_filter: str, topic_filter: str) -> None:
        """Queue the retained messages matching a new subscription for this session only."""
        now = self.clock()
        for item in self.retained.match(topic_filter, now):
            value = item.value
            view = value.view
            expiry = view.expiry_interval
            expiration_ms = None
            if item.expires_at is not None and expiry is not None:
                left = max(0.001, item.expires_at - now)
                expiration_ms = int(left * 1000)
            annotations: dict[str, object] = {
                A_TOPIC: view.topic,
                A_QOS: view.qos,
                A_RETAIN: True,
                A_CLIENT: None,
                A_PROPS: view.properties,
                A_RETAINED_FOR: full_filter,
            }
            copy = Message(
                "", session.queue_name, value.payload, annotations=annotations,
                persistent=view.qos > 0, expiration_ms=expiration_ms,
            )  # fmt: skip
            # The default exchange reaches exactly this session's queue.
            self.vhost.publish("", copy)

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
                pending = self._wills.pop(key, None)
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
                    pending = self._wills.pop(key, None)
                    if pending is not None:
                        self.publish_will(key, pending.will)
                    self.discard_session(session)
