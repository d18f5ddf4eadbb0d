"""QoS 0 forwarding on the direct path (SessionDelivery.deliver_direct): the bytes each
subscriber gets, byte for byte, and the header encoded once per message and protocol version.

Expected packets are written out by hand from the spec (MQTT 5.0 section 3.3, 3.1.1 section
3.3), not built with the encoder under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.bridge import convert
from gateway.bridge.convert import MqttView
from gateway.mqtt.codec import PacketDecoder, encode_publish_header
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    PubAck,
    Publish,
    ReasonCode,
)
from gateway.mqtt.packets import Properties as MqttProperties
from tests.unit.mqtt.strategies import properties, topic_names

from .harness import Client, World

# PUBLISH QoS 0 "a/b" with payload "hi", no properties (3.1.1 form): fixed header 0x30,
# remaining length 7, topic length 3.
V3_PLAIN = b"\x30\x07\x00\x03a/bhi"
# The same in MQTT 5 with an empty property list.
V5_PLAIN = b"\x30\x08\x00\x03a/b\x00hi"
# MQTT 5 properties in identifier order: Payload Format Indicator 1, Content Type "t",
# Response Topic "r", Correlation Data c1 c2, User Property ("k", "v").
V5_PROPS = (
    b"\x16"  # property length 22
    b"\x01\x01"
    b"\x03\x00\x01t"
    b"\x08\x00\x01r"
    b"\x09\x00\x02\xc1\xc2"
    b"\x26\x00\x01k\x00\x01v"
)
V5_WITH_PROPS = b"\x30\x1e\x00\x03a/b" + V5_PROPS + b"hi"


def connected(world: World, client_id: str, version: int, **kw: Any) -> Client:
    client = world.client(version)
    ack = client.connect(client_id, **kw)
    assert ack.reason_code == ReasonCode.SUCCESS
    return client


def subscriber(world: World, client_id: str, version: int, **options: Any) -> Client:
    sub = connected(world, client_id, version)
    sub.subscribe("a/#", 0, **options)
    return sub


def wire(client: Client) -> bytes:
    """Everything the server has queued for `client`, undecoded."""
    return client.conn.data_to_send()


@pytest.mark.parametrize("version", [MQTT_3_1, MQTT_3_1_1])
def test_v3_publish_reaches_a_v3_subscriber_byte_for_byte(version: int) -> None:
    world = World()
    sub = subscriber(world, "sub", version)
    pub = connected(world, "pub", version)
    pub.send_bytes(V3_PLAIN)
    assert wire(sub) == V3_PLAIN


def test_v5_publish_with_properties_reaches_a_v5_subscriber_unchanged() -> None:
    world = World()
    sub = subscriber(world, "sub", MQTT_5)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_WITH_PROPS)
    assert wire(sub) == V5_WITH_PROPS


def test_v5_publish_without_properties_reaches_a_v5_subscriber_unchanged() -> None:
    world = World()
    sub = subscriber(world, "sub", MQTT_5)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_PLAIN)
    assert wire(sub) == V5_PLAIN


def test_v3_subscriber_of_a_v5_publish_gets_no_properties() -> None:
    world = World()
    sub = subscriber(world, "sub", MQTT_3_1_1)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_WITH_PROPS)
    assert wire(sub) == V3_PLAIN


def test_v5_subscriber_of_a_v3_publish_gets_an_empty_property_list() -> None:
    world = World()
    sub = subscriber(world, "sub", MQTT_5)
    pub = connected(world, "pub", MQTT_3_1_1)
    pub.send_bytes(V3_PLAIN)
    assert wire(sub) == V5_PLAIN


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_qos1_publish_is_downgraded_to_the_granted_qos0(version: int) -> None:
    world = World()
    sub = subscriber(world, "sub", version)
    pub = connected(world, "pub", version)
    # QoS 1 "a/b", packet identifier 7, payload "hi": 0x32, then the id after the topic.
    if version == MQTT_5:
        pub.send_bytes(b"\x32\x0a\x00\x03a/b\x00\x07\x00hi")
    else:
        pub.send_bytes(b"\x32\x09\x00\x03a/b\x00\x07hi")
    assert pub.expect(PubAck).packet_id == 7
    # No packet identifier, QoS bits 0 [MQTT-3.8.4-8: QoS = min(published, granted)].
    assert wire(sub) == (V5_PLAIN if version == MQTT_5 else V3_PLAIN)


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_retain_is_cleared_for_a_live_subscriber(version: int) -> None:
    """[MQTT-3.3.1-12] (3.1.1: [MQTT-3.3.1-9]): RETAIN 0 on a message sent because of a
    subscription that existed when it was published, unless Retain As Published."""
    world = World()
    sub = subscriber(world, "sub", version)
    pub = connected(world, "pub", version)
    pub.send_bytes(b"\x31" + (V5_PLAIN if version == MQTT_5 else V3_PLAIN)[1:])
    assert wire(sub) == (V5_PLAIN if version == MQTT_5 else V3_PLAIN)


def test_retain_as_published_keeps_the_retain_flag() -> None:
    """[MQTT-3.3.1-13]: with Retain As Published, RETAIN is the publisher's."""
    world = World()
    keeps = subscriber(world, "keeps", MQTT_5, retain_as_published=True)
    clears = subscriber(world, "clears", MQTT_5)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(b"\x31" + V5_WITH_PROPS[1:])
    assert wire(keeps) == b"\x31" + V5_WITH_PROPS[1:]
    assert wire(clears) == V5_WITH_PROPS
    pub.send_bytes(V5_WITH_PROPS)  # not retained: RETAIN stays 0 for both
    assert wire(keeps) == V5_WITH_PROPS
    assert wire(clears) == V5_WITH_PROPS


def test_inbound_topic_alias_is_resolved_and_not_forwarded() -> None:
    """A Topic Alias names a topic on one connection only [MQTT-3.3.2-10]: the subscriber
    gets the topic, and no alias property."""
    world = World()
    sub = subscriber(world, "sub", MQTT_5)
    pub = connected(world, "pub", MQTT_5)
    alias = MqttProperties(topic_alias=1)
    pub.send(Publish("a/b", b"hi", properties=alias), Publish("", b"hi", properties=alias))
    assert wire(sub) == V5_PLAIN * 2


def test_subscription_identifier_is_added_for_its_subscriber_only() -> None:
    world = World()
    with_id = connected(world, "with-id", MQTT_5)
    with_id.subscribe("a/#", 0, properties=MqttProperties(subscription_identifiers=(5,)))
    plain = subscriber(world, "plain", MQTT_5)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_PLAIN)
    # Property list: Subscription Identifier (0x0B) 5.
    assert wire(with_id) == b"\x30\x0a\x00\x03a/b\x02\x0b\x05hi"
    assert wire(plain) == V5_PLAIN


def test_outbound_topic_alias_still_applies() -> None:
    """A client that accepts Topic Aliases gets the topic once, then the alias alone."""
    world = World()
    sub = connected(world, "sub", MQTT_5, properties=MqttProperties(topic_alias_maximum=4))
    sub.subscribe("a/#", 0)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_PLAIN + V5_PLAIN)
    assert wire(sub) == (
        b"\x30\x0b\x00\x03a/b\x03\x23\x00\x01hi"  # topic and Topic Alias 1
        b"\x30\x08\x00\x00\x03\x23\x00\x01hi"  # empty topic, Topic Alias 1
    )


def test_a_packet_over_the_clients_maximum_is_dropped_and_counted() -> None:
    """[MQTT-3.1.2-25]: nothing larger than the client's Maximum Packet Size is sent."""
    world = World()
    props = MqttProperties(maximum_packet_size=len(V5_WITH_PROPS) - 1)
    sub = connected(world, "sub", MQTT_5, properties=props)
    sub.subscribe("a/#", 0)
    pub = connected(world, "pub", MQTT_5)
    pub.send_bytes(V5_WITH_PROPS)
    assert wire(sub) == b""
    pub.send_bytes(V5_PLAIN)  # small enough
    assert wire(sub) == V5_PLAIN
    session = world.hub.sessions["sub"]
    assert session.dropped_deliveries == 1


def test_fan_out_encodes_each_header_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    v3_subs = [subscriber(world, f"v3-{i}", MQTT_3_1_1) for i in range(3)]
    v5_subs = [subscriber(world, f"v5-{i}", MQTT_5) for i in range(3)]
    pub = connected(world, "pub", MQTT_5)
    calls: list[tuple[Any, ...]] = []
    original = encode_publish_header  # what convert imported

    def counting(*args: Any) -> bytes:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(convert, "encode_publish_header", counting)
    monkeypatch.setattr(convert, "_PUBLISH_VIEWS", {})  # no view from an earlier test
    pub.send_bytes(V5_WITH_PROPS)
    assert len(calls) == 2  # one 3.1.1 header, one MQTT 5 header
    assert [wire(s) for s in v3_subs] == [V3_PLAIN] * 3
    assert [wire(s) for s in v5_subs] == [V5_WITH_PROPS] * 3
    # Messages without properties share their view by topic: the next ones encode nothing.
    pub.send_bytes(V5_PLAIN * 4)
    assert len(calls) == 4
    assert [wire(s) for s in v5_subs] == [V5_PLAIN * 4] * 3


def test_view_header_cache_stays_small_when_payload_sizes_vary() -> None:
    view = MqttView("a/b", 0, False, MqttProperties(content_type="t"), None)
    for size in range(100):
        header = view.qos0_header(size, False, True)
        assert header == view.qos0_header(size, False, True)
    assert view.headers is not None
    assert len(view.headers) <= convert._VIEW_HEADERS_MAX


def test_cached_header_is_exactly_what_the_subscriber_needs() -> None:
    props = MqttProperties(content_type="t", user_properties=(("k", "v"),))
    view = MqttView("a/b", 1, True, props, None)
    assert view.qos0_header(2, True, False) == b"\x31\x07\x00\x03a/b"
    assert view.qos0_header(2, False, False) == b"\x30\x07\x00\x03a/b"
    # Properties: Content Type "t", User Property ("k", "v"): 11 bytes.
    v5 = b"\x00\x03a/b\x0b\x03\x00\x01t\x26\x00\x01k\x00\x01v"
    assert view.qos0_header(2, False, True) == b"\x30\x13" + v5
    assert view.qos0_header(2, True, True) == b"\x31\x13" + v5
    # A remaining length of 128 or more takes two bytes (VBI).
    assert view.qos0_header(200, False, False) == b"\x30\xcd\x01\x00\x03a/b"


@settings(max_examples=200, deadline=None)
@given(
    topic=topic_names,
    props=properties("PUBLISH"),
    payload=st.binary(max_size=300),
    retain=st.booleans(),
    version=st.sampled_from([MQTT_3_1, MQTT_3_1_1, MQTT_5]),
)
def test_cached_header_decodes_to_the_publish_the_subscriber_must_get(
    topic: str, props: MqttProperties, payload: bytes, retain: bool, version: int
) -> None:
    assume(props.topic_alias is None and not props.subscription_identifiers)
    view = MqttView(topic, 1, not retain, props, None)
    v5 = version == MQTT_5
    header = view.qos0_header(len(payload), retain, v5)
    assert view.qos0_header(len(payload), retain, v5) is header  # cached
    expected = Publish(topic, payload, 0, retain, False, None, props if v5 else EMPTY_PROPERTIES)
    assert PacketDecoder(protocol_level=version).feed(header + payload) == [expected]
