"""MQTT.js (Node) against the gateway over TCP and over WebSocket (ws://host:port/ws):
QoS 0/1/2, wildcard and retained delivery, MQTT 5 properties, Topic Alias both ways,
Subscription Identifiers, persistent sessions. The scripts live in tests/interop/js."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.gateway_runner import RunningGateway

from .mqtt_helpers import (
    HOST,
    JS_DIR,
    run_node,
    uid,
)

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, scope="module")
def _node_peers_installed() -> None:
    """MQTT.js must run in CI: a missing peer is a failure, never a skip."""
    assert shutil.which("node") is not None, "node is not installed"
    assert (JS_DIR / "node_modules" / "mqtt").is_dir(), "run `npm ci` in tests/interop/js"


TRANSPORTS = ["tcp", "ws"]


def url(gateway: RunningGateway, transport: str) -> str:
    if transport == "ws":
        return f"ws://{HOST}:{gateway.ws_port}/ws"
    return f"mqtt://{HOST}:{gateway.mqtt_port}"


def by_payload(received: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {message["payload"]: message for message in received}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mqttjs_v311_pubsub(gateway: RunningGateway, transport: str) -> None:
    prefix = uid("js4")
    result = run_node("mqtt_pubsub.mjs", url(gateway, transport), 4, prefix)
    assert result["granted"] == [[f"{prefix}/+/c", 2], [f"{prefix}/ret", 1]]
    got = by_payload(result["received"])
    assert set(got) == {"retained", "q0", "q1", "q2"}
    assert (got["retained"]["retain"], got["retained"]["qos"]) == (True, 1)
    for qos in (0, 1, 2):
        message = got[f"q{qos}"]
        assert (message["topic"], message["qos"], message["retain"]) == (
            f"{prefix}/q{qos}/c",
            qos,
            False,
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mqttjs_v5_properties_aliases_and_identifiers(
    gateway: RunningGateway, transport: str
) -> None:
    prefix = uid("js5")
    result = run_node("mqtt_pubsub.mjs", url(gateway, transport), 5, prefix)
    got = by_payload(result["received"])
    assert set(got) == {"retained", "q0", "q1", "q2", "props", "alias-set", "alias-used"}
    # Every message came through the subscription that carried identifier 42.
    assert {m["subscriptionIdentifier"] for m in got.values()} == {42}
    for qos in (0, 1, 2):
        assert got[f"q{qos}"]["qos"] == qos
        assert got[f"q{qos}"]["topic"] == f"{prefix}/q{qos}/c"
    props = got["props"]
    assert props["contentType"] == "text/plain"
    assert props["correlationData"] == "0001feff"
    assert props["responseTopic"] == f"{prefix}/reply"
    assert props["userProperties"] == {"site": "7", "tags": ["a", "b"]}
    assert props["payloadFormatIndicator"] is True
    assert 119 <= props["messageExpiryInterval"] <= 120
    # Client -> gateway: the publisher sent the second one as alias 3 with an empty topic.
    # Gateway -> client: aliases were assigned (MQTT.js resolved them back to the topic).
    for name in ("alias-set", "alias-used"):
        assert got[name]["topic"] == f"{prefix}/alias/c"
        assert got[name]["alias"] is not None
    assert got["alias-set"]["alias"] == got["alias-used"]["alias"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", [4, 5])
def test_mqttjs_persistent_session(gateway: RunningGateway, transport: str, version: int) -> None:
    prefix = uid(f"jss{version}")
    result = run_node("mqtt_session.mjs", url(gateway, transport), version, prefix)
    assert result["firstSessionPresent"] is False
    assert result["sessionPresent"] is True
    assert result["received"] == [[f"{prefix}/m{n}", f"queued{n}", 1] for n in (1, 2, 3)]
