"""Retained messages of the MQTT hub (DESIGN.md section 5): what a PUBLISH with RETAIN or an
AMQP publish with `x-mqtt-retain` keeps, what store recovery puts back, and the copies a new
subscription gets. `HubRetained` is a mixin of `MqttHub`, which holds the state it uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.bridge.convert import (
    A_CLIENT,
    A_PROPS,
    A_QOS,
    A_RETAIN,
    A_RETAINED_FOR,
    A_TOPIC,
    H_RETAIN,
    MqttView,
)
from gateway.core.message import Message
from gateway.mqtt.packets import EMPTY_PROPERTIES, Properties, Publish
from gateway.mqtt.retained import RetainedLimitExceeded, RetainedStore

if TYPE_CHECKING:
    from gateway.bridge.mappings import TopicMap
    from gateway.core.vhost import VirtualHost
    from gateway.mqtt.session import Session

__all__ = ["HubRetained", "RetainedValue"]


@dataclass(slots=True)
class RetainedValue:
    """What the retained store keeps: the MQTT view of the message and its payload."""

    view: MqttView
    payload: bytes


class HubRetained:
    """The retained-message half of `MqttHub`."""

    clock: Callable[[], float]
    retained: RetainedStore[RetainedValue]
    stats: dict[str, int]
    topic_map: TopicMap
    view_of: Callable[[Message], MqttView]
    vhost: VirtualHost

    def keep_retained(self, message: Message, publish: Publish) -> None:
        """Keep an MQTT PUBLISH with RETAIN; RetainedLimitExceeded past the store's limits."""
        # The message's MQTT properties, not the PUBLISH's: no Topic Alias of this hop.
        props = message.annotations.get(A_PROPS, EMPTY_PROPERTIES)
        assert isinstance(props, Properties)
        expires_at = None
        if props.message_expiry_interval is not None:
            expires_at = self.clock() + props.message_expiry_interval
        view = MqttView(publish.topic, publish.qos, True, props, props.message_expiry_interval)
        self.retained.set(
            publish.topic, RetainedValue(view, publish.payload), len(publish.payload), expires_at
        )

    def restore_retained(self, publish: Publish, expires_at: float | None) -> None:
        """A retained message recovered from the store (``expires_at`` on this hub's clock)."""
        props = publish.properties
        expiry = props.message_expiry_interval
        view = MqttView(publish.topic, publish.qos, True, props, expiry)
        with contextlib.suppress(RetainedLimitExceeded):  # the limits were lowered since
            self.retained.set(publish.topic, RetainedValue(view, publish.payload),
                              len(publish.payload), expires_at)  # fmt: skip

    def retain_from_amqp(self, exchange: str, message: Message) -> None:
        """AMQP publish hook: header `x-mqtt-retain` true stores the message as the retained
        one of the topic its routing key names, or clears it when the body is empty
        (DESIGN.md section 6). AMQP has no way to hear a refusal, so one past the store's
        limits is counted and dropped."""
        if exchange not in self.topic_map.retain_exchanges:
            return
        headers = message.properties.headers
        if not headers or headers.get(H_RETAIN) is not True:
            return
        view = self.view_of(message)
        topic = view.topic
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            return  # a routing key that is no MQTT topic name (rabbitmq mode keeps `*`)
        body = message.body
        if not body:
            self.retained.clear(topic)
            return
        props = view.properties
        expires_at = None
        if view.expiry_interval is not None:
            expires_at = self.clock() + view.expiry_interval
            props = dataclasses.replace(props, message_expiry_interval=view.expiry_interval)
        stored = MqttView(topic, view.qos, True, props, view.expiry_interval)
        try:
            self.retained.set(topic, RetainedValue(stored, body), len(body), expires_at)
        except RetainedLimitExceeded:
            self.stats["retained_refused"] += 1

    def send_retained(self, session: Session, full_filter: str, topic_filter: str) -> None:
        """Queue the retained messages matching a new subscription for this session only."""
        now = self.clock()
        for item in self.retained.match(topic_filter, now):
            value = item.value
            view = value.view
            props = view.properties
            expiration_ms = None
            if item.expires_at is not None:
                # What is left of the Message Expiry Interval after its time in the store
                # [MQTT-3.3.2-6]; the session subtracts its time in the queue on delivery.
                left = max(0.001, item.expires_at - now)
                expiration_ms = max(1, int(left * 1000))
                props = dataclasses.replace(props, message_expiry_interval=math.ceil(left))
            annotations: dict[str, object] = {
                A_TOPIC: view.topic,
                A_QOS: view.qos,
                A_RETAIN: True,
                A_CLIENT: None,
                A_PROPS: props,
                A_RETAINED_FOR: full_filter,
            }
            copy = Message(
                "", session.queue_name, value.payload, annotations=annotations,
                persistent=view.qos > 0, expiration_ms=expiration_ms,
            )  # fmt: skip
            # The default exchange reaches exactly this session's queue.
            self.vhost.publish("", copy)
