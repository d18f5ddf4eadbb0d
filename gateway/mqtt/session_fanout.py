"""`RawFanout`: where a publisher's lone QoS 0 PUBLISHes to one topic go, without routing.

Issue 7, S6 (latency at a low rate). A device that publishes telemetry sends each PUBLISH
alone in a read. The general single-PUBLISH way (`ClientHandler.on_single_qos0`,
`MqttHub.route_plain`, core/routing.py `offer_packet`) hands it as a packet to each queue's
direct sink, and a session that needs nothing of its own writes the publisher's bytes
unchanged (`SessionDelivery._forward_qos0` through `HandlerOwner.write_now`). When the second
PUBLISH in a row to a topic went to every queue as a packet, the handler keeps what happened
as a `RawFanout`, and the listener hands the next lone PUBLISH to it first: one call that
checks what decided the recorded one, then gives each queue the packet again, the sessions
that wrote the bytes by writing them again, the others through `deliver_packet`.

Checked per PUBLISH before anything is written (else False, and the read goes the general
way, which records a new fanout when it can):
- the publisher: connected, nothing buffered in its decoder, the same topic field (topic
  name, and for MQTT 5 an empty property list), within the server's Maximum Packet Size;
- the vhost's ``routing_version`` (every binding and exchange change bumps it);
- each queue: not deleted, nothing ready in it, still taking packets through the same
  session, whose handler would take it (`deliver_packet` would not refuse).

A session that wrote the bytes is written them again only while its handler, match cache (a
subscription change drops it) and connection state are those recorded, the PUBLISH fits its
client's Maximum Packet Size and nothing waits in its buffer; otherwise it gets the packet
through `deliver_packet`, which decides as the general way decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.mqtt.connection_states import ConnectionState
from gateway.mqtt.packets import MQTT_5

if TYPE_CHECKING:
    from gateway.bridge.convert import MqttView
    from gateway.core.queues import Queue
    from gateway.core.vhost import VirtualHost
    from gateway.mqtt.codec import PacketDecoder
    from gateway.mqtt.connection import MqttConnection
    from gateway.mqtt.session_delivery import SessionDelivery, _Matches
    from gateway.mqtt.session_handler import ClientHandler
    from gateway.mqtt.session_hub import MqttHub
    from gateway.mqtt.session_owner import HandlerOwner

__all__ = ["RawFanout", "RawTarget"]

_CONNECTED = ConnectionState.CONNECTED

# One queue the recorded PUBLISH reached: the queue, the session that took the packet, its
# handler, match cache, connection and shell then, and the largest packet to write it as the
# publisher's bytes: its client's Maximum Packet Size if it wrote them, -1 if it did not.
RawTarget = tuple[
    "Queue", "SessionDelivery", "ClientHandler", "dict[str, _Matches] | None", "MqttConnection",
    "HandlerOwner", int,
]  # fmt: skip


class RawFanout:
    """A publisher's lone QoS 0 PUBLISHes to one topic, written to the subscribers a recorded
    one reached as its bytes (module doc). Made by `ClientHandler.on_single_qos0`, used by the
    TCP listener through `forward`."""

    __slots__ = (
        "_conn",
        "_decoder",
        "_drop_unwritable",
        "_field",
        "_field_size",
        "_handler",
        "_hub",
        "_max_size",
        "_targets",
        "_topic",
        "_version",
        "_vhost",
        "_view",
        "forwarded",
    )

    def __init__(
        self,
        handler: ClientHandler,
        decoder: PacketDecoder,
        topic: str,
        view: MqttView,
        targets: tuple[RawTarget, ...],
    ) -> None:
        hub: MqttHub = handler.hub
        self._hub = hub
        self._handler = handler
        self._conn: MqttConnection = handler.conn
        self._decoder = decoder
        self._topic = topic
        self._view = view
        self._vhost: VirtualHost = hub.vhost
        self._version = hub.vhost.routing_version
        name = topic.encode()
        # The topic field as the publisher's level encodes it: length, name, and for MQTT 5
        # the empty property list that a plain PUBLISH has.
        properties = b"\x00" if handler.protocol_level == MQTT_5 else b""
        self._field = len(name).to_bytes(2, "big") + name + properties
        self._field_size = len(self._field)
        self._targets = targets
        self._max_size = decoder.max_packet_size
        self._drop_unwritable = hub.settings.qos0_overflow == "drop"
        self.forwarded = 0  # PUBLISHes written through it

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def targets(self) -> tuple[RawTarget, ...]:
        return self._targets

    def forward(self, data: bytes) -> bool:
        """Write ``data``, one whole read, to the recorded subscribers if it is a plain QoS 0
        PUBLISH to this topic and nothing that decided the recorded one has changed; False,
        with nothing done, otherwise."""
        # One slice and comparison instead of a bytes method call: this runs once per
        # message at a low rate, where every call is paid on cold caches (S6).
        size = len(data)
        remaining = data[1] if size > 1 else 0x80
        cursor = 2
        if remaining >= 0x80:  # two bytes, minimally encoded (as `PacketDecoder.feed_qos0`)
            last = data[2] if size > 2 else 0
            if not 0 < last < 0x80:
                return False
            remaining = (remaining & 0x7F) | last << 7
            cursor = 3
        stop = cursor + self._field_size
        if (
            cursor + remaining != size
            or size > self._max_size
            or data[cursor:stop] != self._field
            or data[0] != 0x30
        ):
            return False
        decoder = self._decoder
        conn = self._conn
        if (
            self._version != self._vhost.routing_version
            or conn.state is not _CONNECTED
            or decoder._buffered  # (`feed_qos0`'s own checks, inlined)
            or decoder.error is not None
            or self._handler.closed
        ):
            return False
        targets = self._targets
        drop = self._drop_unwritable
        for queue, session, client, _, _, _, _ in targets:
            if queue.deleted or queue._ready or queue._direct is not session:
                return False  # `offer_packet` would skip it or build a Message
            if session.handler is not client or not (client.writable or drop):
                return False  # `deliver_packet` would refuse it, or the session moved
        hub = self._hub
        conn._last_received = hub.clock()  # keep-alive [MQTT-3.1.2-24], as `receive_qos0`
        sent = 0
        packet = None
        for queue, session, client, cache, sub_conn, owner, limit in targets:
            if (
                size <= limit
                and session._match_cache is cache
                and client.writable
                and sub_conn.state is _CONNECTED
                and owner.write_now(data)
            ):
                sent += 1
                continue
            if packet is None:
                handler = self._handler
                packet = (self._topic, data[stop:], handler.client_id, self._view, data,
                          handler.protocol_level)  # fmt: skip
            session.deliver_packet(queue, packet)  # as `offer_packet` hands it over
        stats = hub.stats
        stats["published"] += 1
        if sent:
            stats["delivered"] += sent
        elif not targets:
            stats["unroutable"] += 1
        self.forwarded += 1
        return True
