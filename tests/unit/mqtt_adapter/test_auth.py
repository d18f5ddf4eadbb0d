"""Who may connect: guest only from loopback, configured users from anywhere, bad credentials
refused with the version's code (DESIGN.md section 1)."""

from __future__ import annotations

import pytest

from gateway.core.users import User
from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, ReasonCode

from .harness import World, cheap_hash

REMOTE = "192.0.2.10"  # TEST-NET-1: never loopback

ALICE = User("alice", cheap_hash("s3cret"))
LOCAL_ONLY = User("ops", cheap_hash("pw"), loopback_only=True)


@pytest.fixture
def world() -> World:
    return World(users=(ALICE, LOCAL_ONLY))


@pytest.mark.parametrize(
    ("version", "peer", "expected"),
    [
        (MQTT_5, "127.0.0.1", ReasonCode.SUCCESS),
        (MQTT_5, "::1", ReasonCode.SUCCESS),
        (MQTT_5, "::ffff:127.0.0.1", ReasonCode.SUCCESS),
        (MQTT_5, REMOTE, ReasonCode.NOT_AUTHORIZED),
        (MQTT_3_1_1, REMOTE, ReasonCode.NOT_AUTHORIZED),  # 3.1.1 return code 5
    ],
)
def test_guest_is_accepted_only_from_loopback(
    world: World, version: int, peer: str, expected: ReasonCode
) -> None:
    client = world.client(version, peer=peer)
    ack = client.connect("g1", username="guest", password=b"guest")
    assert ack.reason_code == expected
    assert client.transport_closed == (expected != ReasonCode.SUCCESS)
    assert ("g1" in world.hub.sessions) == (expected == ReasonCode.SUCCESS)


def test_anonymous_is_guest_and_refused_from_a_remote_peer(world: World) -> None:
    client = world.client(MQTT_5, peer=REMOTE)
    assert client.connect("anon").reason_code == ReasonCode.NOT_AUTHORIZED
    local = world.client(MQTT_5)
    assert local.connect("anon").reason_code == ReasonCode.SUCCESS


def test_anonymous_is_refused_when_guest_is_disabled() -> None:
    world = World(users=(ALICE,), default_guest=False)
    client = world.client(MQTT_5)
    assert client.connect("anon").reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD


def test_configured_user_connects_from_a_remote_peer(world: World) -> None:
    client = world.client(MQTT_5, peer=REMOTE)
    ack = client.connect("a1", username="alice", password=b"s3cret")
    assert ack.reason_code == ReasonCode.SUCCESS
    assert client.handler.username == "alice"


def test_loopback_only_user_is_refused_remotely(world: World) -> None:
    client = world.client(MQTT_5, peer=REMOTE)
    assert client.connect("o1", username="ops", password=b"pw").reason_code == (
        ReasonCode.NOT_AUTHORIZED
    )


@pytest.mark.parametrize("version", [MQTT_5, MQTT_3_1_1])
@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", b"wrong"), ("nobody", b"s3cret"), ("alice", b"\xff\xfe"), ("alice", None)],
)
def test_bad_credentials(world: World, version: int, username: str, password: bytes | None) -> None:
    client = world.client(version)
    ack = client.connect("b1", username=username, password=password)
    # 0x86 in MQTT 5; the codec writes 3.1.1 return code 4 for it.
    assert ack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    assert client.transport_closed
    assert world.hub.connections == 0


def test_user_without_access_to_the_vhost_is_not_authorized() -> None:
    other = User("carol", cheap_hash("pw"), vhosts=frozenset({"elsewhere"}))
    world = World(users=(other,))
    client = world.client(MQTT_5)
    ack = client.connect("c1", username="carol", password=b"pw")
    assert ack.reason_code == ReasonCode.NOT_AUTHORIZED
