"""HTTP side: /metrics for Prometheus and the read-only management API."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import pytest

from gateway.core.users import hash_password
from tests.gated_hasher import GatedHasher
from tests.gateway_runner import RunningGateway, running_gateway


def get(
    gateway: RunningGateway, path: str, auth: tuple[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{gateway.ports['http']}{path}")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        body = err.read()
        err.close()
        return err.code, body


def test_metrics_exposition(gateway: RunningGateway) -> None:
    status, body = get(gateway, "/metrics")
    assert status == 200
    text = body.decode()
    assert "# TYPE gateway_queued_bytes gauge" in text
    assert "gateway_mqtt_connections " in text
    assert "gateway_amqp_connections " in text
    assert "# TYPE gateway_queue_dropped_total counter" in text


def test_api_requires_credentials(gateway: RunningGateway) -> None:
    assert get(gateway, "/api/overview")[0] == 401
    assert get(gateway, "/api/overview", ("guest", "wrong"))[0] == 401


@pytest.mark.parametrize(
    "path", ["/api/overview", "/api/queues", "/api/exchanges", "/api/bindings"]
)
def test_api_answers_json(gateway: RunningGateway, path: str) -> None:
    status, body = get(gateway, path, ("guest", "guest"))
    assert status == 200
    data = json.loads(body)
    if path == "/api/exchanges":
        names = {x["name"] for x in data}
        assert {"", "amq.topic", "amq.direct", "amq.fanout", "amq.headers", "amq.match"} <= names
    if path == "/api/overview":
        assert data["product_name"] == "amqp-mqtt-gateway"


def test_health(gateway: RunningGateway) -> None:
    assert get(gateway, "/healthz") == (200, b'{"status":"ok"}')


@pytest.mark.parametrize(("password", "status"), [("runbook", 200), ("guess", 401)])
def test_a_management_login_hashes_off_the_loop(password: str, status: int) -> None:
    # While ops' password is held at the gate, guest (no hash needed) is answered at once.
    ops = {"name": "ops", "password_hash": hash_password("runbook", n=16), "tags": ["monitoring"]}
    users = [ops]
    with running_gateway(users=users) as gateway:
        hasher = GatedHasher(gateway.loop)
        gateway.gateway.users.hasher = hasher
        answers: list[int] = []
        waiting = threading.Thread(
            target=lambda: answers.append(get(gateway, "/api/overview", ("ops", password))[0])
        )
        waiting.start()
        try:
            hasher.wait_submitted()
            assert get(gateway, "/api/overview", ("guest", "guest"))[0] == 200
            assert answers == []
        finally:
            hasher.gate.set()
            waiting.join(10)
        assert answers == [status]


def test_metrics_count_the_password_checks() -> None:
    with running_gateway() as gateway:
        status, body = get(gateway, "/metrics")
        assert status == 200
        text = body.decode()
        assert "# TYPE gateway_logins_hashing gauge\ngateway_logins_hashing 0\n" in text
        assert "# TYPE gateway_logins_hashed counter\ngateway_logins_hashed 0\n" in text
        # guest/guest needs no hash; a wrong password is hashed on the worker, and refused.
        assert get(gateway, "/api/overview", ("guest", "guest"))[0] == 200
        assert get(gateway, "/api/overview", ("guest", "nope"))[0] == 401
        text = get(gateway, "/metrics")[1].decode()
        assert "gateway_logins_hashed 1\n" in text
        assert "gateway_logins_hash_mismatches 1\n" in text
        assert "gateway_logins_hashing 0\n" in text
