"""PUBLISH from a client, and the QoS 1/2 answers to it (DESIGN.md section 5).

`on_publish` takes any `Publish`; `on_plain_publish` the `Plain` tuples of the decoder's fast
path (connection.plain_publish): a QoS 0 or 1 PUBLISH without DUP, RETAIN or properties, which
needs no `Publish` object, no `PubAck` object and no per-packet output hook (the handler calls
`on_output` once per read). Both mean exactly the same thing for the same packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from gateway.bridge.convert import message_from_plain_publish
from gateway.core.errors import CoreError
from gateway.core.routing import ACCEPTED, REFUSED, UNROUTABLE
from gateway.mqtt.codec import PlainPublish, PlainPublishQos1
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_5,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    make_publish,
)
from gateway.mqtt.session_hub import PublishRefused

if TYPE_CHECKING:
    from gateway.core.observers import CommitBarrier
    from gateway.mqtt.session_handler import ClientHandler

_SUCCESS = ReasonCode.SUCCESS
_NO_MATCHING = ReasonCode.NO_MATCHING_SUBSCRIBERS
# A PUBACK with reason code 0, as `MqttConnection.send_puback` packs it.
_PUBACK_FIRST = 0x40
_PUBACK = struct.Struct("!BBH").pack


def on_plain_publish(handler: ClientHandler, event: PlainPublish | PlainPublishQos1) -> None:
    hub = handler.hub
    if len(event) == 2:
        try:
            hub.route_plain(event[0], event[1], handler.client_id, 0)
        except (PublishRefused, CoreError):
            hub.stats["refused"] += 1  # QoS 0: dropped silently, as publish_refused does
        return
    on_plain_qos1(handler, event[0], event[1], event[2])


def on_plain_qos1(handler: ClientHandler, topic: str, payload: bytes, packet_id: int) -> None:
    """A plain QoS 1 PUBLISH: route it, then PUBACK (or refuse) as `on_publish` would."""
    hub = handler.hub
    # QoS 1 messages are persistent: one the store records is acked after its commit.
    barrier = hub.broker.commit_barrier
    before = 0 if barrier is None else barrier.written
    try:
        outcome = hub.route_plain(topic, payload, handler.client_id, 1)
    except (PublishRefused, CoreError) as exc:
        publish = make_publish(topic, payload, 1, False, False, packet_id, EMPTY_PROPERTIES)
        _refused(handler, publish, exc)
        return
    if outcome == ACCEPTED and barrier is None and not handler.held:
        handler.conn.send_puback(packet_id, 0)  # the common case: nothing to wait for
        return
    if outcome == REFUSED:
        _rejected(handler, 1, packet_id)
        return
    code = _NO_MATCHING if outcome == UNROUTABLE and handler.protocol_level == MQTT_5 else 0
    _puback(handler, packet_id, code, barrier, before)


def _puback(
    handler: ClientHandler, packet_id: int, code: int, barrier: CommitBarrier | None, before: int
) -> None:
    """The PUBACK of a routed QoS 1 PUBLISH: after the store's commit if the store recorded it
    (``barrier.written`` moved from ``before``), behind acks that wait, else at once."""
    held = handler.held
    if barrier is not None and barrier.written != before:
        handler.ack(PubAck(packet_id, ReasonCode(code)), barrier.written)
    elif held is not None and held:
        handler.ack(PubAck(packet_id, ReasonCode(code)))  # behind acks waiting for a commit
    else:
        handler.conn.send_puback(packet_id, code)


def on_plain_qos1_run(handler: ClientHandler, events: list[Any]) -> int:
    """`on_plain_qos1` for the plain QoS 1 PUBLISHes at the start of a read's events (a
    publisher's read under load is nothing else, bench S2): how many it took. Each one to a
    topic whose QoS 1 route the hub has cached to one queue is routed and acknowledged here,
    as `route_plain`, `offer_rest` and `send_puback` would do it, without those calls (its
    PUBACK waits for the store's commit when the store recorded it, or behind acks that
    wait); any other goes through `on_plain_qos1` itself. Tested against it with twin
    worlds, with and without a store (tests/unit/mqtt_adapter/test_qos1_fast.py)."""
    hub = handler.hub
    broker = hub.broker
    vhost = hub.vhost
    clock = vhost._clock
    routes = hub._plain_routes  # (the hub's own cache, read per message as `route_plain` does)
    stats = hub.stats
    client_id = handler.client_id
    conn = handler.conn
    # The PUBACKs go straight into the connection's output, as `send_puback` puts them.
    out = conn.publish_buffer()
    done = 0
    for event in events:
        if type(event) is not tuple or len(event) != 3 or handler.closed:
            break
        topic, payload, packet_id = event
        done += 1
        plain = routes.get(topic)
        if (
            plain is None
            or plain.acked_version != vhost.routing_version
            or len(plain.acked_targets) != 1
            or out is None
        ):
            on_plain_qos1(handler, topic, payload, packet_id)
            out = conn.publish_buffer()
            continue
        message = message_from_plain_publish(
            plain.exchange, plain.routing_key, topic, payload, 1, False, client_id, plain.views
        )
        stats["published"] += 1
        queue = plain.acked_targets[0]
        # QoS 1 messages are persistent: one the store records is acked after its commit.
        barrier = broker.commit_barrier
        before = 0 if barrier is None else barrier.written
        try:
            taken = queue._offer(message, clock()) or queue.deleted
        except CoreError as exc:
            _refused(handler, make_publish(topic, payload, 1, False, False, packet_id,
                                           EMPTY_PROPERTIES), exc)  # fmt: skip
            out = conn.publish_buffer()
            continue
        if taken and (barrier is None or barrier.written == before) and not handler.held:
            out.append(_PUBACK(_PUBACK_FIRST, 2, packet_id))  # nothing to wait for
            continue
        if taken:
            _puback(handler, packet_id, 0, barrier, before)
        else:
            _rejected(handler, 1, packet_id)
        out = conn.publish_buffer()
    return done


def on_publish(handler: ClientHandler, publish: Publish) -> None:
    hub = handler.hub
    qos = publish.qos
    if not qos and publish.properties is EMPTY_PROPERTIES:
        # The QoS 0 hot path: nothing to check, nothing to answer.
        try:
            hub.route_publish(publish, handler.client_id)
        except (PublishRefused, CoreError):
            hub.stats["refused"] += 1  # dropped silently, as publish_refused does
        return
    session = handler.session
    assert session is not None
    packet_id = publish.packet_id
    if qos == 2:
        assert packet_id is not None  # the codec requires one for QoS > 0
        inbound = session.inbound_qos2
        if packet_id in inbound:
            handler.ack(PubRec(packet_id))  # a duplicate: already routed once [MQTT-4.3.3-10]
            return
        if handler.protocol_level == MQTT_5 and len(inbound) >= hub.settings.max_inflight:
            # More unfinished QoS 2 exchanges than the Receive Maximum we advertised (3.3.4).
            handler.fail(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
            return
    if publish.properties.payload_format_indicator == 1:
        try:
            publish.payload.decode("utf-8")
        except UnicodeDecodeError:
            publish_refused(
                handler,
                publish,
                ReasonCode.PAYLOAD_FORMAT_INVALID,
                "payload is not valid UTF-8 (Payload Format Indicator 1)",
            )
            return
    # QoS 1/2 messages are persistent: one the store records is acked after its commit.
    barrier = hub.broker.commit_barrier if qos else None
    before = 0 if barrier is None else barrier.written
    try:
        outcome = hub.route_publish(publish, handler.client_id)
    except (PublishRefused, CoreError) as exc:
        _refused(handler, publish, exc)
        return
    if qos == 0:
        return
    assert packet_id is not None
    if outcome == REFUSED:
        _rejected(handler, qos, packet_id)
        return
    code = _NO_MATCHING if outcome == UNROUTABLE else _SUCCESS
    if handler.protocol_level != MQTT_5:
        code = _SUCCESS
    if qos == 2:
        session.hold_inbound_qos2(packet_id)
        hub.session_changed(session)  # a persistent session stores the id first
    wait_for = 0
    if barrier is not None and barrier.written != before:
        wait_for = barrier.written
    if qos == 1:
        handler.ack(PubAck(packet_id, code), wait_for)
    else:
        handler.ack(PubRec(packet_id, code), wait_for)


def _refused(handler: ClientHandler, publish: Publish, exc: PublishRefused | CoreError) -> None:
    if isinstance(exc, PublishRefused):
        publish_refused(handler, publish, exc.reason_code, exc.text)
    else:
        publish_refused(handler, publish, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, exc.text)


def _rejected(handler: ClientHandler, qos: int, packet_id: int) -> None:
    """A target queue refused the message (full, reject-publish)."""
    if handler.protocol_level == MQTT_5:
        ack = PubAck if qos == 1 else PubRec
        handler.hub.stats["refused"] += 1
        handler.send(ack(packet_id, ReasonCode.QUOTA_EXCEEDED,
                         Properties(reason_string="a target queue is full")))  # fmt: skip
    else:
        # 3.1.1 cannot say "not taken": closing makes the client send it again later
        # (DESIGN.md section 5).
        handler.fail(ReasonCode.QUOTA_EXCEEDED)


def publish_refused(handler: ClientHandler, publish: Publish, code: ReasonCode, text: str
                    ) -> None:  # fmt: skip
    """A PUBLISH the gateway will not take, answered as Mosquitto does: QoS 1/2 get their
    PUBACK/PUBREC (in MQTT 5 with the reason code, and a Reason String the machine drops
    when the client asked for no problem information); QoS 0 is dropped silently."""
    handler.hub.stats["refused"] += 1
    packet_id = publish.packet_id
    if publish.qos == 0 or packet_id is None:
        return
    ack = PubAck if publish.qos == 1 else PubRec
    if handler.protocol_level == MQTT_5:
        handler.send(ack(packet_id, code, Properties(reason_string=text)))
    else:
        handler.send(ack(packet_id))


def on_pubrel(handler: ClientHandler, pubrel: PubRel) -> None:
    session = handler.session
    assert session is not None
    if session.release_inbound_qos2(pubrel.packet_id):
        handler.hub.session_changed(session)
        handler.send(PubComp(pubrel.packet_id))
    else:
        code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if handler.protocol_level == MQTT_5 else \
            _SUCCESS  # fmt: skip
        handler.send(PubComp(pubrel.packet_id, code))


def on_pubrec(handler: ClientHandler, pubrec: PubRec) -> None:
    session = handler.session
    assert session is not None
    failed = pubrec.reason_code >= 0x80
    if session.pubrec(pubrec.packet_id, failed):
        if not failed:
            handler.send(PubRel(pubrec.packet_id))
    elif not failed:
        code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if handler.protocol_level == MQTT_5 else \
            _SUCCESS  # fmt: skip
        handler.send(PubRel(pubrec.packet_id, code))


__all__ = ["on_plain_publish", "on_publish", "on_pubrec", "on_pubrel", "publish_refused"]
