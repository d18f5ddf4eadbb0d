"""SUBSCRIBE and UNSUBSCRIBE of one connection (DESIGN.md section 5).

A plain subscription binds the session queue (declared at the first one) once per exchange the
topic map gives the filter; a `$share/<group>/<filter>` subscription consumes one shared queue
per (group, filter). SUBACK/UNSUBACK of a persistent session wait until the change is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING

from gateway.bridge.topics import RoutingKeyTooLong
from gateway.core.errors import CoreError
from gateway.mqtt.codec_errors import InvalidTopic
from gateway.mqtt.packets import (
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
)
from gateway.mqtt.session import Session, TopicSubscription
from gateway.mqtt.session_acks import written, written_since
from gateway.mqtt.topics import parse_shared_subscription, validate_topic_filter

if TYPE_CHECKING:
    from gateway.mqtt.session_handler import ClientHandler


def on_subscribe(handler: ClientHandler, packet: Subscribe) -> None:
    session = handler.session
    assert session is not None
    hub = handler.hub
    identifiers = packet.properties.subscription_identifiers
    identifier = identifiers[0] if identifiers else None
    before = written(hub.broker)
    codes: list[ReasonCode] = []
    retained_for: list[tuple[str, str]] = []
    for full_filter, options in packet.subscriptions:
        try:
            validate_topic_filter(full_filter)
            group, topic_filter = parse_shared_subscription(full_filter)
            key = hub.translator.filter_to_binding_key(topic_filter)
        except (InvalidTopic, RoutingKeyTooLong):
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        if group is not None and options.no_local:
            handler.fail(ReasonCode.PROTOCOL_ERROR)  # [MQTT-3.8.3-4]
            return
        qos = min(options.qos, 2)
        options = SubscriptionOptions(qos, options.no_local, options.retain_as_published,
                                      options.retain_handling)  # fmt: skip
        existed = full_filter in session.subscriptions
        try:
            if group is None:
                _subscribe_plain(handler, session, full_filter, topic_filter, key, options,
                                 identifier)  # fmt: skip
            else:
                _subscribe_shared(handler, session, full_filter, group, topic_filter, key,
                                  options, identifier)  # fmt: skip
        except RoutingKeyTooLong:
            # A mapping rule's template made a binding key over 255 bytes.
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        except CoreError:
            codes.append(ReasonCode.UNSPECIFIED_ERROR)
            continue
        codes.append(ReasonCode(qos))
        if group is None and (
            options.retain_handling == 0 or (options.retain_handling == 1 and not existed)
        ):
            retained_for.append((full_filter, topic_filter))
    session.subscriptions_changed()
    suback = SubAck(packet.packet_id, tuple(codes))

    def send_suback() -> None:
        handler.send(suback)
        for full_filter, topic_filter in retained_for:
            hub.send_retained(session, full_filter, topic_filter)

    # A persistent session's subscriptions are acknowledged once they are on disk.
    handler.ack(send_suback, written_since(hub.broker, before))


def _subscribe_plain(
    handler: ClientHandler,
    session: Session,
    full_filter: str,
    topic_filter: str,
    key: str,
    options: SubscriptionOptions,
    identifier: int | None,
) -> None:
    hub = handler.hub
    hub.ensure_session_queue(session)
    bindings = hub.topic_map.bindings(topic_filter, key)
    hub.bind_all(session.queue_name, bindings, session)
    session.subscriptions[full_filter] = TopicSubscription(
        topic_filter, options, identifier, key,
        match_filter=hub.match_filter(topic_filter, key), bindings=bindings,
    )  # fmt: skip


def _subscribe_shared(
    handler: ClientHandler,
    session: Session,
    full_filter: str,
    group: str,
    topic_filter: str,
    key: str,
    options: SubscriptionOptions,
    identifier: int | None,
) -> None:
    hub = handler.hub
    existing = session.subscriptions.get(full_filter)
    if existing is not None and existing.core is not None and existing.core.active:
        existing.options = options
        existing.identifier = identifier
        return
    queue_name = shared_queue_name(group, key)
    bindings = hub.topic_map.bindings(topic_filter, key)
    hub.vhost.declare_queue(queue_name, auto_delete=True, arguments=hub.queue_arguments())
    hub.bind_all(queue_name, bindings, None)
    sub = TopicSubscription(topic_filter, options, identifier, key, group, queue_name,
                            match_filter=hub.match_filter(topic_filter, key),
                            bindings=bindings)  # fmt: skip
    session.subscriptions[full_filter] = sub
    sub.core = hub.vhost.consume(
        queue_name, session, tag=f"mqtt-{session.client_id}-{full_filter}", no_ack=False,
        owner=session,
    )  # fmt: skip


def on_unsubscribe(handler: ClientHandler, packet: Unsubscribe) -> None:
    session = handler.session
    assert session is not None
    hub = handler.hub
    before = written(hub.broker)
    codes: list[ReasonCode] = []
    for full_filter in packet.topic_filters:
        sub = session.subscriptions.pop(full_filter, None)
        if sub is None:
            codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
            continue
        codes.append(ReasonCode.SUCCESS)
        if sub.core is not None:
            if sub.core.active:
                sub.core.cancel(requeue_unacked=True)
            continue
        for exchange, key in sub.bindings or ((hub.settings.exchange, sub.binding_key),):
            still_bound = any(
                (exchange, key) in other.bindings and other.share_group is None
                for other in session.subscriptions.values()
            )
            if not still_bound and session.queue_declared:
                # The queue or exchange may have been deleted from the AMQP side.
                with contextlib.suppress(CoreError):
                    hub.vhost.unbind_queue(session.queue_name, exchange, key,
                                           owner=session)  # fmt: skip
    session.subscriptions_changed()
    unsuback = UnsubAck(packet.packet_id, tuple(codes))
    handler.ack(lambda: handler.send(unsuback), written_since(hub.broker, before))


def shared_queue_name(group: str, key: str) -> str:
    name = f"mqtt-shared-{group}-{key}"
    if len(name.encode()) > 255:
        name = "mqtt-shared-" + hashlib.sha256(f"{group}\x00{key}".encode()).hexdigest()
    return name
