"""A CONNECT whose password must be hashed waits off the event loop (gateway/net_login.py,
mqtt/session_login.py): other clients are served meanwhile, what the client sent after its
CONNECT is answered after the CONNACK and in order, and a wrong password or a client that
leaves while its password is hashed changes nothing for anyone else.

The gateway's hasher is swapped for one that holds every check at a gate, so "meanwhile" is a
state the test controls, not a race against scrypt's speed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from gateway.core.users import hash_password
from gateway.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Publish,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
)
from gateway.net_login import PasswordHasher
from tests.gated_hasher import GatedHasher, gated_gateway
from tests.gateway_runner import RunningGateway, running_gateway

from .mqtt_helpers import (
    Paho,
    Transport,
    close_clients,  # noqa: F401  (autouse: closes every client)
    wait_until,
)
from .mqtt_raw import (
    RawClient,
    close_raw_clients,  # noqa: F401  (autouse: closes every client)
)

pytestmark = pytest.mark.interop

VERSIONS = [pytest.param(MQTT_3_1_1, id="v311"), pytest.param(MQTT_5, id="v5")]


@pytest.fixture
def gated() -> Iterator[tuple[RunningGateway, GatedHasher]]:
    with gated_gateway() as gateway_and_hasher:
        yield gateway_and_hasher


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def subscribe(packet_id: int, topic: str) -> Subscribe:
    return Subscribe(packet_id, ((topic, SubscriptionOptions(qos=1)),))


def assert_served_meanwhile(gateway: RunningGateway, level: int) -> None:
    """An anonymous client connects, subscribes and gets its own message back."""
    other = RawClient(gateway.mqtt_port, level)
    other.send(Connect(uid("other"), protocol_level=level))
    assert other.expect(ConnAck).reason_code == ReasonCode.SUCCESS
    topic = f"meanwhile/{uid('t')}"
    other.send(subscribe(1, topic))
    other.expect(SubAck)
    other.send(Publish(topic, b"still served", qos=0))
    assert other.expect(Publish).payload == b"still served"
    other.close()


@pytest.mark.parametrize("level", VERSIONS)
def test_other_clients_are_served_while_a_password_is_hashed(
    gated: tuple[RunningGateway, GatedHasher], level: int
) -> None:
    gateway, hasher = gated
    alice = RawClient(gateway.mqtt_port, level)
    topic = f"pipelined/{uid('t')}"
    # CONNECT, then SUBSCRIBE and a PUBLISH to it, before any CONNACK (clients may pipeline).
    alice.send(
        Connect(uid("alice"), protocol_level=level, username="alice", password=b"wonderland"),
        subscribe(7, topic),
        Publish(topic, b"after the connack", qos=0),
    )
    hasher.wait_submitted()
    alice.assert_silent(0.2)  # no CONNACK while the hash is held
    assert_served_meanwhile(gateway, level)
    hasher.gate.set()
    connack = alice.expect(ConnAck)
    assert connack.reason_code == ReasonCode.SUCCESS
    suback = alice.expect(SubAck)
    assert suback.packet_id == 7
    assert alice.expect(Publish).payload == b"after the connack"
    # The socket is read again: the connection goes on as any other.
    alice.send(Publish(topic, b"later", qos=0))
    assert alice.expect(Publish).payload == b"later"


@pytest.mark.parametrize("level", VERSIONS)
def test_a_wrong_password_is_refused_after_its_hash(
    gated: tuple[RunningGateway, GatedHasher], level: int
) -> None:
    gateway, hasher = gated
    mallory = RawClient(gateway.mqtt_port, level)
    mallory.send(
        Connect(uid("mallory"), protocol_level=level, username="alice", password=b"guess"),
        subscribe(1, "secrets/#"),
    )
    hasher.wait_submitted()
    assert_served_meanwhile(gateway, level)
    hasher.gate.set()
    packets = mallory.expect_closed()
    assert [type(packet) for packet in packets] == [ConnAck]  # nothing for the SUBSCRIBE
    refusal = packets[0]
    assert isinstance(refusal, ConnAck)
    # 0x86, which the raw client reads back from 3.1.1's return code 4 as the same code.
    assert refusal.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    # Refused, never counted as a connection (the other client's close may still be on its way).
    wait_until(lambda: gateway.gateway.mqtt.connections == 0)


def test_a_client_that_leaves_while_hashed_is_forgotten(
    gated: tuple[RunningGateway, GatedHasher],
) -> None:
    gateway, hasher = gated
    client_id = uid("leaver")
    leaver = RawClient(gateway.mqtt_port, MQTT_5)
    leaver.send(Connect(client_id, protocol_level=MQTT_5, username="alice", password=b"wonderland"))
    hasher.wait_submitted()
    leaver.close()
    hasher.gate.set()
    # The answer finds the connection gone: no session, no count, and the gateway serves on.
    assert_served_meanwhile(gateway, MQTT_5)
    hub = gateway.gateway.mqtt
    wait_until(lambda: client_id not in hub.sessions and hub.connections == 0)


@pytest.fixture(scope="module")
def with_alice() -> Iterator[RunningGateway]:
    users = [{"name": "alice", "password_hash": hash_password("wonderland", n=16)}]
    with running_gateway(users=users) as running:
        yield running


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_paho_logs_in_through_the_login_worker(
    with_alice: RunningGateway, transport: Transport
) -> None:
    # The gateway's own hasher (a worker thread), over both MQTT listeners.
    assert isinstance(with_alice.gateway.users.hasher, PasswordHasher)
    port = with_alice.ws_port if transport == "websockets" else with_alice.mqtt_port
    alice = Paho(port, transport=transport, username="alice", password="wonderland")
    topic = f"worker/{uid('t')}"
    alice.subscribe(topic, 1)
    alice.publish_with_ack(topic, b"logged in", 1)
    assert alice.next().payload == b"logged in"
    mallory = Paho(port, transport=transport, username="alice", password="guess", connect=False)
    assert mallory.connect().reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD.value
