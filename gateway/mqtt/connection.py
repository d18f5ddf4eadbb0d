"""The server side of one MQTT connection as a sans-I/O protocol machine.

    conn = MqttConnection(max_packet_size=1 << 20, server_keep_alive=None, now=loop.time())
    for event in conn.receive_data(chunk, now):   # packets, or events the machine made up
        ...                                       # the session answers with conn.send(...)
    transport.write(conn.data_to_send())

The machine owns what is per-connection and pure protocol: the state (CONNECT first, CONNACK
before anything else goes out), PINGRESP, keep-alive and connect timeouts, inbound Topic
Aliases, the checks against what the CONNACK advertised, and the client's Maximum Packet Size
on output. Sessions, packet-id state and QoS flows belong to the session layer.

Events come out in wire order. A client may pipeline packets after its CONNECT; they come out
too, and the session answers the `Connect` (sends CONNACK) before handling the rest, which
in-order, synchronous handling of the returned list does. After a `ProtocolViolation`,
`KeepaliveExpired` or `ConnectTimedOut`, or a client's `Disconnect`, the machine is CLOSED:
what it had to say is in `data_to_send()`, and the caller closes the transport.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import cast

from gateway.mqtt.codec import PacketDecoder, Plain, encode, packet_of
from gateway.mqtt.codec_errors import MqttError, ProtocolError
from gateway.mqtt.codec_tables import DISCONNECT_CODES
from gateway.mqtt.connection_output import ConnectionOutput
from gateway.mqtt.connection_states import (
    RECEIVE_TRANSITIONS,
    REFUSED_CONNACK,
    SEND_TRANSITIONS,
    ConnectionState,
    ConnectTimedOut,
    Event,
    KeepaliveExpired,
    LocalProtocolError,
    ProtocolViolation,
    connack_code,
)
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    UnsubAck,
)
from gateway.mqtt.properties import (
    server_disconnect_properties,
)

_S = ConnectionState
# As plain globals: `ConnectionState.X` is a descriptor lookup (~80 ns on 3.11; issue 7, S7).
_AWAIT_CONNECT, _AWAIT_CONNACK, _CLOSED = _S.AWAIT_CONNECT, _S.AWAIT_CONNACK, _S.CLOSED
_CONNECTED = _S.CONNECTED

# Sent once per message or request, in CONNECTED only, without changing state.
_ACKS: frozenset[type[Packet]] = frozenset({PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck})
_V3_UNSUPPORTED_LEVEL = b"\x20\x02\x00\x01"  # 3.1.1 CONNACK, return code 1
# A successful 3.1 / 3.1.1 CONNACK, by Session Present.
_V3_CONNACK = (b"\x20\x02\x00\x00", b"\x20\x02\x01\x00")
_DEFAULT_RECEIVE_MAXIMUM = 65535
_UNSPECIFIED = ReasonCode.UNSPECIFIED_ERROR
_PUBACK_FIRST = 0x40
_PUBACK = struct.Struct("!BBH").pack  # first byte, remaining length 2, packet id
_PUBACK_WITH_CODE = struct.Struct("!BBHB").pack  # ... remaining length 3, and a reason code


class MqttConnection(ConnectionOutput):
    """Server side of one MQTT 3.1 / 3.1.1 / 5.0 connection.

    `max_packet_size`: the largest packet accepted (fixed header included); larger is 0x95.
    `server_keep_alive`: for MQTT 5, the keep-alive the server imposes; it is added to a
    successful CONNACK that does not set Server Keep Alive itself.
    `connect_timeout`: seconds to wait for CONNECT, or None. `now`: when the connection opened.
    """

    # One per client connection: slots keep an idle connection small (issue 7, S7).
    __slots__ = (
        "_connect_deadline",
        "_decoder",
        "_last_received",
        "_maximum_qos",
        "_out",
        "_ping_pending",
        "_retain_available",
        "_server_keep_alive",
        "_session_expiry_interval",
        "_topic_alias_maximum",
        "_topic_aliases",
        "_version",
        "client_maximum_packet_size",
        "client_receive_maximum",
        "client_topic_alias_maximum",
        "connect",
        "enhanced_auth",
        "keep_alive",
        "max_packet_size",
        "plain_publish",
        "protocol_level",
        "request_problem_information",
        "state",
    )

    def __init__(
        self,
        *,
        max_packet_size: int,
        server_keep_alive: int | None = None,
        connect_timeout: float | None = None,
        now: float = 0.0,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.state = _AWAIT_CONNECT
        # The client's CONNECT until a successful CONNACK; then dropped, as most connections
        # stay idle (issue 7, S7). Whether it named an Authentication Method outlives it.
        self.connect: Connect | None = None
        self.enhanced_auth = False
        self.protocol_level: int | None = None
        # Effective keep-alive in seconds (0: none): the client's, or Server Keep Alive.
        self.keep_alive = 0
        # The client's limits from CONNECT, for the session to honour.
        self.client_receive_maximum = _DEFAULT_RECEIVE_MAXIMUM
        self.client_maximum_packet_size: int | None = None
        self.client_topic_alias_maximum = 0
        self.request_problem_information = True
        self._decoder = PacketDecoder(max_packet_size=max_packet_size)
        # Set by a server's handler that takes `PlainPublish` events (PacketDecoder.feed_plain).
        self.plain_publish = False
        self._version = 0
        self._server_keep_alive = server_keep_alive
        self._connect_deadline = None if connect_timeout is None else now + connect_timeout
        self._last_received = now
        self._out: list[bytes] = []
        self._ping_pending = False
        self._session_expiry_interval = 0
        # What our CONNACK told the client (MQTT 5 defaults until then).
        self._topic_alias_maximum = 0
        self._maximum_qos = 2
        self._retain_available = True
        self._topic_aliases: dict[int, str] | None = None  # made by the first alias

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def decoder(self) -> PacketDecoder:
        """The input decoder, for a `RawFanout` (session_fanout.py) to see it idle."""
        return self._decoder

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Feed bytes from the client; returns packets and made-up events in wire order."""
        if self.state is _S.CLOSED:
            return []
        decoder = self._decoder
        try:
            if self.plain_publish:
                packets = decoder.feed_plain(data)
            else:
                packets = cast("list[Packet | Plain]", decoder.feed(data))
        except MqttError as exc:
            return [self._violated(exc.reason_code, exc.text)]
        if not packets:
            return []  # a decoder error comes with packets decoded before it, or raises
        # Keep-alive counts whole control packets, not bytes [MQTT-3.1.2-24].
        self._last_received = now
        v5 = self._version == MQTT_5
        if (
            decoder.all_plain
            and self.state is _S.CONNECTED
            and decoder.error is None
            and (not v5 or self._maximum_qos)
        ):
            # Plain items need no check once connected (QoS <= 1, no properties): the hot
            # path hands the decoder's list over as it is.
            return cast("list[Event]", packets)
        return self._events(packets, v5)

    def receive_qos0(self, data: bytes, now: float) -> tuple[str, bytes] | None:
        """`receive_data` of a read that is one plain QoS 0 PUBLISH once connected: its
        (topic, payload), which needs no check (`PacketDecoder.feed_qos0`). None, with nothing
        consumed, for anything else: `receive_data` it then."""
        if self.state is not _CONNECTED or not self.plain_publish:
            return None
        found = self._decoder.feed_qos0(data)
        if found is not None:
            self._last_received = now  # keep-alive [MQTT-3.1.2-24]
        return found

    def receive_connect(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """`receive_data` before CONNECT: a common CONNECT alone in the read skips the generic
        path (`PacketDecoder.feed_connect`; issue 7, S7)."""
        connect = self._decoder.feed_connect(data) if self.state is _AWAIT_CONNECT else None
        if connect is None:
            return self.receive_data(data, now)
        self._last_received = now
        self._on_connect(connect)
        self.state = _AWAIT_CONNACK
        return [connect]

    def _events(self, packets: list[Packet | Plain], v5: bool) -> list[Event]:
        events: list[Event] = []
        for item in packets:
            if isinstance(item, tuple | int):
                if self.state is _S.CONNECTED and (
                    not v5 or isinstance(item, int) or self._maximum_qos or len(item) == 2
                ):
                    events.append(item)
                    continue
                # Before CONNACK (or above an MQTT 5 Maximum QoS 0) the state table and the
                # checks judge the packet it stands for.
                packet: Packet = packet_of(item)
            else:
                packet = item
            if type(packet) is Publish and self.state is _S.CONNECTED:
                # The hot path: skip the table lookup for the common case.
                if v5 and (
                    packet.properties is not EMPTY_PROPERTIES
                    or packet.qos > self._maximum_qos
                    or (packet.retain and not self._retain_available)
                ):
                    try:
                        packet = self._check_publish(packet)
                    except MqttError as exc:
                        events.append(self._violated(exc.reason_code, exc.text))
                        break
                events.append(packet)
                continue
            try:
                event = self._receive(packet)
            except MqttError as exc:
                events.append(self._violated(exc.reason_code, exc.text))
                break
            if event is not None:
                events.append(event)
            if self.state is _S.CLOSED:
                break
            v5 = self._version == MQTT_5
        error = self._decoder.error
        if error is not None and self.state is not _S.CLOSED:
            events.append(self._violated(error.reason_code, error.text))
        return events

    def _receive(self, packet: Packet) -> Packet | None:
        kind = type(packet)
        next_state = RECEIVE_TRANSITIONS.get((self.state, kind))
        if next_state is None:
            rule = " [MQTT-3.1.0-2]" if kind is Connect else ""
            raise ProtocolError(f"unexpected {kind.__name__} in state {self.state.name}{rule}")
        if (
            self.state is _S.AWAIT_CONNACK
            and kind is not Auth
            and kind is not Disconnect
            and self.enhanced_auth
        ):
            raise ProtocolError(
                f"{kind.__name__} during enhanced authentication, before CONNACK [MQTT-3.1.2-33]"
            )
        if isinstance(packet, Connect):
            self._on_connect(packet)
        elif isinstance(packet, PingReq):
            # Answered here [MQTT-3.12.4-1]; before CONNACK it waits for it [MQTT-3.2.0-1].
            if self.state is _S.CONNECTED:
                self._out.append(encode(PingResp(), self._version))
            else:
                self._ping_pending = True
            return None
        elif isinstance(packet, Publish):
            if self._version == MQTT_5:
                packet = self._check_publish(packet)
        elif isinstance(packet, Disconnect):
            requested = packet.properties.session_expiry_interval
            if self._session_expiry_interval == 0 and requested:
                raise ProtocolError("DISCONNECT sets a Session Expiry Interval after CONNECT set 0")
        elif isinstance(packet, Auth) and not self.enhanced_auth:
            raise ProtocolError("AUTH without an Authentication Method in CONNECT [MQTT-4.12.0-7]")
        self.state = next_state
        return packet

    def _on_connect(self, packet: Connect) -> None:
        self.connect = packet
        self._connect_deadline = None  # met: the float need not stay with an idle connection
        self.protocol_level = self._version = packet.protocol_level
        self.keep_alive = packet.keep_alive
        if packet.protocol_level != MQTT_5:
            return
        props = packet.properties
        self.enhanced_auth = props.authentication_method is not None
        if self._server_keep_alive is not None:
            self.keep_alive = self._server_keep_alive
        self.client_receive_maximum = props.receive_maximum or _DEFAULT_RECEIVE_MAXIMUM
        self.client_maximum_packet_size = props.maximum_packet_size
        self.client_topic_alias_maximum = props.topic_alias_maximum or 0
        self.request_problem_information = props.request_problem_information is not False
        self._session_expiry_interval = props.session_expiry_interval or 0

    def _check_publish(self, packet: Publish) -> Publish:
        """MQTT 5 checks against our CONNACK, and Topic Alias resolution (spec 3.3.2.3.4):
        the returned packet always names its topic; `topic_alias` stays as sent."""
        if packet.qos > self._maximum_qos:
            raise ProtocolError(
                f"QoS {packet.qos} above Maximum QoS {self._maximum_qos}",
                ReasonCode.QOS_NOT_SUPPORTED,
            )
        if packet.properties.subscription_identifiers:
            raise ProtocolError("Subscription Identifier from a client [MQTT-3.3.4-6]")
        if packet.retain and not self._retain_available:
            raise ProtocolError(
                "RETAIN set but Retain Available is 0", ReasonCode.RETAIN_NOT_SUPPORTED
            )
        alias = packet.properties.topic_alias
        if alias is None:
            return packet
        if not 0 < alias <= self._topic_alias_maximum:
            raise ProtocolError(
                f"Topic Alias {alias} outside 1..{self._topic_alias_maximum} [MQTT-3.3.2-9]",
                ReasonCode.TOPIC_ALIAS_INVALID,
            )
        if packet.topic:
            if self._topic_aliases is None:
                self._topic_aliases = {}
            self._topic_aliases[alias] = packet.topic
            return packet
        topic = None if self._topic_aliases is None else self._topic_aliases.get(alias)
        if topic is None:
            raise ProtocolError(f"Topic Alias {alias} has no topic yet")
        return dataclasses.replace(packet, topic=topic)

    # -- timers ------------------------------------------------------------------------------

    def reset_keepalive(self, now: float) -> None:
        """Count the client as heard from now: the server stopped reading it (memory alarm),
        so its PINGREQs wait unread in the socket."""
        self._last_received = now

    def get_timer(self) -> float | None:
        """When `handle_timer` should next run, or None."""
        state = self.state
        if state is _AWAIT_CONNECT:
            return self._connect_deadline
        if state is _CLOSED or not self.keep_alive:
            return None
        return self._last_received + 1.5 * self.keep_alive

    def handle_timer(self, now: float) -> list[Event]:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return []
        if self.state is _S.AWAIT_CONNECT:
            self.state = _S.CLOSED
            return [ConnectTimedOut()]
        if self.state is _S.CONNECTED and self._version == MQTT_5:
            self._queue(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))
        self.state = _S.CLOSED
        return [KeepaliveExpired(self.keep_alive)]

    # -- output ------------------------------------------------------------------------------

    def send(self, packet: Packet) -> bool:
        """Queue a packet. False when it was not sent: the connection is closed, or (MQTT 5)
        it exceeds the client's Maximum Packet Size even without Reason String and User
        Properties [MQTT-3.1.2-27]; a PUBLISH dropped that way counts as delivered
        [MQTT-3.1.2-28]. A CONNACK that cannot be sent closes the connection."""
        kind = type(packet)
        if kind in _ACKS and self.state is _S.CONNECTED:
            # Per-message acknowledgements: the table maps these to CONNECTED -> CONNECTED.
            return self._queue(packet)
        if isinstance(packet, Publish):
            return self.send_publish(
                packet.topic,
                packet.payload,
                qos=packet.qos,
                retain=packet.retain,
                dup=packet.dup,
                packet_id=packet.packet_id,
                properties=packet.properties,
            )
        state = self.state
        if state is _S.CLOSED:
            return False
        key: type[Packet] | str = kind
        if isinstance(packet, ConnAck) and packet.reason_code >= 0x80:
            key = REFUSED_CONNACK
        next_state = SEND_TRANSITIONS.get((state, key))
        if next_state is None:
            raise LocalProtocolError(f"cannot send {kind.__name__} in state {state.name}")
        if isinstance(packet, ConnAck) and next_state is _S.CONNECTED:
            packet = self._on_connack(packet)
        elif isinstance(packet, Disconnect):
            packet = Disconnect(packet.reason_code, server_disconnect_properties(packet.properties))
        if self._version == MQTT_5:
            sent = self._queue(packet)
        elif isinstance(packet, Auth):
            raise LocalProtocolError("AUTH exists only in MQTT 5")
        elif isinstance(packet, Disconnect):
            sent = True  # 3.1.1 has no server DISCONNECT: closing is the message
        else:
            sent = self._queue(packet)
        if not sent and isinstance(packet, ConnAck):
            next_state = _S.CLOSED  # a CONNACK the client cannot take ends the connection
        self.state = next_state
        if self._ping_pending and next_state is _S.CONNECTED:
            self._ping_pending = False
            self._out.append(encode(PingResp(), self._version))
        return sent

    def send_connack(
        self, session_present: bool, properties: Properties = EMPTY_PROPERTIES
    ) -> bool:
        """`send(ConnAck(session_present, SUCCESS, properties))`. For 3.1 / 3.1.1 (no
        properties, no size limit) the CONNACK is a constant: no packet is built or encoded,
        the state table still decides whether it may go (issue 7, S7: the connect rate)."""
        if self._version == MQTT_5:
            return self.send(ConnAck(session_present, ReasonCode.SUCCESS, properties))
        next_state = SEND_TRANSITIONS.get((self.state, ConnAck))
        if next_state is None:
            if self.state is _CLOSED:
                return False
            raise LocalProtocolError(f"cannot send ConnAck in state {self.state.name}")
        out = self._out
        out.append(_V3_CONNACK[session_present])
        self.state = next_state
        self.connect = None
        if self._ping_pending:
            self._ping_pending = False
            out.append(encode(PingResp(), self._version))
        return True

    def send_puback(self, packet_id: int, reason_code: int = 0) -> bool:
        """`send(PubAck(packet_id, reason_code))` without building the `PubAck`: the QoS 1
        ingest hot path. The same bytes, the same checks."""
        # No size check: a client whose Maximum Packet Size is below 4 could not take the
        # (5-byte) CONNACK, so it is never CONNECTED.
        if self.state is not _S.CONNECTED:
            return self.send(PubAck(packet_id, ReasonCode(reason_code)))
        if reason_code and self._version == MQTT_5:
            self._out.append(_PUBACK_WITH_CODE(_PUBACK_FIRST, 3, packet_id, reason_code))
        else:
            self._out.append(_PUBACK(_PUBACK_FIRST, 2, packet_id))
        return True

    def close(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        """Say goodbye as the protocol allows and mark the connection CLOSED: MQTT 5 gets a
        DISCONNECT (or, before CONNACK, a refusing CONNACK); 3.1.1 gets a refusing CONNACK
        before CONNACK and nothing after it."""
        state = self.state
        if state is _S.CONNECTED:
            if self._version == MQTT_5:
                code = reason_code if reason_code in DISCONNECT_CODES else _UNSPECIFIED
                self._queue(Disconnect(code, server_disconnect_properties(properties)))
        elif state is _S.AWAIT_CONNACK and reason_code >= 0x80:
            self._queue(ConnAck(False, connack_code(reason_code, _UNSPECIFIED), properties))
        self.state = _S.CLOSED

    def _on_connack(self, packet: ConnAck) -> ConnAck:
        self.connect = None
        if self._version != MQTT_5:
            return packet
        props = packet.properties
        if self._server_keep_alive is not None and props.server_keep_alive is None:
            props = dataclasses.replace(props, server_keep_alive=self._server_keep_alive)
            packet = dataclasses.replace(packet, properties=props)
        if props.server_keep_alive is not None:
            self.keep_alive = props.server_keep_alive
        self._topic_alias_maximum = props.topic_alias_maximum or 0
        self._maximum_qos = 2 if props.maximum_qos is None else props.maximum_qos
        self._retain_available = props.retain_available is not False
        return packet

    def _violated(self, reason_code: ReasonCode, text: str) -> ProtocolViolation:
        state = self.state
        if state is _S.CONNECTED:
            if self._version == MQTT_5:
                code = reason_code if reason_code in DISCONNECT_CODES else ReasonCode.PROTOCOL_ERROR
                self._queue(Disconnect(code, Properties(reason_string=text)))
        elif state is _S.AWAIT_CONNACK:
            if self._version == MQTT_5:
                self._queue(ConnAck(False, connack_code(reason_code, ReasonCode.PROTOCOL_ERROR)))
        elif reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
            # Version unknown: answer in the 3.1.1 format every client can read.
            self._out.append(_V3_UNSUPPORTED_LEVEL)
        self.state = _S.CLOSED
        return ProtocolViolation(reason_code, text)


__all__ = [
    "RECEIVE_TRANSITIONS",
    "SEND_TRANSITIONS",
    "ConnectTimedOut",
    "ConnectionState",
    "Event",
    "KeepaliveExpired",
    "LocalProtocolError",
    "MqttConnection",
    "ProtocolViolation",
]
