"""One MQTT client connection on the core: CONNECT, PUBLISH and the QoS flows.

The handler never touches a socket: it reads events from the sans-I/O `MqttConnection`, acts on
the hub and the core, and writes packets back into the machine. Its owner (`HandlerOwner`: the
listener's protocol) flushes `conn.data_to_send()` when told there is output, once per loop
turn, and offers `pause_reading` / `resume_reading` for flow control. PUBLISH and the
QoS 1/2 answers to it are in `session_publish`, SUBSCRIBE and UNSUBSCRIBE in
`session_subscribe`, acknowledgements that wait for the store's commit in `session_acks`.

The connection hands over the decoder's `Plain` items (codec.py) for the commonest packets:
`handle_events` takes a PUBACK's packet id and a QoS 0 PUBLISH's (topic, payload) without the
event table, and the handler tells its owner once per read, not once per answer.

One handler lives per connection, most of them idle (issue 7, S7): slots, one reference to the
owner instead of bound-method callbacks, a class-level event table, and containers made on
first use keep it small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.core.errors import CoreError
from gateway.core.flow import PublisherFlow
from gateway.mqtt.codec import PlainPubAck
from gateway.mqtt.connection import (
    ConnectTimedOut,
    Event,
    KeepaliveExpired,
    MqttConnection,
    ProtocolViolation,
)
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)
from gateway.mqtt.session import Session
from gateway.mqtt.session_acks import Held, HeldAcks
from gateway.mqtt.session_delivery import SessionDelivery
from gateway.mqtt.session_fanout import RawFanout
from gateway.mqtt.session_hub import MqttHub, PublishRefused
from gateway.mqtt.session_login import start_login
from gateway.mqtt.session_owner import HandlerOwner
from gateway.mqtt.session_publish import (
    on_plain_publish,
    on_plain_qos1,
    on_plain_qos1_run,
    on_publish,
    on_pubrec,
    on_pubrel,
)
from gateway.mqtt.session_subscribe import on_subscribe, on_unsubscribe, shared_queue_name

if TYPE_CHECKING:
    from gateway.core.queues import Queue
    from gateway.core.users import User

__all__ = ["ClientHandler", "HandlerOwner", "shared_queue_name"]

_SUCCESS = ReasonCode.SUCCESS


class ClientHandler:
    """Per-connection MQTT logic; the session it attaches to may outlive it.

    The owner's ``pause_reading`` / ``resume_reading`` stop and restart reading the client's
    socket: flow control (core/flow.py) holds a publisher whose PUBLISHes reach a backed-up
    queue. Without them the publisher is bounded by queue limits and the memory alarm only.
    """

    __slots__ = (
        "_alias_limit",
        "_aliases_out",
        "_connack_held",
        "_counted",
        "_flow",
        "_lone_topic",
        "_socket_writable",
        "client_id",
        "closed",
        "conn",
        "held",
        "hub",
        "login_wait",
        "owner",
        "peer_host",
        "protocol_level",
        "raw_fanout",
        "session",
        "username",
        "will",
        "window",
        "writable",
    )

    def __init__(
        self,
        hub: MqttHub,
        conn: MqttConnection,
        peer_host: str,
        owner: HandlerOwner,
    ) -> None:
        self.hub = hub
        self.conn = conn
        conn.plain_publish = True  # _on_plain_publish takes them
        self.peer_host = peer_host
        self.owner = owner
        self.writable = True
        self.window = hub.settings.max_inflight
        self.protocol_level = 4
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.will: Will | None = None
        self.closed = False
        # Events that came after a CONNECT whose password is being hashed (session_login.py).
        self.login_wait: list[Event] | None = None
        self._counted = False
        self._aliases_out: dict[str, int] | None = None  # made by the first aliased PUBLISH
        self._alias_limit = 0
        # Acknowledgements waiting for the store's commit (session_acks.py), made when the
        # first one has to wait.
        self.held: HeldAcks | None = None
        # While a CONNACK waits for its commit nothing is delivered; the socket's own state.
        self._connack_held = False
        self._socket_writable = True
        # Flow control (core/flow.py), made when a publish first reaches a backed-up queue.
        self._flow: PublisherFlow | None = None
        # The topic of the last lone QoS 0 PUBLISH, and where the next ones to it may be
        # written at once (`on_single_qos0`; the listener asks `raw_fanout` first).
        self._lone_topic = ""
        self.raw_fanout: RawFanout | None = None

    # -- output ------------------------------------------------------------------------------

    def on_output(self) -> None:
        """Tell the owner there is output (the session's delivery code calls this)."""
        self.owner.output_ready()

    def send(self, packet: ConnAck | PubAck | PubRec | PubRel | PubComp | SubAck | UnsubAck
             ) -> None:  # fmt: skip
        self.conn.send(packet)
        self.owner.output_ready()

    def send_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        packet_id: int | None,
        properties: Properties,
    ) -> bool:
        """Queue one PUBLISH (outbound Topic Alias applied); False if the client can't take it."""
        new_alias: str | None = None
        if self._alias_limit:
            aliases = self._aliases_out
            if aliases is None:
                aliases = self._aliases_out = {}
            alias = aliases.get(topic)
            if alias is not None:
                properties = _replace_alias(properties, alias)
                topic = ""
            elif len(aliases) < self._alias_limit:
                # The first PUBLISH carries topic and alias; later ones the alias only.
                new_alias = topic
                properties = _replace_alias(properties, len(aliases) + 1)
        sent = self.conn.send_publish(
            topic, payload, qos=qos, retain=retain, dup=dup, packet_id=packet_id,
            properties=properties,
        )  # fmt: skip
        self.owner.output_ready()
        if sent:
            if new_alias is not None and self._aliases_out is not None:
                # Only a mapping the client actually received may be relied on later.
                self._aliases_out[new_alias] = len(self._aliases_out) + 1
            self.hub.stats["delivered"] += 1
        return sent

    def set_writable(self, writable: bool) -> None:
        """Back-pressure from the socket: the core stops handing us messages while paused."""
        self._socket_writable = writable
        writable = self.writable = writable and not self._connack_held
        if writable and self.session is not None:
            self.session.resume()

    # -- events ------------------------------------------------------------------------------

    def handle_events(self, events: list[Event]) -> None:
        dispatch = _DISPATCH
        hits = self.hub.broker.flow.hits
        if hits:
            hits.clear()  # reached by earlier publishes, not by this batch
        session = self.session
        if session is None:
            for event in events:
                if self.closed:
                    break
                waiting = self.login_wait
                if waiting is not None:
                    waiting.append(event)  # after the CONNECT whose password is hashed
                    continue
                dispatch[type(event)](self, event)
        else:
            # The commonest events go without the table: a plain PUBACK (its packet id), a
            # plain QoS 0 PUBLISH (topic, payload), which needs no answer, and a plain QoS 1
            # PUBLISH (topic, payload, packet id). A read that starts with PUBACKs (a QoS 1
            # subscriber's read is nothing else) settles them in one call.
            session.batching = True
            puback = session.puback
            hub = self.hub
            route_plain = hub.route_plain
            client_id = self.client_id
            try:
                if events and isinstance(events[0], int) and not self.closed:
                    settled = session.pubacks(events)
                    if settled < len(events):
                        events = events[settled:]
                    else:
                        events = []
                elif events and type(events[0]) is tuple and len(events[0]) == 3:
                    # A publisher's read of QoS 1 PUBLISHes (S2): routed in one call.
                    taken = on_plain_qos1_run(self, events)
                    events = events[taken:] if taken < len(events) else []
                for event in events:
                    if self.closed:
                        break
                    if isinstance(event, tuple):
                        if len(event) == 2:
                            try:
                                route_plain(event[0], event[1], client_id, 0)
                            except (PublishRefused, CoreError):
                                # Dropped silently, as publish_refused does for QoS 0.
                                hub.stats["refused"] += 1
                        else:
                            on_plain_qos1(self, event[0], event[1], event[2])
                    elif isinstance(event, int):
                        puback(event)
                    else:
                        dispatch[type(event)](self, event)
            finally:
                session.end_batch()
        # The plain paths (PUBACKs to plain PUBLISHes) queue output without telling: once
        # per read is enough.
        self.owner.output_ready()
        if hits:
            self._flow_hit()

    def on_single_qos0(self, topic: str, payload: bytes, raw: bytes) -> None:
        """`handle_events` of a read that was one plain QoS 0 PUBLISH, ``raw`` (from
        `MqttConnection.receive_qos0`): routed, with no answer and no acks to batch; its
        subscribers of the same protocol level may be sent ``raw`` itself (S6)."""
        hub = self.hub
        hits = hub.broker.flow.hits
        if hits:
            hits.clear()
        if self.closed:
            return
        # The second lone PUBLISH in a row to a topic records where it goes: the next ones
        # may then skip the routing (`raw_fanout`, session_fanout.py).
        written: list[Queue | SessionDelivery] | None = None
        if topic == self._lone_topic:
            written = hub.raw_written = []
        else:
            self._lone_topic = topic
        try:
            hub.route_plain(topic, payload, self.client_id, 0, raw, self.protocol_level)
        except (PublishRefused, CoreError):
            hub.stats["refused"] += 1  # dropped silently, as publish_refused does for QoS 0
            written = None
        finally:
            hub.raw_written = None
        if written is not None:
            self.raw_fanout = hub.raw_fanout(self, topic, written)
        if hits:
            self._flow_hit()

    def _flow_hit(self) -> None:
        """This batch published into queues over high water: stop reading until they drain."""
        core_flow = self.hub.broker.flow
        flow = self._flow
        if flow is None and not self.closed:
            owner = self.owner
            session = self.session
            if owner.can_pause_reading and session is not None:
                flow = self._flow = PublisherFlow(
                    core_flow, session, pause=owner.pause_reading, resume=owner.resume_reading,
                    subscriptions=session.core_subscriptions,
                )  # fmt: skip
        if flow is None or self.closed:
            core_flow.hits.clear()  # no way to pause, or closing anyway
            return
        flow.after_batch()

    def _on_puback(self, packet: PubAck) -> None:
        if self.session is not None:
            self.session.puback(packet.packet_id)

    def _on_plain_puback(self, packet_id: PlainPubAck) -> None:
        session = self.session
        if session is not None:
            session.puback(packet_id)

    def _on_pubcomp(self, packet: PubComp) -> None:
        if self.session is not None:
            self.session.pubcomp(packet.packet_id)

    def _on_auth(self, packet: Auth) -> None:
        self.fail(ReasonCode.PROTOCOL_ERROR)  # enhanced authentication is not offered

    def _on_gone(self, event: KeepaliveExpired | ConnectTimedOut | ProtocolViolation) -> None:
        self._finish()  # the machine already said what the protocol allows

    # -- CONNECT -----------------------------------------------------------------------------

    def refuse(self, code: ReasonCode) -> None:
        """Answer the CONNECT with ``code`` and close."""
        self.conn.send(ConnAck(False, code))
        self.owner.output_ready()
        self.closed = True
        self.owner.close_transport()

    def _on_connect(self, connect: Connect) -> None:
        hub = self.hub
        settings = hub.settings
        level = self.protocol_level = connect.protocol_level
        v5 = level == MQTT_5
        properties = connect.properties
        # (EMPTY_PROPERTIES, the commonest, names no method: one identity test.)
        if properties is not EMPTY_PROPERTIES and properties.authentication_method is not None:
            self.refuse(ReasonCode.BAD_AUTHENTICATION_METHOD)
            return
        if hub.connections >= settings.max_connections:
            self.refuse(ReasonCode.SERVER_BUSY if v5 else ReasonCode.SERVER_UNAVAILABLE)
            return
        user = start_login(self, connect)
        if user is not None:
            self.connect_as(connect, user)

    def connect_as(self, connect: Connect, user: User) -> None:
        """The rest of a CONNECT once ``user`` logged in: the session, and the CONNACK."""
        hub = self.hub
        settings = hub.settings
        level = self.protocol_level
        v5 = level == MQTT_5
        properties = connect.properties
        self.username = user.name
        client_id = connect.client_id
        assigned: str | None = None
        if not client_id:
            if (not connect.clean_start and not v5) or level == MQTT_3_1:
                self.refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)  # [MQTT-3.1.3-8]
                return
            client_id = assigned = hub.assign_client_id()
        max_keepalive = settings.max_keepalive
        if not v5 and max_keepalive < 65535 and not 0 < connect.keep_alive <= max_keepalive:
            # 3.1.1 cannot be told a Server Keep Alive: as Mosquitto, refuse it with
            # "identifier rejected" (return code 2).
            self.refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            return
        self.client_id = client_id
        max_expiry = settings.max_session_expiry
        if v5:
            expiry = properties.session_expiry_interval or 0
        else:
            expiry = 0 if connect.clean_start else max_expiry
        capped = expiry if expiry < max_expiry else max_expiry

        # session_acks.written / written_since, inlined: records the store was handed meanwhile.
        barrier = hub.broker.commit_barrier
        before = 0 if barrier is None else barrier.written
        if client_id in hub.sessions or hub.delayed_wills:
            session, session_present = self._take_session(client_id, connect.clean_start, capped)
            self.session = session
            session.attach(self)
            hub.session_attached(session)
        else:
            # The commonest case: nothing to take over, resume or end for this client id. A
            # new session is attached from birth; a clean one has nothing to tell the store.
            self.session = session = Session(hub, client_id, expiry_interval=capped, handler=self)
            hub.sessions[client_id] = session
            session_present = False
            if capped:
                hub.session_attached(session)
        hub.connections += 1
        self._counted = True
        self.will = connect.will
        conn = self.conn
        window = conn.client_receive_maximum
        self.window = settings.max_inflight if settings.max_inflight < window else window
        self._alias_limit = conn.client_topic_alias_maximum

        props = EMPTY_PROPERTIES
        if v5:
            props = Properties(
                assigned_client_identifier=assigned,
                session_expiry_interval=capped if capped != expiry else None,
                receive_maximum=settings.max_inflight,
                topic_alias_maximum=settings.topic_alias_maximum or None,
                maximum_packet_size=settings.max_packet_size,
                retain_available=True,
                server_keep_alive=(
                    max_keepalive
                    if max_keepalive < 65535 and not 0 < connect.keep_alive <= max_keepalive
                    else None
                ),
            )
        wait_for = 0 if barrier is None or barrier.written == before else barrier.written
        if not wait_for:
            # No output_ready here: handle_events, the only caller, tells once per read.
            conn.send_connack(session_present, props)
            if session_present:
                self._resend_inflight(session)
                session.resume()
            return
        # A stored session change: CONNACK after its commit, and nothing delivered before.
        self._connack_held = True
        self.writable = False

        def connack_committed() -> None:
            self._connack_held = False
            self.conn.send_connack(session_present, props)
            self.owner.output_ready()
            if session_present:
                self._resend_inflight(session)
            self.set_writable(self._socket_writable)

        self.ack(connack_committed, wait_for)

    def _take_session(self, client_id: str, clean_start: bool, expiry: int
                      ) -> tuple[Session, bool]:  # fmt: skip
        """The session for a client id that has one, or a delayed will: take it over [MQTT-3.1.4-3],
        end it (Clean Start) or resume it. Returns it and Session Present."""
        hub = self.hub
        old = hub.sessions.get(client_id)
        if old is not None and old.handler is not None:
            old.handler.taken_over()
        delayed_will = hub.take_pending_will(client_id)
        if delayed_will is not None and clean_start:
            # Clean Start ends the old session, and a will waiting for that goes now (as
            # Mosquitto does); a resumed session cancels it.
            hub.publish_will(client_id, delayed_will)
        old = hub.sessions.get(client_id)
        if old is not None and clean_start:
            hub.discard_session(old)
            old = None
        if old is None:
            session = hub.sessions[client_id] = Session(hub, client_id, expiry_interval=expiry)
            return session, False
        old.expiry_interval = expiry
        return old, True

    def _resend_inflight(self, session: Session) -> None:
        for out in list(session.inflight.values()):
            if out.awaiting_pubcomp:
                self.send(PubRel(out.packet_id))
            else:
                self.send_publish(out.topic, out.payload, out.qos, out.retain, True,
                                  out.packet_id, out.properties)  # fmt: skip

    def taken_over(self) -> None:
        """Another connection claimed this client id [MQTT-3.1.4-3]."""
        if self.closed:
            return
        self.conn.close(ReasonCode.SESSION_TAKEN_OVER)
        self.owner.output_ready()
        self._finish()

    # -- acknowledgements ----------------------------------------------------------------

    def ack(self, packet: Held, wait_for: int = 0) -> None:
        """Send now, or hold until the store commits record ``wait_for`` (and whatever is
        held before it)."""
        held = self.held
        if not wait_for and not held:
            if callable(packet):
                packet()
            else:
                self.send(packet)
            return
        if held is None:
            held = self.held = HeldAcks(self)
        held.add(wait_for, packet)

    # -- endings -----------------------------------------------------------------------------

    def _on_disconnect(self, packet: Disconnect) -> None:
        session = self.session
        if session is not None and packet.properties.session_expiry_interval is not None:
            session.expiry_interval = min(
                packet.properties.session_expiry_interval, self.hub.settings.max_session_expiry
            )
        if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            self.will = None  # a normal DISCONNECT discards the will [MQTT-3.14.4-3]
        self._finish()

    def fail(self, code: ReasonCode, text: str | None = None) -> None:
        """Close the connection; MQTT 5 clients get DISCONNECT with the reason code."""
        props = EMPTY_PROPERTIES if text is None else Properties(reason_string=text)
        self.conn.close(code, props)
        self.owner.output_ready()
        self._finish()

    def shutdown(self) -> None:
        """The gateway is stopping: MQTT 5 clients get DISCONNECT 0x8B."""
        if self.closed:
            return
        self.conn.close(ReasonCode.SERVER_SHUTTING_DOWN)
        self.owner.output_ready()
        self._finish()

    def connection_lost(self) -> None:
        """The transport is gone (the client dropped it, or we closed it)."""
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.raw_fanout = None  # it holds its subscribers' handlers, and this one
        if self._flow is not None:
            self._flow.close()
        session = self.session
        if session is not None and session.handler is self:
            hub = self.hub
            will = self.will
            if will is not None:
                delay = will.properties.will_delay_interval or 0
                ends_in = float(session.expiry_interval)
                hub.schedule_will(self.client_id, will, delay, ends_in)
            hub.session_detached(session)
        if self._counted:
            self.hub.connections -= 1
            self._counted = False
        self.owner.close_transport()


# What each machine event means: one dict lookup per packet, and no per-connection table.
_DISPATCH: dict[type[Event], Callable[[ClientHandler, Any], None]] = {
    Publish: on_publish,
    # The decoder's `Plain` items (connection.plain_publish): PUBLISH tuples, PUBACK ids.
    tuple: on_plain_publish,
    int: ClientHandler._on_plain_puback,
    PubAck: ClientHandler._on_puback,
    PubRec: on_pubrec,
    PubRel: on_pubrel,
    PubComp: ClientHandler._on_pubcomp,
    Subscribe: on_subscribe,
    Unsubscribe: on_unsubscribe,
    Connect: ClientHandler._on_connect,
    Disconnect: ClientHandler._on_disconnect,
    Auth: ClientHandler._on_auth,
    KeepaliveExpired: ClientHandler._on_gone,
    ConnectTimedOut: ClientHandler._on_gone,
    ProtocolViolation: ClientHandler._on_gone,
}


def _replace_alias(props: Properties, alias: int) -> Properties:
    return Properties(
        payload_format_indicator=props.payload_format_indicator,
        message_expiry_interval=props.message_expiry_interval,
        content_type=props.content_type,
        response_topic=props.response_topic,
        correlation_data=props.correlation_data,
        subscription_identifiers=props.subscription_identifiers,
        user_properties=props.user_properties,
        topic_alias=alias,
    )
