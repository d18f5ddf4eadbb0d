"""Mapping files: every validation error is one line naming the file and the rule; the shipped
files load; an explicit default rule is the implicit one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bridge.mapping_rules import (
    MappingError,
    MappingSet,
    load_directory,
    load_texts,
)
from gateway.bridge.mappings import TopicMap, declare_exchanges
from gateway.bridge.topics import TopicTranslator
from gateway.core.broker import Broker

REPO = Path(__file__).resolve().parents[3]

TELEMETRY = """
[[rule]]
name = "telemetry"
topic = "factory/+/telemetry/#"
exchange = "telemetry"
declare = true
routing_key = "{1}.{#}"
"""


def rule(name: str = "r", topic: str = "a/#", exchange: str = "x", **extra: object) -> str:
    lines = [f'name = "{name}"', f'topic = "{topic}"', f'exchange = "{exchange}"']
    for key, value in extra.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = f'"{value}"'
        else:
            text = str(value)
        lines.append(f"{key} = {text}")
    return "[[rule]]\n" + "\n".join(lines) + "\n"


def errors_of(*files: str) -> list[str]:
    texts = [(f"m/{index}.toml", text) for index, text in enumerate(files)]
    with pytest.raises(MappingError) as info:
        load_texts(texts)
    return info.value.errors


def one_error(*files: str) -> str:
    (error,) = errors_of(*files)
    return error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (rule(colour="red"), "m/0.toml: rule 'r': colour: unknown key"),
        (rule(declare="yes"), "m/0.toml: rule 'r': declare: expected `bool`, got `str`"),
        ('[[rule]]\nname = "r"\ntopic = "a"\n', "m/0.toml: rule 'r': exchange: required key"),
        ("[[rule]]\ntopic = 1\n", "m/0.toml: rule #1: "),
        (rule(direction="sideways"), "m/0.toml: rule 'r': direction: "),
        (rule(topic="a/b#"), "m/0.toml: rule 'r': topic: '#' must be the whole last level"),
        (rule(topic="a/+b"), "m/0.toml: rule 'r': topic: '+' must fill a whole level"),
        (rule(topic=""), "m/0.toml: rule 'r': topic: empty topic filter"),
        (rule(topic="$share/g/a"), "m/0.toml: rule 'r': topic: a shared-subscription"),
        (rule(routing_key="{2}.{#}"), "m/0.toml: rule 'r': routing_key '{2}.{#}': {2} used"),
        (rule(routing_key="{#}.{#}"), "m/0.toml: rule 'r': routing_key '{#}.{#}': placeholder"),
        (rule(topic="a/+", routing_key="k"), "m/0.toml: rule 'r': routing_key 'k': not revers"),
        (rule(topic="a", routing_key="{#}"), "m/0.toml: rule 'r': routing_key '{#}': {#} used"),
        (rule(routing_key="{what}"), "m/0.toml: rule 'r': routing_key '{what}': unknown placeh"),
        (rule(exchange_type="x-delayed"), "m/0.toml: rule 'r': exchange_type: unknown exchange"),
        (rule(exchange="amq.fanout", declare=True), "m/0.toml: rule 'r': declare: 'amq.fanout'"),
        (rule(exchange=""), "m/0.toml: rule 'r': exchange: the default exchange '' takes no"),
        (
            rule(exchange="", direction="publish", declare=True),
            "m/0.toml: rule 'r': declare: the default exchange",
        ),
        ("[[rule]]\n" + rule()[9:] + "[rule.qos]\nmax = 3\n", "m/0.toml: rule 'r': qos.max: "),
        (
            "[[rule]]\n" + rule()[9:] + "[rule.qos]\ndelivery_mode = 3\n",
            "m/0.toml: rule 'r': qos.delivery_mode: expected 1 (transient) or 2",
        ),
        ("[[rule]]\n" + rule()[9:] + "[rule.qos]\nmin = 1\n", "m/0.toml: rule 'r': qos.min: unk"),
        ("[rules]\nname = 1\n", "m/0.toml: rules: unknown key"),
        ("[[rule]\n", "m/0.toml: not valid TOML"),
    ],
)
def test_each_error_names_the_file_and_the_rule(text: str, expected: str) -> None:
    assert one_error(text).startswith(expected)


def test_duplicate_names_across_files() -> None:
    error = one_error(rule("same", "a/#"), rule("same", "b/#", "y"))
    assert error == "m/1.toml: rule 'same': name already used by m/0.toml: rule 'same'"


def test_a_rule_covered_by_an_earlier_one_is_unreachable() -> None:
    error = one_error(rule("broad", "a/#") + rule("narrow", "a/b/+", "y", routing_key="{1}"))
    assert error.startswith("m/0.toml: rule 'narrow': unreachable: topic 'a/b/+' lies inside")
    assert "rule 'broad'" in error


def test_a_narrower_rule_first_is_fine() -> None:
    loaded = load_texts(
        [("n.toml", rule("narrow", "a/b/+", "y", routing_key="{1}") + rule("broad", "a/#"))]
    )
    assert [r.name for r in loaded.rules] == ["narrow", "broad"]


def test_partially_overlapping_namespaces_are_ambiguous() -> None:
    error = one_error(
        rule("one", "a/+/c", routing_key="one.{1}") + rule("two", "a/b/+", routing_key="two.{1}")
    )
    assert error.startswith("m/0.toml: rule 'two': ambiguous: topic 'a/b/+' partially overlaps")


def test_disjoint_namespaces_and_dollar_topics_do_not_overlap() -> None:
    load_texts([("d.toml", rule("all", "#", "x") + rule("sys", "$app/#", "y"))])


def test_a_publish_rule_and_a_subscribe_rule_may_share_a_namespace() -> None:
    loaded = load_texts(
        [
            (
                "d.toml",
                rule("out", "a/#", "x", direction="publish")
                + rule("in", "a/#", "y", direction="subscribe"),
            )
        ]
    )
    assert [r.direction for r in loaded.rules] == ["publish", "subscribe"]
    # A later rule inside a publish-only one still maps subscriptions there.
    load_texts(
        [("d.toml", rule("out", "a/#", "x", direction="publish") + rule("both", "a/b", "y"))]
    )
    error = one_error(rule("out", "a/#", "x", direction="publish") + rule("pub", "a/b", "y",
                      direction="publish"))  # fmt: skip
    assert "unreachable" in error


def test_one_exchange_declared_two_ways() -> None:
    error = one_error(
        rule("a", "a/#", "x", declare=True, routing_key="a.{#}")
        + rule("b", "b/#", "x", declare=True, exchange_type="fanout", routing_key="b.{#}")
    )
    assert error.startswith("m/0.toml: rule 'b': declare: exchange 'x' is declared differently")


def test_rules_on_one_exchange_must_give_keys_that_read_back_one_way() -> None:
    error = one_error(rule("a", "a/+/#", "x", routing_key="{1}.{#}"), rule("b", "b/+/#", "x",
                      routing_key="{1}.{#}"))  # fmt: skip
    assert error.startswith("m/1.toml: rule 'b': routing_key '{1}.{#}' could give the same key")
    load_texts([("ok.toml", rule("a", "a/#", "x", routing_key="a.{#}") + rule("b", "b/#", "x",
                routing_key="b.{#}"))])  # fmt: skip
    # Publish-only rules are never read back.
    load_texts([("ok.toml", rule("a", "a/#", "x", routing_key="{#}", direction="publish")
                + rule("b", "b/#", "x", routing_key="{#}", direction="publish"))])  # fmt: skip


def test_rules_on_the_mqtt_exchange_keep_its_key_form() -> None:
    error = one_error(rule("legacy", "old/+", "amq.topic", routing_key="legacy.{1}"))
    assert "could give the same key as the default rule" in error
    policy = load_texts([("p.toml", rule("alerts", "alerts/#", "amq.topic") + "[rule.qos]\n"
                          "delivery_mode = 2\n")])  # fmt: skip
    assert policy.rules[0].qos.delivery_mode == 2


def test_every_problem_is_reported_not_just_the_first() -> None:
    errors = errors_of(rule("a", "a/#", colour="red"), rule("b", "b/#", exchange_type="nope"))
    assert len(errors) == 2


def test_explicit_default_rule_is_the_implicit_one_wherever_it_is() -> None:
    default = (REPO / "mappings" / "default.toml").read_text()
    loaded = load_texts([("default.toml", default), ("factory.toml", TELEMETRY)])
    assert [r.name for r in loaded.rules] == ["telemetry"]
    assert [r.name for r in loaded.defaults] == ["default"]
    alone = load_texts([("default.toml", default)])
    assert alone.rules == ()
    strict = TopicTranslator("strict")
    plain = TopicMap(strict)
    restated = TopicMap(strict, alone)
    for topic in ("a/b", "$SYS/x", "a.b/c*", "/"):
        assert restated.route(topic) == plain.route(topic)
    for topic_filter in ("#", "a/+", "$SYS/#"):
        assert restated.bindings(topic_filter) == plain.bindings(topic_filter)


def test_a_default_rule_with_a_policy_is_an_ordinary_rule() -> None:
    loaded = load_texts([("p.toml", rule("all", "#", "amq.topic") + "[rule.qos]\nmax = 1\n")])
    assert [r.name for r in loaded.rules] == ["all"]


SHIPPED = sorted({path.parent for path in (REPO / "mappings").rglob("*.toml")})


@pytest.mark.parametrize("directory", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_mappings_file_loads(directory: Path) -> None:
    loaded = load_directory(directory)
    assert loaded.files == tuple(str(p) for p in sorted(directory.glob("*.toml")))


def test_shipped_files_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in (REPO / "mappings").rglob("*.toml")}
    assert {"mappings/default.toml", "mappings/demo/factory.toml"} <= names


def test_the_default_directory_changes_nothing() -> None:
    assert load_directory(REPO / "mappings").rules == ()


def test_demo_rules_are_the_agreed_ones() -> None:
    demo = load_directory(REPO / "mappings" / "demo")
    topic_map = TopicMap(TopicTranslator("strict"), demo)
    route = topic_map.route("factory/dev-7/telemetry/temp")
    assert (route.exchange, route.routing_key) == ("telemetry", "dev-7.temp")
    assert topic_map.topic_for("commands", "dev-7.reboot") == ("factory/dev-7/commands/reboot", 2)
    status = topic_map.route("factory/dev-7/status")
    assert (status.exchange, status.routing_key) == ("amq.topic", "factory.dev-7.status")
    assert {(r.exchange, r.exchange_type, r.durable, r.declare) for r in demo.rules} == {
        ("telemetry", "topic", True, True),
        ("commands", "topic", True, True),
    }


def test_load_directory_reads_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(rule("b", "b/#", "x", routing_key="b.{#}"))
    (tmp_path / "a.toml").write_text(rule("a", "a/#", "x", routing_key="a.{#}"))
    (tmp_path / "notes.txt").write_text("not a rule file")
    loaded = load_directory(tmp_path)
    assert [r.name for r in loaded.rules] == ["a", "b"]
    with pytest.raises(MappingError, match="not a directory"):
        load_directory(tmp_path / "missing")


def test_declare_exchanges_reports_a_clash_with_an_existing_exchange() -> None:
    vhost = Broker(lambda: 0.0).vhost("/")
    loaded = load_texts([("t.toml", TELEMETRY)])
    declare_exchanges(vhost, loaded)
    assert vhost.exchange("telemetry").type_name == "topic"
    declare_exchanges(vhost, loaded)  # again: same declaration, fine
    other = Broker(lambda: 0.0).vhost("/")
    other.declare_exchange("telemetry", "fanout", durable=True)
    with pytest.raises(MappingError, match=r"t.toml: rule 'telemetry': declare: "):
        declare_exchanges(other, loaded)


def test_empty_set() -> None:
    assert MappingSet().rules == ()
