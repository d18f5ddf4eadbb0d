"""MQTT PUBLISH <-> core Message, DESIGN.md sections 5 and 6.

An MQTT-origin message carries two views: AMQP properties (built here, so AMQP consumers and the
headers exchange see `delivery_mode`, `x-mqtt-publish-qos`, content type, user properties...) and
the original MQTT facts as annotations (topic, QoS, retain, MQTT 5 properties, origin client), so
a delivery back to MQTT is lossless and costs no translation. An AMQP-origin message has only the
AMQP view; `mqtt_view` derives what an MQTT subscriber sees from it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.bridge.reply import reply_topic_for_queue
from gateway.bridge.topics import TopicTranslator, is_valid_topic_name
from gateway.core.message import Message, message_with_properties, next_message_id
from gateway.core.message import Properties as AmqpProperties
from gateway.mqtt.codec import encode_publish_header, publish_header_parts
from gateway.mqtt.packets import EMPTY_PROPERTIES, MQTT_3_1_1, MQTT_5, Properties, Publish

# Annotation keys (the core never reads them; only bridge/ and the MQTT adapter do).
A_TOPIC = "mqtt.topic"
A_QOS = "mqtt.qos"
A_RETAIN = "mqtt.retain"
A_CLIENT = "mqtt.client_id"
A_PROPS = "mqtt.properties"
# The MqttView of an MQTT-origin message, built once at publish for every subscriber.
A_VIEW = "mqtt.view"
# On a retained copy queued for one subscriber: the subscription (filter) that asked for it.
A_RETAINED_FOR = "mqtt.retained_for"

H_QOS = "x-mqtt-publish-qos"
H_RETAIN = "x-mqtt-retain"
H_CONTENT_TYPE = "x-mqtt-content-type"
H_CORRELATION = "x-correlation-id"
H_REPLY_TOPIC = "x-reply-to-topic"
H_USER_PROPS = "x-mqtt-user-properties"
H_FORMAT = "x-mqtt-payload-format-indicator"
_INTERNAL_HEADERS = frozenset(
    {H_QOS, H_RETAIN, H_CONTENT_TYPE, H_CORRELATION, H_REPLY_TOPIC, H_USER_PROPS, H_FORMAT}
)

# The common case (no MQTT 5 properties) shares one AMQP properties object per (qos, retain):
# publishing costs no allocation beyond the Message itself. Never mutate these.
_PLAIN: dict[tuple[int, bool], AmqpProperties] = {
    (qos, retain): AmqpProperties(
        delivery_mode=2 if qos else 1,
        headers={H_QOS: qos, H_RETAIN: True} if retain else {H_QOS: qos},
    )
    for qos in (0, 1, 2)
    for retain in (False, True)
}


def _is_short_ascii(text: str) -> bool:
    return text.isascii() and len(text) <= 255


def _amqp_properties(
    publish: Publish, translator: TopicTranslator
) -> tuple[AmqpProperties, int | None]:
    props = publish.properties
    headers: dict[str, object] = {H_QOS: publish.qos}
    if publish.retain:
        headers[H_RETAIN] = True
    content_type = None
    if props.content_type is not None:
        if _is_short_ascii(props.content_type):
            content_type = props.content_type
        else:
            headers[H_CONTENT_TYPE] = props.content_type
    correlation_id = None
    if props.correlation_data is not None:
        try:
            text = props.correlation_data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(props.correlation_data) < 256:
            correlation_id = text
        else:
            headers[H_CORRELATION] = props.correlation_data
    if props.response_topic is not None:
        # A header has no 255-byte limit: a long Response Topic must not refuse the request.
        headers[H_REPLY_TOPIC] = translator.topic_to_header_key(props.response_topic)
    if props.user_properties:
        # A field table name is a short string: a longer name rides in the list only.
        headers.update(
            {
                name: value
                for name, value in props.user_properties
                if name not in _INTERNAL_HEADERS and len(name.encode()) <= 255
            }
        )
        headers[H_USER_PROPS] = [[name, value] for name, value in props.user_properties]
    if props.payload_format_indicator is not None:
        headers[H_FORMAT] = props.payload_format_indicator
    expiration_ms = None
    expiration = None
    if props.message_expiry_interval is not None:
        expiration_ms = props.message_expiry_interval * 1000
        expiration = str(expiration_ms)
    return (
        AmqpProperties(
            content_type=content_type,
            headers=headers,
            delivery_mode=2 if publish.qos else 1,
            correlation_id=correlation_id,
            expiration=expiration,
        ),
        expiration_ms,
    )


_new_message = object.__new__

# _PLAIN by qos * 2 + retain, for the hub's cached routes.
_PLAIN_BY_INDEX: tuple[AmqpProperties, ...] = tuple(
    _PLAIN[(qos, retain)] for qos in (0, 1, 2) for retain in (False, True)
)


def plain_views(topic: str, translator: TopicTranslator | None = None) -> tuple[MqttView, ...]:
    """The shared views of property-less MQTT publishes to ``topic``, by qos * 2 + retain:
    a publisher's hub caches them per topic, so no per-message view look-up remains. With the
    hub's ``translator`` the views know the routing key they stand for (`view_function`)."""
    key = None if translator is None else translator.topic_to_routing_key(topic)
    return tuple(
        MqttView(topic, qos, retain, EMPTY_PROPERTIES, None, translator=translator, routing_key=key)
        for qos in (0, 1, 2)
        for retain in (False, True)
    )


def message_from_plain_publish(
    exchange: str,
    routing_key: str,
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    client_id: str,
    views: tuple[MqttView, ...],
) -> Message:
    """`message_from_publish` for a PUBLISH without properties, all arguments positional
    and the views from `plain_views(topic)`: the ingest hot path (same result)."""
    index = qos * 2 + retain
    # `message_with_properties(exchange, routing_key, payload, _PLAIN_BY_INDEX[index],
    # annotations, qos > 0, None)` inlined: one call less per publish (the _PLAIN properties
    # carry no expiration, so ``expiration_ms`` is None).
    message: Message = _new_message(Message)
    message.id = next_message_id()
    message.exchange = exchange
    message.routing_key = routing_key
    message.body = payload
    message.annotations = {
        A_TOPIC: topic,
        A_QOS: qos,
        A_RETAIN: retain,
        A_CLIENT: client_id,
        A_VIEW: views[index],
    }
    message._properties = _PLAIN_BY_INDEX[index]
    message.raw_properties = None
    message._decode = None
    message.persistent = qos > 0
    message.expiration_ms = None
    return message


def message_from_publish(
    publish: Publish,
    *,
    exchange: str,
    routing_key: str,
    client_id: str,
    translator: TopicTranslator,
) -> Message:
    """The core message for an MQTT PUBLISH (routing key already translated by the caller)."""
    annotations: dict[str, object] = {
        A_TOPIC: publish.topic,
        A_QOS: publish.qos,
        A_RETAIN: publish.retain,
        A_CLIENT: client_id,
    }
    if publish.properties is EMPTY_PROPERTIES:
        # Publishers repeat topics: one shared view per (topic, QoS, retain), not one each.
        view_key = (publish.topic, publish.qos, publish.retain)
        view = _PUBLISH_VIEWS.get(view_key)
        if view is None:
            if len(_PUBLISH_VIEWS) >= _PUBLISH_VIEWS_MAX:
                _PUBLISH_VIEWS.clear()
            view = _PUBLISH_VIEWS[view_key] = MqttView(
                publish.topic, publish.qos, publish.retain, EMPTY_PROPERTIES, None
            )
        annotations[A_VIEW] = view
        # Positional constructor: the keyword call cost twice as much (bench S4).
        return message_with_properties(
            exchange,
            routing_key,
            publish.payload,
            _PLAIN[(publish.qos, publish.retain)],
            annotations,
            publish.qos > 0,
            None,
        )
    # Topic alias and subscription identifiers describe this hop only; never forward them.
    props = publish.properties
    if props.topic_alias is not None or props.subscription_identifiers:
        props = Properties(
            payload_format_indicator=props.payload_format_indicator,
            message_expiry_interval=props.message_expiry_interval,
            content_type=props.content_type,
            response_topic=props.response_topic,
            correlation_data=props.correlation_data,
            user_properties=props.user_properties,
        )
        publish = Publish(publish.topic, publish.payload, publish.qos, publish.retain,
                          publish.dup, publish.packet_id, props)  # fmt: skip
    annotations[A_PROPS] = props
    annotations[A_VIEW] = MqttView(
        publish.topic, publish.qos, publish.retain, props, props.message_expiry_interval
    )
    amqp_props, expiration_ms = _amqp_properties(publish, translator)
    return Message(
        exchange,
        routing_key,
        publish.payload,
        properties=amqp_props,
        annotations=annotations,
        persistent=publish.qos > 0,
        expiration_ms=expiration_ms,
    )


@dataclass(slots=True)
class MqttView:
    """What an MQTT subscriber is sent for a core message (before per-subscriber QoS/flags).

    Not frozen: one is built per MQTT-origin message on the hot path, and a frozen dataclass
    costs about twice as much to construct. Treat it as immutable; views are shared (`headers`
    only caches what the other fields determine).
    """

    topic: str
    qos: int
    retain: bool
    properties: Properties
    # Set when the message had an expiry: seconds it had left when it was enqueued.
    expiry_interval: int | None
    # QoS 0 PUBLISH headers made from this view (`qos0_header`), by payload size, RETAIN and
    # version: a fan-out, and every message sharing the view, encodes its header once.
    headers: dict[int, bytes] | None = field(default=None, compare=False, repr=False)
    # Set on the views of `plain_views`: the translator and the routing key it makes of
    # `topic`. A message still under that key shows this view unchanged (`view_function`).
    translator: TopicTranslator | None = field(default=None, compare=False, repr=False)
    routing_key: str | None = field(default=None, compare=False, repr=False)
    # The same for QoS 1/2 (`acked_header`): a packer and the parts around the packet id.
    acked_headers: dict[int, _AckedHeader] | None = field(default=None, compare=False,
                                                          repr=False)  # fmt: skip

    def qos0_header(self, payload_size: int, retain: bool, v5: bool) -> bytes:
        """The QoS 0 PUBLISH header (fixed header, topic, and for MQTT 5 the view's
        properties) for a payload of `payload_size` bytes: what the publisher sent, with the
        flags this subscriber gets. MQTT 3.1 and 3.1.1 share one form and carry no
        properties; the caller adds none (no Subscription Identifier, no Topic Alias)."""
        key = (payload_size << 2) | (2 if v5 else 0) | (1 if retain else 0)
        headers = self.headers
        if headers is None:
            headers = self.headers = {}
        else:
            header = headers.get(key)
            if header is not None:
                return header
            if len(headers) >= _VIEW_HEADERS_MAX:
                headers.clear()  # payload sizes vary: a miss costs one encode
        props, version = (self.properties, MQTT_5) if v5 else (EMPTY_PROPERTIES, MQTT_3_1_1)
        header = encode_publish_header(
            self.topic, payload_size, 0, retain, False, None, props, version
        )
        headers[key] = header
        return header

    def acked_header(
        self, payload_size: int, qos: int, retain: bool, v5: bool, packet_id: int
    ) -> bytes:
        """`qos0_header` for a QoS 1 or 2 PUBLISH: the same bytes as `encode_publish_header`
        for this view's topic (and properties in MQTT 5), DUP clear, with `packet_id`."""
        key = (payload_size << 4) | (qos << 2) | (2 if v5 else 0) | (1 if retain else 0)
        headers = self.acked_headers
        if headers is None:
            headers = self.acked_headers = {}
        else:
            found = headers.get(key)
            if found is not None:
                return found[0](found[1], packet_id, found[2])
            if len(headers) >= _VIEW_HEADERS_MAX:
                headers.clear()
        props, version = (self.properties, MQTT_5) if v5 else (EMPTY_PROPERTIES, MQTT_3_1_1)
        head, tail = publish_header_parts(
            self.topic, payload_size, qos, retain, False, props, version
        )
        # One struct per header shape: packing the parts around the id is one C call.
        entry = headers[key] = (struct.Struct(f"!{len(head)}sH{len(tail)}s").pack, head, tail)
        return entry[0](head, packet_id, tail)


# How `acked_header` keeps one header: a packer of (head, packet id, tail), head and tail.
_AckedHeader = tuple[Callable[[bytes, int, bytes], bytes], bytes, bytes]

# Headers one view keeps (distinct payload sizes x RETAIN x version, x QoS for acked ones).
_VIEW_HEADERS_MAX = 16


# Views of MQTT-origin messages without properties, shared by topic, QoS and retain (cleared
# when full, which only costs misses).
_PUBLISH_VIEWS: dict[tuple[str, int, bool], MqttView] = {}
_PUBLISH_VIEWS_MAX = 4096


def _header_qos(headers: dict[str, object] | None, delivery_mode: int | None) -> int:
    if headers is not None:
        value = headers.get(H_QOS)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
            return value
    return 1 if delivery_mode == 2 else 0


def _mqtt_string(text: str) -> str | None:
    """`text` if an MQTT UTF-8 string can carry it: well-formed (AMQP short strings that are
    not UTF-8 decode with lone surrogates), no U+0000 [MQTT-1.5.4-2], at most 65535 bytes."""
    if "\x00" in text:
        return None
    if text.isascii():  # the usual case: no encoding needed to know the size
        return text if len(text) <= 0xFFFF else None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None
    return text if size <= 0xFFFF else None


def _as_text(value: object) -> str | None:
    """An AMQP field value as MQTT text: strings and scalars as text, byte arrays when they
    are UTF-8, timestamps in ISO 8601; void, arrays and tables have no text form (None)."""
    if isinstance(value, str):
        return _mqtt_string(value)
    if isinstance(value, bytes | bytearray):
        try:
            return _mqtt_string(value.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return None


def _user_properties(headers: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """The ordered pairs of `x-mqtt-user-properties` (duplicates kept), then every other
    header the list does not name, in header order: a worker that republishes an MQTT
    message with headers added keeps both."""
    found = []
    listed: set[str] = set()
    pairs = headers.get(H_USER_PROPS)
    if isinstance(pairs, list):
        for pair in pairs:
            if isinstance(pair, list | tuple) and len(pair) == 2:
                name, value = _as_text(pair[0]), _as_text(pair[1])
                if name is not None and value is not None:
                    found.append((name, value))
                    listed.add(name)
    for key, raw_value in headers.items():
        if (
            key in _INTERNAL_HEADERS
            or key in listed
            or key.startswith(("x-death", "x-first-death", "x-last-death"))
        ):
            continue
        name, text = _mqtt_string(key), _as_text(raw_value)
        if name is not None and text is not None:
            found.append((name, text))
    return tuple(found)


def _correlation_data(amqp: AmqpProperties, headers: dict[str, object]) -> bytes | None:
    if amqp.correlation_id is not None:
        # The bytes the publisher sent, even when they were not UTF-8.
        return amqp.correlation_id.encode("utf-8", "surrogateescape")
    raw = headers.get(H_CORRELATION)
    if isinstance(raw, bytes | bytearray):  # AMQP byte arrays may decode as bytearray
        data = bytes(raw)
    elif isinstance(raw, str):
        data = raw.encode("utf-8", "surrogateescape")
    else:
        return None
    return data if len(data) <= 0xFFFF else None


def _response_topic(
    amqp: AmqpProperties, headers: dict[str, object], translator: TopicTranslator
) -> str | None:
    """`x-reply-to-topic` in MQTT form; failing that, an AMQP `reply_to` queue as its reply
    topic (`$amqp/reply/<queue>`), which the MQTT side routes back to that queue."""
    reply = headers.get(H_REPLY_TOPIC)
    if isinstance(reply, bytes | bytearray):
        reply = _as_text(reply)
    if isinstance(reply, str):
        topic = translator.routing_key_to_topic(reply)
    elif amqp.reply_to:
        topic = reply_topic_for_queue(amqp.reply_to)
    else:
        return None
    if not is_valid_topic_name(topic):
        return None
    return _mqtt_string(topic)


# Raw AMQP properties that carry no more than a delivery mode, to the MQTT QoS they give: such
# a message has no MQTT 5 properties, so its view needs no property decoding at all.
_PLAIN_RAW_QOS: dict[bytes, int] = {
    b"\x00\x00": 0,
    **{b"\x10\x00" + bytes((mode,)): 1 if mode == 2 else 0 for mode in range(256)},
}
# Views of such messages by (translator, routing key, QoS), shared by every message that
# maps to the same one (MqttView is frozen); cleared when full, which only costs misses.
_PLAIN_VIEWS: dict[tuple[TopicTranslator, str, int], MqttView] = {}
_PLAIN_VIEWS_MAX = 4096
# Annotation under which the view of any other AMQP-origin message is kept, so a fan-out to
# many subscribers computes it once: (message id, translator, properties, view). The id and
# the properties object guard against copies (dead-lettering copies annotations to a new
# message) and against properties replaced after the view was made.
_A_VIEW = "bridge.mqtt_view"


def mqtt_view(message: Message, translator: TopicTranslator) -> MqttView:
    """MQTT topic, QoS, retain and MQTT 5 properties of any core message."""
    annotations = message.annotations
    topic = annotations.get(A_TOPIC)
    if isinstance(topic, str) and (
        A_RETAINED_FOR in annotations
        or message.routing_key == translator.topic_to_routing_key(topic)
    ):
        # MQTT-origin and not re-routed under another key (dead-lettering may change it).
        built = annotations.get(A_VIEW)
        if built is not None:
            assert isinstance(built, MqttView)
            return built
        qos = annotations.get(A_QOS)
        props = annotations.get(A_PROPS, EMPTY_PROPERTIES)
        assert isinstance(qos, int)
        assert isinstance(props, Properties)
        return MqttView(
            topic, qos, bool(annotations.get(A_RETAIN)), props, props.message_expiry_interval
        )
    raw = message.raw_properties
    plain_qos = None if raw is None else _PLAIN_RAW_QOS.get(raw)
    if plain_qos is not None and message.expiration_ms is None:
        key = (translator, message.routing_key, plain_qos)
        view = _PLAIN_VIEWS.get(key)
        if view is None:
            view = MqttView(
                translator.routing_key_to_topic(message.routing_key),
                plain_qos,
                False,
                EMPTY_PROPERTIES,
                None,
            )
            if len(_PLAIN_VIEWS) >= _PLAIN_VIEWS_MAX:
                _PLAIN_VIEWS.clear()
            _PLAIN_VIEWS[key] = view
        return view
    cached = annotations.get(_A_VIEW)
    if (
        isinstance(cached, tuple)
        and cached[0] == message.id
        and cached[1] is translator
        and cached[2] is message.properties
    ):
        hit: MqttView = cached[3]
        return hit
    view = _amqp_view(message, translator)
    annotations[_A_VIEW] = (message.id, translator, message.properties, view)
    return view


def view_function(translator: TopicTranslator) -> Callable[[Message], MqttView]:
    """`mqtt_view` with ``translator`` bound, answering in one call for a message that
    carries a view of `plain_views` and was not re-routed since (the delivery hot path)."""

    def view(message: Message) -> MqttView:
        built = message.annotations.get(A_VIEW)
        if (
            isinstance(built, MqttView)
            and built.routing_key == message.routing_key
            and built.translator is translator
        ):
            # What mqtt_view finds too: the topic's key under this translator is the key.
            return built
        return mqtt_view(message, translator)

    return view


def _amqp_view(message: Message, translator: TopicTranslator) -> MqttView:
    amqp = message.properties
    headers = amqp.headers or {}
    content_type = amqp.content_type
    if content_type is None:
        content_type = _as_text(headers.get(H_CONTENT_TYPE))
    else:
        content_type = _mqtt_string(content_type)
    fmt = headers.get(H_FORMAT)
    expiry = None
    if message.expiration_ms is not None:
        expiry = math.ceil(message.expiration_ms / 1000)
    props = Properties(
        payload_format_indicator=fmt if isinstance(fmt, int) and fmt in (0, 1) else None,
        content_type=content_type,
        correlation_data=_correlation_data(amqp, headers),
        response_topic=_response_topic(amqp, headers, translator),
        user_properties=_user_properties(headers) if headers else (),
    )
    return MqttView(
        translator.routing_key_to_topic(message.routing_key),
        _header_qos(amqp.headers, amqp.delivery_mode),
        headers.get(H_RETAIN) is True,
        props,
        expiry,
    )


def message_qos(message: Message) -> int:
    """The QoS a message was published with, whichever side it came from (section 5)."""
    qos = message.annotations.get(A_QOS)
    if isinstance(qos, int):
        return qos
    props = message.properties
    return _header_qos(props.headers, props.delivery_mode)


def remaining_expiry(expiry_interval: int | None, enqueued_at: float, now: float) -> int | None:
    """Message Expiry Interval to send: the original minus the time spent queued, rounded up."""
    if expiry_interval is None:
        return None
    left = expiry_interval - (now - enqueued_at)
    return max(1, math.ceil(left)) if left > 0 else 0
