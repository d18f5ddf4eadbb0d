"""One MQTT client connection on the core: CONNECT, PUBLISH, SUBSCRIBE and the QoS flows.

The handler never touches a socket: it reads events from the sans-I/O `MqttConnection`, acts on
the hub and the core, and writes packets back into the machine. The listener flushes
`conn.data_to_send()` when `on_output` says there is something, once per loop turn.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.bridge.topics import RoutingKeyTooLong
from gateway.core.errors import AuthenticationFailed, CoreError
from gateway.core.flow import PublisherFlow
from gateway.mqtt.codec_errors import InvalidTopic
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
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
)
from gateway.mqtt.session import Session, TopicSubscription
from gateway.mqtt.session_flow import read_gate
from gateway.mqtt.session_hub import MqttHub, PublishRefused
from gateway.mqtt.topics import parse_shared_subscription, validate_topic_filter

_SUCCESS = ReasonCode.SUCCESS


class ClientHandler:
    """Per-connection MQTT logic; the session it attaches to may outlive it."""

    def __init__(
        self,
        hub: MqttHub,
        conn: MqttConnection,
        peer_host: str,
        *,
        on_output: Callable[[], None],
        close_transport: Callable[[], None],
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.peer_host = peer_host
        self._on_output = on_output
        self._close_transport = close_transport
        self.writable = True
        self.window = hub.settings.max_inflight
        self.protocol_level = 4
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.will: Will | None = None
        self.closed = False
        self._counted = False
        self._aliases_out: dict[str, int] = {}
        self._alias_limit = 0
        # PUBACK/PUBREC waiting for the store's commit, in PUBLISH order [MQTT-4.6.0-2]:
        # (record number to wait for, 0 for one held only to keep the order; the packet).
        # CONNACK/SUBACK/UNSUBACK of a stored session change wait the same way, as a callable
        # that sends them (and what must follow them).
        self._held: deque[tuple[int, PubAck | PubRec | Callable[[], None]]] = deque()
        # While a CONNACK waits for its commit nothing is delivered; the socket's own state.
        self._connack_held = False
        self._socket_writable = True
        # Flow control (core/flow.py), made when a publish first reaches a backed-up queue.
        self._flow: PublisherFlow | None = None
        # What each machine event means here: one dict lookup per packet.
        self._dispatch: dict[type[Event], Callable[[Any], None]] = {
            Publish: self._on_publish,
            PubAck: self._on_puback,
            PubRec: self._on_pubrec,
            PubRel: self._on_pubrel,
            PubComp: self._on_pubcomp,
            Subscribe: self._on_subscribe,
            Unsubscribe: self._on_unsubscribe,
            Connect: self._on_connect,
            Disconnect: self._on_disconnect,
            Auth: self._on_auth,
            KeepaliveExpired: self._on_gone,
            ConnectTimedOut: self._on_gone,
            ProtocolViolation: self._on_gone,
        }

    # -- output ------------------------------------------------------------------------------

    def send(self, packet: ConnAck | PubAck | PubRec | PubRel | PubComp | SubAck | UnsubAck
             ) -> None:  # fmt: skip
        self.conn.send(packet)
        self._on_output()

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
        self._on_output()
        if sent:
            if new_alias is not None:
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
        dispatch = self._dispatch
        hits = self.hub.broker.flow.hits
        if hits:
            hits.clear()  # reached by earlier publishes, not by this batch
        session = self.session
        if session is None:
            for event in events:
                if self.closed:
                    return
                dispatch[type(event)](event)
        else:
            session.batching = True
            try:
                for event in events:
                    if self.closed:
                        break
                    dispatch[type(event)](event)
            finally:
                session.end_batch()
        if hits:
            self._flow_hit()

    def _flow_hit(self) -> None:
        """This batch published into queues over high water: stop reading until they drain."""
        core_flow = self.hub.broker.flow
        flow = self._flow
        if flow is None and not self.closed:
            gate = read_gate(self._close_transport)
            session = self.session
            if gate is not None and session is not None:
                flow = self._flow = PublisherFlow(
                    core_flow, session, pause=gate[0], resume=gate[1],
                    subscriptions=session.core_subscriptions,
                )  # fmt: skip
        if flow is None or self.closed:
            core_flow.hits.clear()  # no way to pause (WebSocket), or closing anyway
            return
        flow.after_batch()

    def _on_puback(self, packet: PubAck) -> None:
        if self.session is not None:
            self.session.puback(packet.packet_id)

    def _on_pubcomp(self, packet: PubComp) -> None:
        if self.session is not None:
            self.session.pubcomp(packet.packet_id)

    def _on_auth(self, packet: Auth) -> None:
        self._fail(ReasonCode.PROTOCOL_ERROR)  # enhanced authentication is not offered

    def _on_gone(self, event: KeepaliveExpired | ConnectTimedOut | ProtocolViolation) -> None:
        self._finish()  # the machine already said what the protocol allows

    # -- CONNECT -----------------------------------------------------------------------------

    def _refuse(self, code: ReasonCode) -> None:
        self.conn.send(ConnAck(False, code))
        self._on_output()
        self.closed = True
        self._close_transport()

    def _on_connect(self, connect: Connect) -> None:
        hub = self.hub
        settings = hub.settings
        self.protocol_level = connect.protocol_level
        v5 = connect.protocol_level == MQTT_5
        if connect.properties.authentication_method is not None:
            self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD)
            return
        if hub.connections >= settings.max_connections:
            self._refuse(ReasonCode.SERVER_BUSY if v5 else ReasonCode.SERVER_UNAVAILABLE)
            return
        if connect.username is None:
            name, password = "guest", "guest"  # anonymous MQTT is guest, loopback only
        else:
            name = connect.username
            try:
                password = (connect.password or b"").decode("utf-8")
            except UnicodeDecodeError:
                password = "\x00" + hashlib.sha256(connect.password or b"").hexdigest()
        try:
            user = hub.users.authenticate(name, password, self.peer_host, mechanism="MQTT")
            hub.users.check_vhost(user, settings.vhost)
        except AuthenticationFailed as exc:
            # As RabbitMQ: right credentials from the wrong place are "not authorized" (3.1.1
            # return code 5); wrong credentials are 0x86 (3.1.1 return code 4).
            loopback_refusal = "localhost" in exc.reason
            self._refuse(
                ReasonCode.NOT_AUTHORIZED if loopback_refusal
                else ReasonCode.BAD_USER_NAME_OR_PASSWORD
            )  # fmt: skip
            return
        except CoreError:
            self._refuse(ReasonCode.NOT_AUTHORIZED)
            return
        self.username = user.name
        client_id = connect.client_id
        assigned: str | None = None
        if not client_id:
            if (not connect.clean_start and not v5) or connect.protocol_level == MQTT_3_1:
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)  # [MQTT-3.1.3-8]
                return
            client_id = assigned = hub.assign_client_id()
        max_keepalive = settings.max_keepalive
        if not v5 and max_keepalive < 65535 and not 0 < connect.keep_alive <= max_keepalive:
            # 3.1.1 cannot be told a Server Keep Alive: as Mosquitto, refuse it with
            # "identifier rejected" (return code 2).
            self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            return
        self.client_id = client_id
        requested_expiry = connect.properties.session_expiry_interval if v5 else None
        if v5:
            expiry = requested_expiry or 0
        else:
            expiry = 0 if connect.clean_start else settings.max_session_expiry
        capped = min(expiry, settings.max_session_expiry)

        written = self._written()
        old = hub.sessions.get(client_id)
        if old is not None and old.handler is not None:
            old.handler.taken_over()
        delayed_will = hub.take_pending_will(client_id)
        if delayed_will is not None and connect.clean_start:
            # Clean Start ends the old session, and a will waiting for that goes now (as
            # Mosquitto does); a resumed session cancels it.
            hub.publish_will(client_id, delayed_will)
        old = hub.sessions.get(client_id)
        session_present = False
        if old is not None and connect.clean_start:
            hub.discard_session(old)
            old = None
        if old is None:
            session = Session(hub, client_id, expiry_interval=capped)
            hub.sessions[client_id] = session
        else:
            session = old
            session.expiry_interval = capped
            session_present = True
        self.session = session
        session.attach(self)
        hub.session_attached(session)
        hub.connections += 1
        self._counted = True
        self.will = connect.will
        self.window = min(settings.max_inflight, self.conn.client_receive_maximum)
        self._alias_limit = self.conn.client_topic_alias_maximum

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
        connack = ConnAck(session_present, _SUCCESS, props)
        wait_for = self._written_since(written)
        if not wait_for:
            self.send(connack)
            if session_present:
                self._resend_inflight(session)
                session.resume()
            return
        # A stored session change: CONNACK after its commit, and nothing delivered before.
        self._connack_held = True
        self.writable = False

        def connack_committed() -> None:
            self._connack_held = False
            self.send(connack)
            if session_present:
                self._resend_inflight(session)
            self.set_writable(self._socket_writable)

        self._ack(connack_committed, wait_for)

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
        self._on_output()
        self._finish()

    # -- PUBLISH -----------------------------------------------------------------------------

    def _on_publish(self, publish: Publish) -> None:
        session = self.session
        assert session is not None
        qos = publish.qos
        packet_id = publish.packet_id
        if qos == 2:
            inbound = session.inbound_qos2
            if packet_id in inbound:
                self._ack(PubRec(packet_id))  # a duplicate: already routed once [MQTT-4.3.3-10]
                return
            if self.protocol_level == MQTT_5 and len(inbound) >= self.hub.settings.max_inflight:
                # More unfinished QoS 2 exchanges than the Receive Maximum we advertised (3.3.4).
                self._fail(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
                return
        if publish.properties.payload_format_indicator == 1:
            try:
                publish.payload.decode("utf-8")
            except UnicodeDecodeError:
                self._publish_refused(
                    publish,
                    ReasonCode.PAYLOAD_FORMAT_INVALID,
                    "payload is not valid UTF-8 (Payload Format Indicator 1)",
                )
                return
        # QoS 1/2 messages are persistent: one the store records is acked after its commit.
        barrier = self.hub.broker.commit_barrier if qos else None
        written = 0 if barrier is None else barrier.written
        try:
            result = self.hub.route_publish(publish, self.client_id)
        except PublishRefused as exc:
            self._publish_refused(publish, exc.reason_code, exc.text)
            return
        except CoreError as exc:
            self._publish_refused(publish, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, exc.text)
            return
        if qos == 0:
            return
        if result.rejected:
            if self.protocol_level == MQTT_5:
                self._publish_refused(publish, ReasonCode.QUOTA_EXCEEDED, "a target queue is full")
            else:
                # 3.1.1 cannot say "not taken": closing makes the client send it again later
                # (DESIGN.md section 5).
                self._fail(ReasonCode.QUOTA_EXCEEDED)
            return
        code = _SUCCESS if result.routed else ReasonCode.NO_MATCHING_SUBSCRIBERS
        if self.protocol_level != MQTT_5:
            code = _SUCCESS
        assert packet_id is not None
        if qos == 2:
            session.inbound_qos2.add(packet_id)
            self.hub.session_changed(session)  # a persistent session stores the id first
        wait_for = 0
        if barrier is not None and barrier.written != written:
            wait_for = barrier.written
        if qos == 1:
            self._ack(PubAck(packet_id, code), wait_for)
        else:
            self._ack(PubRec(packet_id, code), wait_for)

    def _ack(self, packet: PubAck | PubRec | Callable[[], None], wait_for: int = 0) -> None:
        """Send now, or hold until the store commits record ``wait_for`` (and whatever is
        held before it)."""
        held = self._held
        if not wait_for and not held:
            if callable(packet):
                packet()
            else:
                self.send(packet)
            return
        held.append((wait_for, packet))
        if len(held) == 1:
            barrier = self.hub.broker.commit_barrier
            assert barrier is not None
            barrier.after_commit(wait_for, self._committed)

    def _committed(self) -> None:
        held = self._held
        if self.closed or not held:
            return
        barrier = self.hub.broker.commit_barrier
        # No barrier any more: the store closed, which commits everything first.
        committed = barrier.committed if barrier is not None else held[-1][0]
        while held and held[0][0] <= committed and not self.closed:
            item = held.popleft()[1]
            if callable(item):
                item()
            else:
                self.conn.send(item)
        self._on_output()
        if held and barrier is not None:
            barrier.after_commit(held[0][0], self._committed)

    def _written(self) -> int:
        barrier = self.hub.broker.commit_barrier
        return 0 if barrier is None else barrier.written

    def _written_since(self, written: int) -> int:
        """The record to wait for when the store was handed records since ``written``."""
        now = self._written()
        return now if now != written else 0

    def _publish_refused(self, publish: Publish, code: ReasonCode, text: str) -> None:
        """A PUBLISH the gateway will not take, answered as Mosquitto does: QoS 1/2 get their
        PUBACK/PUBREC (in MQTT 5 with the reason code, and a Reason String the machine drops
        when the client asked for no problem information); QoS 0 is dropped silently."""
        self.hub.stats["refused"] += 1
        packet_id = publish.packet_id
        if publish.qos == 0 or packet_id is None:
            return
        ack = PubAck if publish.qos == 1 else PubRec
        if self.protocol_level == MQTT_5:
            self.send(ack(packet_id, code, Properties(reason_string=text)))
        else:
            self.send(ack(packet_id))

    def _on_pubrel(self, pubrel: PubRel) -> None:
        session = self.session
        assert session is not None
        if pubrel.packet_id in session.inbound_qos2:
            session.inbound_qos2.discard(pubrel.packet_id)
            self.hub.session_changed(session)
            self.send(PubComp(pubrel.packet_id))
        else:
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.protocol_level == MQTT_5 else \
                _SUCCESS  # fmt: skip
            self.send(PubComp(pubrel.packet_id, code))

    def _on_pubrec(self, pubrec: PubRec) -> None:
        session = self.session
        assert session is not None
        failed = pubrec.reason_code >= 0x80
        if session.pubrec(pubrec.packet_id, failed):
            if not failed:
                self.send(PubRel(pubrec.packet_id))
        elif not failed:
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.protocol_level == MQTT_5 else \
                _SUCCESS  # fmt: skip
            self.send(PubRel(pubrec.packet_id, code))

    # -- SUBSCRIBE ---------------------------------------------------------------------------

    def _on_subscribe(self, packet: Subscribe) -> None:
        session = self.session
        assert session is not None
        identifiers = packet.properties.subscription_identifiers
        identifier = identifiers[0] if identifiers else None
        written = self._written()
        codes: list[ReasonCode] = []
        retained_for: list[tuple[str, str]] = []
        for full_filter, options in packet.subscriptions:
            try:
                validate_topic_filter(full_filter)
                group, topic_filter = parse_shared_subscription(full_filter)
                key = self.hub.translator.filter_to_binding_key(topic_filter)
            except (InvalidTopic, RoutingKeyTooLong):
                codes.append(ReasonCode.TOPIC_FILTER_INVALID)
                continue
            if group is not None and options.no_local:
                self._fail(ReasonCode.PROTOCOL_ERROR)  # [MQTT-3.8.3-4]
                return
            qos = min(options.qos, 2)
            options = SubscriptionOptions(qos, options.no_local, options.retain_as_published,
                                          options.retain_handling)  # fmt: skip
            existed = full_filter in session.subscriptions
            try:
                if group is None:
                    self._subscribe_plain(session, full_filter, topic_filter, key, options,
                                          identifier)  # fmt: skip
                else:
                    self._subscribe_shared(session, full_filter, group, topic_filter, key,
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
            self.send(suback)
            for full_filter, topic_filter in retained_for:
                self.hub.send_retained(session, full_filter, topic_filter)

        # A persistent session's subscriptions are acknowledged once they are on disk.
        self._ack(send_suback, self._written_since(written))

    def _subscribe_plain(
        self,
        session: Session,
        full_filter: str,
        topic_filter: str,
        key: str,
        options: SubscriptionOptions,
        identifier: int | None,
    ) -> None:
        hub = self.hub
        hub.ensure_session_queue(session)
        bindings = hub.topic_map.bindings(topic_filter, key)
        hub.bind_all(session.queue_name, bindings, session)
        session.subscriptions[full_filter] = TopicSubscription(
            topic_filter, options, identifier, key,
            match_filter=hub.match_filter(topic_filter, key), bindings=bindings,
        )  # fmt: skip

    def _subscribe_shared(
        self,
        session: Session,
        full_filter: str,
        group: str,
        topic_filter: str,
        key: str,
        options: SubscriptionOptions,
        identifier: int | None,
    ) -> None:
        hub = self.hub
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

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        hub = self.hub
        written = self._written()
        codes: list[ReasonCode] = []
        for full_filter in packet.topic_filters:
            sub = session.subscriptions.pop(full_filter, None)
            if sub is None:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
                continue
            codes.append(_SUCCESS)
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
        self._ack(lambda: self.send(unsuback), self._written_since(written))

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

    def _fail(self, code: ReasonCode, text: str | None = None) -> None:
        """Close the connection; MQTT 5 clients get DISCONNECT with the reason code."""
        props = EMPTY_PROPERTIES if text is None else Properties(reason_string=text)
        self.conn.close(code, props)
        self._on_output()
        self._finish()

    def shutdown(self) -> None:
        """The gateway is stopping: MQTT 5 clients get DISCONNECT 0x8B."""
        if self.closed:
            return
        self.conn.close(ReasonCode.SERVER_SHUTTING_DOWN)
        self._on_output()
        self._finish()

    def connection_lost(self) -> None:
        """The transport is gone (the client dropped it, or we closed it)."""
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
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
        self._close_transport()


def shared_queue_name(group: str, key: str) -> str:
    name = f"mqtt-shared-{group}-{key}"
    if len(name.encode()) > 255:
        name = "mqtt-shared-" + hashlib.sha256(f"{group}\x00{key}".encode()).hexdigest()
    return name


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
