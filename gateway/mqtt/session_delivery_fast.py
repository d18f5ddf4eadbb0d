"""The common QoS 1/2 batch from a session queue's backlog, without the general branches.

`deliver_many` is what `Session` gives the core as its batch entry point (core/dispatch.py
`take_batch`): the refill of the in-flight window after a read of PUBACKs. What
`SessionDelivery.deliver` decides per message once per batch here (the handler, its
connection, Topic Alias use, the protocol version, the queue's durability, rabbitmq topic
mode), and per message it takes the fast way only where nothing is per subscriber: not a
retained copy, a valid topic name, a match with QoS 1 or 2, and for MQTT 5 no Subscription
Identifier and no expiry. Any other message goes through `SessionDelivery.deliver` in its
place, so the batch keeps its order and every message means what the general path makes of
it (tests/unit/mqtt/test_session_delivery_fast.py runs both side by side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.bridge.convert import A_CLIENT, A_RETAINED_FOR, A_TOPIC, A_VIEW, MqttView
from gateway.mqtt.packets import EMPTY_PROPERTIES, MQTT_5
from gateway.mqtt.session_delivery import (
    _TELL_EVERY,
    Outbound,
    _new_outbound,
    _valid_topic_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.consumers import Delivery
    from gateway.mqtt.packets import Properties
    from gateway.mqtt.session import Session

# What a batch keeps per plain view (`deliver_many`): the view, payload size, QoS, RETAIN,
# properties, and the header's packer with the parts around the packet id (`acked_header`).
_Known = tuple[
    "MqttView", int, int, bool, "Properties", "Callable[[bytes, int, bytes], bytes]", bytes, bytes
]


def deliver_many(session: Session, deliveries: list[Delivery]) -> None:
    """A batch from a queue's backlog, in order (the contract of `SessionDelivery.deliver_each`,
    which takes any batch this does not: the queue asked `can_accept` once, `batch_credit`
    bounded the batch; on an internal error what the batch did not reach goes back to its
    queue and the error propagates)."""
    handler = session.handler
    core = session.core
    hub = session.hub
    if (
        handler is None
        or core is None
        or not deliveries
        or deliveries[0].queue is not core.queue
        or hub.rabbitmq_topics
        or handler.conn.client_topic_alias_maximum
    ):
        session.deliver_each(deliveries)
        return
    queue = core.queue
    conn = handler.conn
    send_encoded = conn.send_encoded
    # `send_encoded` without the call while the connection allows it; asked again after
    # every call out of this loop (`on_output`, `deliver`, `_drop`).
    buffer = conn.publish_buffer()
    on_output = handler.on_output
    deliver = session.deliver
    view_of = hub.view_of
    # Without mapping rules `view_of` is `view_function(hub.translator)`: its answer for a
    # message that still carries its plain view is taken here without the call.
    translator = None if hub.topic_map.has_rules else hub.translator
    v5 = handler.protocol_level == MQTT_5
    v5_bit = 2 if v5 else 0
    client_id = session.client_id
    inflight = session.inflight
    # The store keeps the packet id of a persistent message of a durable queue sent by a
    # persistent session, for a resend after a restart (as `deliver`).
    store = hub.session_store if session.expiry_interval > 0 and queue.durable else None
    # Per plain view (a topic's shared view, `plain_views`) met in this batch: what its
    # messages become here when no No Local subscription makes the publisher matter (payload
    # size, QoS, RETAIN, properties, and the header's packer and parts around the packet id).
    known: dict[int, _Known] = {}  # by id(view): views are not hashable
    delivered = 0
    done = 0
    try:
        for delivery in deliveries:
            done += 1
            message = delivery.entry.message
            annotations = message.annotations
            body = message.body
            built = annotations.get(A_VIEW)
            hit = None
            if (
                translator is not None
                and isinstance(built, MqttView)
                and built.translator is translator
                and built.routing_key == message.routing_key
                and A_RETAINED_FOR not in annotations
                and A_TOPIC in annotations
            ):
                plain = True  # `view_of` would answer with the view the message carries
                view = built
                hit = known.get(id(view))
            else:
                plain = False
            if hit is not None and hit[0] is view and hit[1] == len(body):
                _, _, qos, retain, props, pack, head, tail = hit
                packet_id = session._next_packet_id
                while packet_id in inflight:  # ids in flight are never reused [MQTT-2.2.1-3]
                    packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
                header = pack(head, packet_id, tail)
            else:
                if A_RETAINED_FOR in annotations:
                    deliver(delivery)
                    buffer = conn.publish_buffer()
                    continue
                if not plain:
                    view = view_of(message)
                topic = view.topic
                if A_TOPIC not in annotations and not _valid_topic_name(topic):
                    deliver(delivery)
                    buffer = conn.publish_buffer()
                    continue
                cache = session._match_cache
                cached = None if cache is None else cache.get(topic)
                if cached is None:
                    cached = session._matches(topic)
                match = cached[0]
                own_matters = match is not cached[1]
                if own_matters and annotations.get(A_CLIENT) == client_id:
                    match = cached[1]
                if match is None:
                    deliver(delivery)  # dropped there, counted
                    buffer = conn.publish_buffer()
                    continue
                view_qos = view.qos
                qos = match.qos if match.qos < view_qos else view_qos
                props = view.properties
                if not qos or (
                    v5
                    and (
                        match.identifiers
                        or view.expiry_interval is not None
                        or props.message_expiry_interval is not None
                    )
                ):
                    deliver(delivery)  # QoS 0, or per-subscriber MQTT 5 properties
                    buffer = conn.publish_buffer()
                    continue
                if not v5:
                    props = EMPTY_PROPERTIES
                retain = view.retain and match.retain_as_published
                size = len(body)
                packet_id = session._next_packet_id
                while packet_id in inflight:  # ids in flight are never reused [MQTT-2.2.1-3]
                    packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
                header = view.acked_header(size, qos, retain, v5, packet_id)
                if plain and not own_matters:
                    parts = view.acked_headers
                    found = None
                    if parts is not None:
                        # The key as `MqttView.acked_header` (bridge/convert.py) makes it.
                        found = parts.get((size << 4) | (qos << 2) | v5_bit | retain)
                    if found is not None:
                        known[id(view)] = (view, size, qos, retain, props, *found)
            session._next_packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
            if buffer is not None:
                buffer.append(header)
                if body:
                    buffer.append(body)
                queued = len(buffer)
            else:
                queued = send_encoded(header, body)
                if not queued:
                    # Larger than the client's Maximum Packet Size: discarded as if delivered
                    # [MQTT-3.1.2-25].
                    session._drop(delivery)
                    buffer = conn.publish_buffer()
                    continue
            delivered += 1
            if queued <= 2 or not queued & _TELL_EVERY:
                on_output()
                buffer = conn.publish_buffer()
            out: Outbound = _new_outbound(Outbound)
            out.packet_id = packet_id
            out.topic = view.topic
            out.payload = body
            out.qos = qos
            out.retain = retain
            out.properties = props
            out.delivery = delivery
            inflight[packet_id] = out
            if store is not None and message.persistent:
                store.sent(client_id, queue, delivery.entry.seq, packet_id, qos)
    except BaseException:
        rest = [d for d in deliveries[done:] if not d.settled]
        if rest:
            rest[0].queue.requeue(rest)
        raise
    finally:
        if delivered:
            hub.stats["delivered"] += delivered
