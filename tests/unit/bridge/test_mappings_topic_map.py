"""Mapping rules at run time: publish routes, subscription bindings, keys read back, and the
MQTT hub using them (in-memory clients, real core, no sockets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.mapping_rules import MappingSet, load_texts
from gateway.bridge.mappings import DIRECT_REPLY_PREFIX, TopicMap, declare_exchanges
from gateway.bridge.topics import TopicTranslator
from gateway.core.message import Message
from gateway.core.message import Properties as AmqpProperties
from gateway.core.topic_trie import TopicTrie
from gateway.mqtt.packets import Properties, PubAck, ReasonCode, UnsubAck, Unsubscribe
from gateway.mqtt.session_hub import MqttHub, MqttSettings
from gateway.mqtt.topics import matches
from tests.unit.mqtt_adapter.harness import World

STRICT = TopicTranslator("strict")

RULES = """
[[rule]]
name = "telemetry"
topic = "factory/+/telemetry/#"
exchange = "telemetry"
declare = true
routing_key = "{1}.{#}"
[rule.qos]
max = 1
delivery_mode = 2

[[rule]]
name = "commands"
topic = "factory/+/commands/#"
exchange = "commands"
declare = true
routing_key = "{1}.{#}"

[[rule]]
name = "export"
topic = "export/#"
exchange = "exported"
declare = true
routing_key = "{#}"
direction = "publish"

[[rule]]
name = "events"
topic = "events/+"
exchange = "events"
exchange_type = "fanout"
declare = true
routing_key = "ev.{1}"

[[rule]]
name = "to-queue"
topic = "queues/+"
exchange = ""
routing_key = "{1}"
direction = "publish"
"""

MAPPINGS = load_texts([("rules.toml", RULES)])


def topic_map() -> TopicMap:
    return TopicMap(STRICT, MAPPINGS)


def test_publish_routes_first_matching_rule_then_default() -> None:
    tm = topic_map()
    route = tm.route("factory/dev-7/telemetry/temp")
    assert (route.exchange, route.routing_key, route.qos_max, route.delivery_mode) == (
        "telemetry", "dev-7.temp", 1, 2,
    )  # fmt: skip
    assert route.rule is not None
    assert route.rule.name == "telemetry"
    route = tm.route("factory/dev-7/status")
    assert (route.exchange, route.routing_key, route.rule) == (
        "amq.topic", "factory.dev-7.status", None,
    )  # fmt: skip
    assert tm.route("queues/work").exchange == ""
    assert tm.route("queues/work").routing_key == "work"
    assert tm.route("events/x") is tm.route("events/x")  # cached per topic


def test_reply_topics_come_before_user_rules() -> None:
    tm = TopicMap(STRICT, load_texts([("all.toml", '[[rule]]\nname = "s"\ntopic = "$amqp/#"\n'
                                       'exchange = "x"\nrouting_key = "{#}"\n')]))  # fmt: skip
    plain = tm.route("$amqp/reply/rpc%2Fq")
    assert (plain.exchange, plain.routing_key, plain.direct_reply) == ("", "rpc/q", False)
    direct = tm.route("$amqp/reply/" + DIRECT_REPLY_PREFIX + "tok")
    assert (direct.exchange, direct.routing_key, direct.direct_reply) == (
        "", DIRECT_REPLY_PREFIX + "tok", True,
    )  # fmt: skip
    # Not a reply topic (a queue name holds no '/'): the user rule takes it.
    assert tm.route("$amqp/reply/a/b").exchange == "x"


def test_dollar_topics_are_not_taken_by_wildcard_namespaces() -> None:
    tm = TopicMap(STRICT, load_texts([("w.toml", '[[rule]]\nname = "w"\ntopic = "+/x"\n'
                                       'exchange = "w"\nrouting_key = "{1}"\n')]))  # fmt: skip
    assert tm.route("a/x").exchange == "w"
    assert tm.route("$app/x").exchange == "amq.topic"


def test_a_hash_only_template_keeps_the_root_and_lets_the_empty_level_fall_through() -> None:
    tm = topic_map()
    assert tm.route("export").routing_key == ""
    assert tm.route("export/a/b").routing_key == "a.b"
    assert tm.route("export/").exchange == "amq.topic"


def test_subscription_bindings() -> None:
    tm = topic_map()
    assert tm.bindings("factory/dev-7/telemetry/#") == (("telemetry", "dev-7.#"),)
    assert tm.bindings("factory/+/commands/+") == (("commands", "*.*"),)
    # "" too: `factory//telemetry` renders the empty key, which AMQP reads as zero words.
    assert tm.bindings("factory/#") == (
        ("telemetry", "*.#"), ("telemetry", ""), ("commands", "*.#"), ("commands", ""),
        ("amq.topic", "factory.#"),
    )  # fmt: skip
    assert tm.bindings("factory/+/telemetry") == (("telemetry", "*"), ("telemetry", ""))
    assert tm.topic_for("telemetry", "") == ("factory//telemetry", 1)
    # Publish-only rules bind nothing; the default exchange carries the namespace.
    assert tm.bindings("export/#") == (("amq.topic", "export.#"),)
    # Fanout: everything, the session filters by topic.
    assert tm.bindings("events/+") == (("events", ""),)
    assert tm.bindings("other/x") == (("amq.topic", "other.x"),)
    assert tm.bindings("#")[-1] == ("amq.topic", "#")


def test_direct_exchanges_bind_exact_keys_only() -> None:
    tm = TopicMap(STRICT, load_texts([("d.toml", '[[rule]]\nname = "d"\ntopic = "d/+"\n'
                                       'exchange = "dx"\nexchange_type = "direct"\n'
                                       'routing_key = "{1}"\n')]))  # fmt: skip
    assert tm.bindings("d/one") == (("dx", "one"),)
    assert tm.bindings("d/+") == ()


def test_keys_read_back_to_topics() -> None:
    tm = topic_map()
    assert tm.topic_for("commands", "dev-7.reboot") == ("factory/dev-7/commands/reboot", 2)
    assert tm.topic_for("commands", "dev-7") == ("factory/dev-7/commands", 2)
    assert tm.topic_for("telemetry", "d%2E1.a.b") == ("factory/d.1/telemetry/a/b", 1)
    assert tm.topic_for("events", "ev.x") == ("events/x", 2)
    assert tm.topic_for("events", "other.x") is None
    assert tm.topic_for("exported", "a") is None  # publish-only: never read back
    assert tm.topic_for("amq.topic", "a.b") is None  # the default translation applies


@settings(max_examples=200, deadline=None)
@given(
    device=st.text(alphabet=st.sampled_from("ab.*%é/-_ "), min_size=0, max_size=5).filter(
        lambda s: "/" not in s
    ),
    rest=st.lists(st.text(alphabet=st.sampled_from("ab.*%é-"), max_size=4), max_size=3),
    kind=st.sampled_from(["telemetry", "commands"]),
)
def test_topic_key_topic_is_the_identity_inside_a_namespace(
    device: str, rest: list[str], kind: str
) -> None:
    tm = topic_map()
    topic = "/".join(["factory", device, kind, *rest])
    route = tm.route(topic)
    assert route.exchange == kind
    found = tm.topic_for(route.exchange, route.routing_key)
    assert found is not None
    assert found[0] == topic


# -- the MQTT hub with rules ---------------------------------------------------------------------


def world_with(mappings: MappingSet = MAPPINGS) -> World:
    world = World()
    declare_exchanges(world.broker.vhost("/"), mappings)
    world.hub = MqttHub(world.broker, world.users, MqttSettings(), world.clock, mappings)
    return world


def amqp_queue(world: World, exchange: str, key: str) -> str:
    vhost = world.hub.vhost
    name = f"q-{exchange}-{key}"
    vhost.declare_queue(name)
    vhost.bind_queue(name, exchange, key)
    return name


def take(world: World, queue: str) -> Message:
    got = world.hub.vhost.get(queue, no_ack=True)
    assert got is not None
    return got[0].message


def test_mqtt_publish_goes_to_the_rule_exchange_with_its_qos_policy() -> None:
    world = world_with()
    queue = amqp_queue(world, "telemetry", "#")
    pub = world.client()
    pub.connect("dev")
    pub.publish("factory/dev-7/telemetry/temp", b"21", 2, packet_id=5)
    message = take(world, queue)
    assert message.routing_key == "dev-7.temp"
    assert message.properties.delivery_mode == 2
    assert message.properties.headers == {"x-mqtt-publish-qos": 1}  # capped at 1
    # QoS 0 is forced persistent too.
    pub.publish("factory/dev-7/telemetry/hum", b"40", 0)
    message = take(world, queue)
    assert (message.properties.delivery_mode, message.persistent) == (2, True)


def test_mqtt_subscriber_inside_a_rule_sees_mqtt_and_amqp_publishes_under_its_topic() -> None:
    world = world_with()
    sub = world.client()
    sub.connect("device")
    sub.subscribe("factory/dev-7/commands/#", 1)
    pub = world.client()
    pub.connect("other")
    pub.publish("factory/dev-7/commands/reboot", b"now", 1)
    assert pub.expect(PubAck).reason_code == ReasonCode.SUCCESS
    props = AmqpProperties(delivery_mode=2, correlation_id="c1")
    world.hub.vhost.publish("commands", Message("commands", "dev-7.calibrate", b"go",
                                                properties=props))  # fmt: skip
    world.hub.vhost.publish("commands", Message("commands", "dev-8.calibrate", b"not me",
                                                properties=props))  # fmt: skip
    # Not in any rule's namespace of this exchange's keys: amq.topic is not bound here.
    world.hub.vhost.publish("amq.topic", Message("amq.topic", "factory.dev-7.commands.x", b"no",
                                                 properties=props))  # fmt: skip
    got = sub.publishes()
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        ("factory/dev-7/commands/reboot", b"now", 1),
        ("factory/dev-7/commands/calibrate", b"go", 1),
    ]
    assert got[1].properties.correlation_data == b"c1"


def test_qos_cap_applies_to_amqp_publishes_read_back_through_the_rule() -> None:
    world = world_with()
    sub = world.client()
    sub.connect("s")
    sub.subscribe("factory/+/telemetry/#", 2)
    headers: dict[str, object] = {"x-mqtt-publish-qos": 2}
    props = AmqpProperties(delivery_mode=2, headers=headers)
    world.hub.vhost.publish("telemetry", Message("telemetry", "d1.t", b"v", properties=props))
    (got,) = sub.publishes()
    assert (got.topic, got.qos) == ("factory/d1/telemetry/t", 1)


def test_wildcard_subscriber_gets_both_rule_and_default_traffic_once() -> None:
    world = world_with()
    sub = world.client()
    sub.connect("s")
    sub.subscribe("factory/#", 0)
    pub = world.client()
    pub.connect("p")
    for topic in ("factory/a/telemetry/t", "factory/a/commands/c", "factory/a/status"):
        pub.publish(topic, b"x", 0)
    assert [p.topic for p in sub.publishes()] == [
        "factory/a/telemetry/t", "factory/a/commands/c", "factory/a/status",
    ]  # fmt: skip


def test_unsubscribe_removes_every_binding_it_made() -> None:
    world = world_with()
    sub = world.client()
    sub.connect("s")
    sub.subscribe("factory/#", 0)
    vhost = world.hub.vhost
    queue = "mqtt-subscription-s"
    bound = {(b.source, b.routing_key) for b in vhost.bindings() if b.destination == queue}
    assert bound == {
        ("telemetry", "*.#"), ("telemetry", ""), ("commands", "*.#"), ("commands", ""),
        ("amq.topic", "factory.#"),
    }  # fmt: skip
    sub.send(Unsubscribe(2, ("factory/#",)))
    sub.expect(UnsubAck)
    assert not [b for b in vhost.bindings() if b.destination == queue]


def test_subscription_fails_cleanly_when_a_rule_exchange_is_missing() -> None:
    mappings = load_texts([("m.toml", '[[rule]]\nname = "m"\ntopic = "m/#"\nexchange = "gone"\n'
                            'routing_key = "{#}"\n')])  # fmt: skip
    world = world_with(mappings)
    sub = world.client()
    sub.connect("s")
    ack = sub.subscribe("#", 0)
    assert ack.reason_codes == (ReasonCode.UNSPECIFIED_ERROR,)
    assert not [b for b in world.hub.vhost.bindings() if b.destination.startswith("mqtt-")]


def test_retained_stays_keyed_by_topic_and_amqp_retain_on_a_rule_exchange_reads_back() -> None:
    world = world_with()
    hub = world.hub
    pub = world.client()
    pub.connect("p")
    pub.publish("factory/d1/telemetry/t", b"mqtt", 1, retain=True)
    props = AmqpProperties(headers={"x-mqtt-retain": True}, delivery_mode=2)
    message = Message("commands", "d2.reset", b"amqp", properties=props)
    hub.vhost.publish("commands", message)
    assert "commands" in hub.topic_map.retain_exchanges
    hub.retain_from_amqp("commands", message)
    sub = world.client()
    sub.connect("late")
    sub.subscribe("factory/#", 2)
    got = sorted((p.topic, p.payload, p.retain, p.qos) for p in sub.publishes())
    assert got == [
        ("factory/d1/telemetry/t", b"mqtt", True, 1),
        ("factory/d2/commands/reset", b"amqp", True, 1),
    ]


def test_publish_to_a_reply_topic_reaches_the_queue_or_the_direct_reply_hook() -> None:
    world = world_with()
    hub = world.hub
    hub.vhost.declare_queue("rpc-replies")
    pub = world.client()
    pub.connect("responder")
    pub.publish("$amqp/reply/rpc-replies", b"answer", 1)
    assert pub.expect(PubAck).reason_code == ReasonCode.SUCCESS
    assert take(world, "rpc-replies").body == b"answer"
    seen: list[tuple[str, bytes]] = []

    def direct_reply(key: str, message: Message) -> bool:
        seen.append((key, message.body))
        return True

    hub.direct_reply = direct_reply
    pub.publish("$amqp/reply/amq.rabbitmq.reply-to.tok", b"direct", 1, packet_id=2)
    assert pub.expect(PubAck).reason_code == ReasonCode.SUCCESS
    assert seen == [("amq.rabbitmq.reply-to.tok", b"direct")]
    hub.direct_reply = None
    pub.publish("$amqp/reply/amq.rabbitmq.reply-to.gone", b"late", 1, packet_id=3)
    assert pub.expect(PubAck).reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_without_rules_the_hub_keeps_the_plain_paths() -> None:
    world = World()
    topic_map = world.hub.topic_map
    assert topic_map.has_rules is False
    assert topic_map.retain_exchanges == frozenset({"amq.topic"})
    assert topic_map.bindings("a/+") == (("amq.topic", "a.*"),)
    route = topic_map.route("a/b")
    assert (route.exchange, route.routing_key, route.qos_max, route.delivery_mode) == (
        "amq.topic", "a.b", 2, None,
    )  # fmt: skip


UNDECLARED = load_texts([("u.toml", '[[rule]]\nname = "u"\ntopic = "u/+"\nexchange = "ext"\n'
                          'routing_key = "{1}"\n[rule.qos]\ndelivery_mode = 1\n')])  # fmt: skip


def test_a_rule_exchange_not_declared_by_the_rule_must_exist() -> None:
    world = world_with(UNDECLARED)
    pub = world.client()
    pub.connect("p")
    pub.publish("u/a", b"x", 1)
    assert pub.expect(PubAck).reason_code == ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
    # Declared from the AMQP side later: the rule works.
    world.hub.vhost.declare_exchange("ext", "topic")
    queue = amqp_queue(world, "ext", "#")
    pub.publish("u/b", b"y", 1, packet_id=2, properties=Properties(message_expiry_interval=30))
    assert pub.expect(PubAck).reason_code == ReasonCode.SUCCESS
    message = take(world, queue)
    assert message.routing_key == "b"
    # Forced transient, the MQTT 5 properties kept.
    assert (message.properties.delivery_mode, message.persistent) == (1, False)
    assert (message.properties.expiration, message.expiration_ms) == ("30000", 30000)


def test_a_binding_key_too_long_for_amqp_refuses_the_filter() -> None:
    long_word = "w" * 200
    mappings = load_texts([("l.toml", f'[[rule]]\nname = "l"\ntopic = "l/+"\nexchange = "lx"\n'
                            f'declare = true\nrouting_key = "{long_word}.{{1}}"\n')])  # fmt: skip
    world = world_with(mappings)
    sub = world.client()
    sub.connect("s")
    assert sub.subscribe("l/" + "x" * 60, 0).reason_codes == (ReasonCode.TOPIC_FILTER_INVALID,)
    assert sub.subscribe("l/short", 0, packet_id=2).reason_codes == (ReasonCode.GRANTED_QOS_0,)


NS_LEVEL = st.sampled_from(["factory", "telemetry", "commands", "d1", "d.2", "t", "+", ""])
TOPIC_WORD = st.sampled_from(["factory", "telemetry", "commands", "d1", "d.2", "t", ""])


@st.composite
def subscription_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(NS_LEVEL, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@settings(max_examples=200, deadline=None)
@given(
    topic_filter=subscription_filters(),
    topics=st.lists(st.lists(TOPIC_WORD, min_size=1, max_size=5), min_size=1, max_size=20),
)
def test_every_topic_a_filter_matches_is_bound_where_it_is_published(
    topic_filter: str, topics: list[list[str]]
) -> None:
    """Whatever rule or default a matching topic is published through, one of the filter's
    bindings (AMQP topic-exchange matching, the core's trie) takes its routing key."""
    tm = topic_map()
    tries: dict[str, TopicTrie[str]] = {}
    for exchange, key in tm.bindings(topic_filter):
        tries.setdefault(exchange, TopicTrie()).add(key, key)
    for levels in topics:
        topic = "/".join(levels)
        if not topic or not matches(topic_filter, topic):
            continue  # "" is no MQTT topic name
        route = tm.route(topic)
        if route.rule is not None and not route.rule.subscribes:
            continue  # publish-only rules are one-way by design
        trie = tries.get(route.exchange)
        if route.rule is not None and route.rule.exchange_type == "fanout":
            assert trie is not None
            continue
        assert trie is not None, (topic, route, tm.bindings(topic_filter))
        assert trie.match(route.routing_key), (topic, route, tm.bindings(topic_filter))
