"""The output side of `MqttConnection` (connection.py): the buffer of bytes for the client and
what queues into it on the per-message paths (`send_publish`, `send_encoded`) or after the
client's limits are applied (`_queue`: Maximum Packet Size, Request Problem Information)."""

from __future__ import annotations

from gateway.mqtt.codec import encode, encode_publish_header
from gateway.mqtt.connection_states import ConnectionState, LocalProtocolError
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    Auth,
    Packet,
    Properties,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    UnsubAck,
)
from gateway.mqtt.properties import packet_with_properties, without_problem_information

_S = ConnectionState
# Packets that may not carry Reason String or User Properties when the client asked for no
# problem information [MQTT-3.1.2-32].
_PROBLEM_INFO_PACKETS = frozenset({PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Auth})


class ConnectionOutput:
    """A mixin of `MqttConnection`: the state it reads is in that class's slots."""

    __slots__ = ()

    state: ConnectionState
    client_maximum_packet_size: int | None
    request_problem_information: bool
    _version: int
    _out: list[bytes]

    def send_publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int | None = None,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> bool:
        """Queue a PUBLISH without building a `Publish`: the delivery hot path. The payload
        is queued as its own chunk, not copied into the header."""
        state = self.state
        if state is not _S.CONNECTED:
            if state is _S.CLOSED:
                return False
            raise LocalProtocolError("PUBLISH before a successful CONNACK")
        header = encode_publish_header(
            topic, len(payload), qos, retain, dup, packet_id, properties, self._version
        )
        limit = self.client_maximum_packet_size
        if limit is not None and len(header) + len(payload) > limit:
            return False
        self._out.append(header)
        if payload:
            self._out.append(payload)
        return True

    def send_encoded(self, header: bytes, payload: bytes) -> int:
        """Queue a PUBLISH whose header the caller encoded for this connection's version (a
        header cached per message shape: fan-out encodes once). The caller vouches for the
        header; this checks the state and the client's Maximum Packet Size, as `send_publish`
        does. Returns how many chunks `data_to_send` now holds (1 or 2 for the first PUBLISH
        since the last drain), or 0 when not sent (closed, or too large: counts as delivered
        [MQTT-3.1.2-28])."""
        state = self.state
        if state is not _S.CONNECTED:
            if state is _S.CLOSED:
                return 0
            raise LocalProtocolError("PUBLISH before a successful CONNACK")
        limit = self.client_maximum_packet_size
        if limit is not None and len(header) + len(payload) > limit:
            return 0
        out = self._out
        out.append(header)
        if payload:
            out.append(payload)
        return len(out)

    def publish_buffer(self) -> list[bytes] | None:
        """The list `data_to_send` drains, when a PUBLISH of any size may be appended to it
        as `send_encoded` would (CONNECTED, no client Maximum Packet Size): a batch sender
        appends header and payload (when not empty) itself. None otherwise; ask again after
        anything that may have changed the connection's state."""
        if self.state is _S.CONNECTED and self.client_maximum_packet_size is None:
            return self._out
        return None

    @property
    def pending_chunks(self) -> int:
        """Buffers queued for `data_to_send` (a header and a payload per PUBLISH)."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer (empty when nothing is)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def _queue(self, packet: Packet) -> bool:
        version = self._version
        limit = self.client_maximum_packet_size
        if limit is None and self.request_problem_information:
            self._out.append(encode(packet, version))
            return True
        properties: Properties = getattr(packet, "properties", EMPTY_PROPERTIES)
        if not self.request_problem_information and type(packet) in _PROBLEM_INFO_PACKETS:
            packet = packet_with_properties(packet, without_problem_information(properties))
        data = encode(packet, version)
        if limit is not None and len(data) > limit:
            # Reason String and User Properties are what a sender may drop to fit.
            packet = packet_with_properties(packet, without_problem_information(properties))
            data = encode(packet, version)
            if len(data) > limit:
                return False
        self._out.append(data)
        return True
