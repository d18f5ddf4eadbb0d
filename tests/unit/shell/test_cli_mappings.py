"""`gateway mappings check DIR` and `gateway mappings explain TOPIC`, and `gateway run` refusing
bad rules before it binds anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

REPO = Path(__file__).resolve().parents[3]

BAD = """
[[rule]]
name = "broad"
topic = "a/#"
exchange = "x"
routing_key = "{#}"

[[rule]]
name = "narrow"
topic = "a/b"
exchange = "y"
routing_key = "ab"
"""


def test_check_prints_one_line_per_rule_and_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["mappings", "check", str(REPO / "mappings" / "demo")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "rule 'telemetry': factory/+/telemetry/# -> exchange 'telemetry'" in lines[0]
    assert "rule 'commands'" in lines[1]
    assert lines[2].startswith("default rule: every other topic -> exchange 'amq.topic'")


def test_check_the_shipped_default_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "check", str(REPO / "mappings")]) == 0
    out = capsys.readouterr().out
    assert "rule 'default': the default rule, stated explicitly" in out
    assert "(0 rule(s) in 1 file(s))" in out


def test_check_fails_with_one_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plant.toml").write_text(BAD + '[[rule]]\nname = "broad"\ntopic = "z"\n'
                                         'exchange = "z"\ncolour = 1\n')  # fmt: skip
    assert main(["mappings", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"gateway: mappings error: {tmp_path}/plant.toml: rule 'broad': ")
    assert "colour: unknown key" in err[0]
    assert f"{tmp_path}/plant.toml: rule 'narrow': unreachable" in err[1]


def test_check_of_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "check", str(tmp_path / "nope")]) == 1
    assert "expected a directory" in capsys.readouterr().err


def test_explain_a_topic_and_a_filter(capsys: pytest.CaptureFixture[str]) -> None:
    demo = str(REPO / "mappings" / "demo")
    assert main(["mappings", "explain", "factory/dev-7/telemetry/temp", "--mappings", demo]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "publish factory/dev-7/telemetry/temp: rule 'telemetry' "
        f"({demo}/factory.toml): exchange 'telemetry' routing key 'dev-7.temp'; "
        "qos max 2, delivery_mode from QoS"
    )
    assert (
        out[1]
        == "subscribe factory/dev-7/telemetry/temp: bind exchange 'telemetry' key 'dev-7.temp'"
    )
    assert main(["mappings", "explain", "factory/+/commands/#", "--mappings", demo]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "publish factory/+/commands/#: a filter cannot be published to",
        "subscribe factory/+/commands/#: bind exchange 'commands' key '*.#'",
        # factory//commands renders the empty key (zero AMQP words): bound on its own.
        "subscribe factory/+/commands/#: bind exchange 'commands' key ''",
    ]
    assert main(["mappings", "explain", "factory/dev-7/status", "--mappings", demo]) == 0
    status = capsys.readouterr().out
    assert "default rule: exchange 'amq.topic' routing key 'factory.dev-7.status'" in status
    assert main(["mappings", "explain", "$amqp/reply/q1", "--mappings", demo]) == 0
    assert "built-in reply topic rule: exchange '' routing key 'q1'" in capsys.readouterr().out


def test_explain_a_shared_subscription(capsys: pytest.CaptureFixture[str]) -> None:
    demo = str(REPO / "mappings" / "demo")
    assert main(["mappings", "explain", "$share/g/factory/+/telemetry/#", "--mappings", demo]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "publish $share/g/factory/+/telemetry/#: a shared subscription cannot be published to",
        "subscribe $share/g/factory/+/telemetry/#: bind exchange 'telemetry' key '*.#'",
        "subscribe $share/g/factory/+/telemetry/#: bind exchange 'telemetry' key ''",
    ]


def test_explain_a_bad_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "explain", "a/#/b", "--mappings", str(REPO / "mappings")]) == 0
    assert "not a valid topic or topic filter" in capsys.readouterr().out


def test_run_refuses_bad_rules_before_binding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plant.toml").write_text(BAD)
    assert main(["run", "--mappings", str(tmp_path), "--mqtt-port", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gateway: config error: {tmp_path}/plant.toml: rule 'narrow':")
