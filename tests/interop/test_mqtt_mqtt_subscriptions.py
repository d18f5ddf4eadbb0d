"""paho-mqtt: wildcard matching, SUBACK failure codes, `$`-topics, overlapping subscriptions
with Subscription Identifiers, and shared subscriptions."""

from __future__ import annotations

import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    V5,
    V311,
    Paho,
    SubscribeOptions,
    close_clients,  # noqa: F401  (autouse: closes every client)
    collect,
    props,
    uid,
)

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("version", [V311, V5])
def test_MQTT_4_7_1_wildcards_match_like_the_spec(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    p = uid("wild")
    filters = {
        f"{p}/+/c": {f"{p}/b/c", f"{p}//c"},
        f"{p}/#": {f"{p}/b/c", f"{p}//c", f"{p}/b", f"{p}", f"{p}/b/c/d"},
        f"{p}/b/#": {f"{p}/b/c", f"{p}/b", f"{p}/b/c/d"},
        f"{p}/+": {f"{p}/b"},
        f"{p}/b/c": {f"{p}/b/c"},
        "+/b/c": {f"{p}/b/c", f"{p}x/b/c"},
    }
    topics = [f"{p}/b/c", f"{p}//c", f"{p}/b", p, f"{p}/b/c/d", f"{p}x/b/c"]
    subs = {}
    for topic_filter in filters:
        sub = Paho(gateway.mqtt_port, version=version)
        assert sub.subscribe(topic_filter, 1) == [1]
        subs[topic_filter] = sub
    pub = Paho(gateway.mqtt_port, version=version)
    for topic in topics:
        pub.publish(topic, topic.encode(), qos=1)
    for topic_filter, expected in filters.items():
        sub = subs[topic_filter]
        got = {m.topic for m in sub.take(len(expected))}
        assert got == expected, topic_filter
        sub.assert_silent(0.05)
        sub.close()
    pub.close()


# Filters paho lets through; misplaced wildcards paho refuses itself, so those are checked with a
# raw client in test_mqtt_raw_connect.py. The last one is valid MQTT but too long for AMQP.
BAD_FILTERS = ["$share/g", "$share//a", "$share/g/", "/".join(["level"] * 60)]


@pytest.mark.parametrize(
    ("version", "failure"), [pytest.param(V311, 0x80, id="v311"), pytest.param(V5, 0x8F, id="v5")]
)
def test_MQTT_3_9_3_suback_failure_for_bad_filters(
    gateway: RunningGateway, version: MQTTProtocolVersion, failure: int
) -> None:
    client = Paho(gateway.mqtt_port, version=version)
    good = uid("good")
    for bad in BAD_FILTERS:
        # One SUBSCRIBE with a good and a bad filter: one code each, in order.
        if version == V5:
            entries = [(good, SubscribeOptions(qos=1)), (bad, SubscribeOptions(qos=1))]
        else:
            entries = [(good, 1), (bad, 1)]
        assert client.subscribe(entries) == [1, failure], bad
    # The connection stays usable.
    client.publish(good, b"ok", qos=1)
    assert client.next().payload == b"ok"
    client.close()


def test_MQTT_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards(
    gateway: RunningGateway,
) -> None:
    p = uid("dollar")
    no_retained = SubscribeOptions(qos=1, retainHandling=2)
    wildcards = [Paho(gateway.mqtt_port) for _ in range(3)]
    wildcards[0].subscribe("#", no_retained)
    wildcards[1].subscribe(f"+/{p}", no_retained)
    wildcards[2].subscribe(f"$share/{p}/#", 1)  # shared: no retained messages anyway
    explicit = Paho(gateway.mqtt_port)
    explicit.subscribe(f"${p}/#", 1)
    pub = Paho(gateway.mqtt_port)
    pub.publish(f"${p}/{p}", b"dollar", qos=1)
    pub.publish(f"plain/{p}", b"plain", qos=1)
    assert explicit.next().topic == f"${p}/{p}"
    for sub in wildcards:
        # Other tests' traffic may pass through "#": look at this test's topics only.
        (got,) = collect([sub], 1, match=p)
        assert [m.payload for m in got] == [b"plain"]
        sub.assert_silent(0.1)
    for client in [*wildcards, explicit, pub]:
        client.close()


def test_MQTT_3_3_4_3_overlapping_subscriptions_one_copy_with_all_identifiers(
    gateway: RunningGateway,
) -> None:
    p = uid("overlap")
    sub = Paho(gateway.mqtt_port)
    sub.subscribe(f"{p}/+", 1, props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=11))
    sub.subscribe(f"{p}/#", 2, props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=22))
    sub.subscribe(f"{p}/a", 0)  # no identifier
    pub = Paho(gateway.mqtt_port)
    pub.publish(f"{p}/a", b"once", qos=2)
    message = sub.next()
    assert message.qos == 2  # the highest granted QoS of the matching subscriptions
    assert sorted(message.properties.SubscriptionIdentifier) == [11, 22]
    sub.assert_silent()  # exactly one copy
    pub.publish(f"{p}/a/b", b"deep", qos=2)
    deep = sub.next()
    assert deep.properties.SubscriptionIdentifier == [22]
    pub.close()
    sub.close()


def test_v311_overlapping_subscriptions_one_copy(gateway: RunningGateway) -> None:
    p = uid("overlap311")
    sub = Paho(gateway.mqtt_port, version=V311)
    sub.subscribe([(f"{p}/+", 0), (f"{p}/#", 1), (f"{p}/x", 2)])
    pub = Paho(gateway.mqtt_port, version=V311)
    pub.publish(f"{p}/x", b"m", qos=2)
    assert sub.next().qos == 2
    sub.assert_silent()
    pub.close()
    sub.close()


@pytest.mark.parametrize("version", [V311, V5])
def test_MQTT_4_8_2_shared_subscription_is_load_balanced(
    gateway: RunningGateway, version: MQTTProtocolVersion
) -> None:
    p = uid("share")
    members = [Paho(gateway.mqtt_port, version=version) for _ in range(2)]
    for member in members:
        assert member.subscribe(f"$share/workers/{p}/+", 1) == [1]
    plain = Paho(gateway.mqtt_port, version=version)
    plain.subscribe(f"{p}/+", 1)
    pub = Paho(gateway.mqtt_port, version=version)
    sent = [f"m{n}".encode() for n in range(20)]
    for payload in sent:
        pub.publish(f"{p}/job", payload, qos=1)
    assert sorted(m.payload for m in plain.take(20)) == sorted(sent)  # its own full copy
    shares = [[m.payload for m in got] for got in collect(members, 20)]
    assert all(shares), shares  # each member got some
    assert sorted(shares[0] + shares[1]) == sorted(sent)  # none twice, none lost
    for member in members:
        member.assert_silent(0.1)
        member.close()
    plain.close()
    pub.close()
