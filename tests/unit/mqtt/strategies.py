"""Hypothesis strategies for every MQTT packet, per protocol level.

Which property goes in which packet is written out here from the spec's table 2-4 rather than
taken from gateway.mqtt.properties, so a mistake in that table shows up as a failing test.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gateway.mqtt.codec_tables import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    UNSUBACK_CODES,
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
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
)

# Valid MQTT strings: any Unicode scalar but U+0000 (surrogates cannot be encoded).
text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=12,
)
topic_names = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#"),
    min_size=1,
    max_size=16,
)
# Filters are not validated by the decoder (a bad one gets a SUBACK failure, not a
# disconnect), so any string will do; levels are drawn to hit "$share/" now and then.
topic_filters = st.lists(
    st.sampled_from(["a", "b", "", "+", "#", "$share", "$SYS", "é", "g"]), min_size=1, max_size=5
).map("/".join)
binary = st.binary(max_size=16)
packet_ids = st.integers(1, 0xFFFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
vbi_positive = st.integers(1, 268_435_455)

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": st.integers(0, 1),
    "message_expiry_interval": u32,
    "content_type": text,
    "response_topic": topic_names,
    "correlation_data": binary,
    "session_expiry_interval": u32,
    "assigned_client_identifier": text,
    "server_keep_alive": u16,
    "authentication_method": text,
    "authentication_data": binary,
    "request_problem_information": st.booleans(),
    "will_delay_interval": u32,
    "request_response_information": st.booleans(),
    "response_information": text,
    "server_reference": text,
    "reason_string": text,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": st.integers(0, 1),
    "retain_available": st.booleans(),
    "user_properties": st.lists(st.tuples(text, text), min_size=1, max_size=3).map(tuple),
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": st.booleans(),
    "subscription_identifier_available": st.booleans(),
    "shared_subscription_available": st.booleans(),
}

# Spec table 2-4, by packet (user properties are allowed everywhere).
ALLOWED: dict[str, tuple[str, ...]] = {
    "CONNECT": (
        "session_expiry_interval",
        "authentication_method",
        "authentication_data",
        "request_problem_information",
        "request_response_information",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_packet_size",
    ),
    "CONNACK": (
        "session_expiry_interval",
        "assigned_client_identifier",
        "server_keep_alive",
        "authentication_method",
        "authentication_data",
        "response_information",
        "server_reference",
        "reason_string",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_qos",
        "retain_available",
        "maximum_packet_size",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    ),
    "PUBLISH": (
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "subscription_identifiers",
        "topic_alias",
    ),
    "WILL": (
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "will_delay_interval",
    ),
    "PUBACK": ("reason_string",),
    "PUBREC": ("reason_string",),
    "PUBREL": ("reason_string",),
    "PUBCOMP": ("reason_string",),
    "SUBSCRIBE": ("subscription_identifiers",),
    "SUBACK": ("reason_string",),
    "UNSUBSCRIBE": (),
    "UNSUBACK": ("reason_string",),
    "DISCONNECT": ("session_expiry_interval", "server_reference", "reason_string"),
    "AUTH": ("authentication_method", "authentication_data", "reason_string"),
}


def properties(packet: str) -> st.SearchStrategy[Properties]:
    optional: dict[str, st.SearchStrategy[Any]] = {"user_properties": _VALUES["user_properties"]}
    for name in ALLOWED[packet]:
        if name == "subscription_identifiers":
            # A PUBLISH to a subscriber may carry several; a SUBSCRIBE carries one.
            most = 3 if packet == "PUBLISH" else 1
            optional[name] = st.lists(vbi_positive, min_size=1, max_size=most).map(tuple)
        else:
            optional[name] = _VALUES[name]
    return st.fixed_dictionaries({}, optional=optional).map(lambda d: Properties(**d))


def _props(packet: str, version: int) -> st.SearchStrategy[Properties]:
    return properties(packet) if version == MQTT_5 else st.just(EMPTY_PROPERTIES)


def _codes(allowed: frozenset[int]) -> st.SearchStrategy[ReasonCode]:
    return st.sampled_from(sorted(allowed)).map(ReasonCode)


@st.composite
def wills(draw: st.DrawFn, version: int) -> Will:
    return Will(
        draw(topic_names),
        draw(binary),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        draw(_props("WILL", version)),
    )


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    username = draw(st.none() | text)
    password = draw(st.none() | binary)
    if version < MQTT_5 and username is None:
        password = None  # [MQTT-3.1.2-22]
    return Connect(
        client_id=draw(text),
        protocol_level=version,
        clean_start=draw(st.booleans()),
        keep_alive=draw(u16),
        username=username,
        password=password,
        will=draw(st.none() | wills(version)),
        properties=draw(_props("CONNECT", version)),
    )


@st.composite
def connacks(draw: st.DrawFn, version: int) -> ConnAck:
    if version == MQTT_5:
        code = draw(_codes(CONNACK_CODES))
    else:
        code = draw(
            st.sampled_from(
                [
                    ReasonCode.SUCCESS,
                    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                    ReasonCode.SERVER_UNAVAILABLE,
                    ReasonCode.BAD_USER_NAME_OR_PASSWORD,
                    ReasonCode.NOT_AUTHORIZED,
                ]
            )
        )
    return ConnAck(draw(st.booleans()), code, draw(_props("CONNACK", version)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(topic_names),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos or version < MQTT_5 else False,
        packet_id=draw(packet_ids) if qos else None,
        properties=draw(_props("PUBLISH", version)),
    )


def _acks(cls: Any, name: str, allowed: frozenset[int], version: int) -> st.SearchStrategy[Any]:
    if version < MQTT_5:
        return st.builds(cls, packet_ids)
    return st.builds(cls, packet_ids, _codes(allowed), properties(name))


@st.composite
def subscription_options(draw: st.DrawFn, version: int, shared: bool) -> SubscriptionOptions:
    qos = draw(st.integers(0, 2))
    if version < MQTT_5:
        return SubscriptionOptions(qos)
    return SubscriptionOptions(
        qos,
        no_local=False if shared else draw(st.booleans()),
        retain_as_published=draw(st.booleans()),
        retain_handling=draw(st.integers(0, 2)),
    )


@st.composite
def subscribes(draw: st.DrawFn, version: int) -> Subscribe:
    entries = []
    for topic_filter in draw(st.lists(topic_filters, min_size=1, max_size=4)):
        shared = topic_filter.startswith("$share/")
        entries.append((topic_filter, draw(subscription_options(version, shared))))
    return Subscribe(draw(packet_ids), tuple(entries), draw(_props("SUBSCRIBE", version)))


@st.composite
def subacks(draw: st.DrawFn, version: int) -> SubAck:
    if version == MQTT_5:
        codes = st.lists(_codes(SUBACK_CODES), min_size=1, max_size=4)
    else:
        allowed = [ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_1, ReasonCode.GRANTED_QOS_2]
        allowed.append(ReasonCode.UNSPECIFIED_ERROR)
        codes = st.lists(st.sampled_from(allowed), min_size=1, max_size=4)
    return SubAck(draw(packet_ids), tuple(draw(codes)), draw(_props("SUBACK", version)))


@st.composite
def unsubscribes(draw: st.DrawFn, version: int) -> Unsubscribe:
    filters = tuple(draw(st.lists(topic_filters, min_size=1, max_size=4)))
    return Unsubscribe(draw(packet_ids), filters, draw(_props("UNSUBSCRIBE", version)))


@st.composite
def unsubacks(draw: st.DrawFn, version: int) -> UnsubAck:
    if version < MQTT_5:
        return UnsubAck(draw(packet_ids))
    codes = tuple(draw(st.lists(_codes(UNSUBACK_CODES), min_size=1, max_size=4)))
    return UnsubAck(draw(packet_ids), codes, draw(properties("UNSUBACK")))


def disconnects(version: int) -> st.SearchStrategy[Disconnect]:
    if version < MQTT_5:
        return st.just(Disconnect())
    return st.builds(Disconnect, _codes(DISCONNECT_CODES), properties("DISCONNECT"))


def auths() -> st.SearchStrategy[Auth]:
    return st.builds(Auth, _codes(AUTH_CODES), properties("AUTH"))


def packets_of(kind: str, version: int) -> st.SearchStrategy[Any]:
    """Packets of one type, encodable and decodable at `version`."""
    makers: dict[str, Any] = {
        "Connect": lambda: connects(version),
        "ConnAck": lambda: connacks(version),
        "Publish": lambda: publishes(version),
        "PubAck": lambda: _acks(PubAck, "PUBACK", PUBACK_CODES, version),
        "PubRec": lambda: _acks(PubRec, "PUBREC", PUBACK_CODES, version),
        "PubRel": lambda: _acks(PubRel, "PUBREL", PUBREL_CODES, version),
        "PubComp": lambda: _acks(PubComp, "PUBCOMP", PUBREL_CODES, version),
        "Subscribe": lambda: subscribes(version),
        "SubAck": lambda: subacks(version),
        "Unsubscribe": lambda: unsubscribes(version),
        "UnsubAck": lambda: unsubacks(version),
        "PingReq": lambda: st.just(PingReq()),
        "PingResp": lambda: st.just(PingResp()),
        "Disconnect": lambda: disconnects(version),
        "Auth": auths,
    }
    strategy: st.SearchStrategy[Any] = makers[kind]()
    return strategy


PACKET_KINDS = (
    "Connect",
    "ConnAck",
    "Publish",
    "PubAck",
    "PubRec",
    "PubRel",
    "PubComp",
    "Subscribe",
    "SubAck",
    "Unsubscribe",
    "UnsubAck",
    "PingReq",
    "PingResp",
    "Disconnect",
    "Auth",
)


def any_packet(version: int) -> st.SearchStrategy[Packet]:
    """Any packet but CONNECT (a stream holds at most one), valid at `version`."""
    kinds = [k for k in PACKET_KINDS if k != "Connect" and (k != "Auth" or version == MQTT_5)]
    return st.one_of([packets_of(kind, version) for kind in kinds])
