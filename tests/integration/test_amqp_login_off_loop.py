"""An AMQP login whose password must be hashed waits off the event loop (gateway/net_login.py,
amqp/channel_connection.py): other clients are served meanwhile, the frames the client sent
after its start-ok are answered after the tune and in order, and a wrong password or a client
that leaves meanwhile changes nothing for anyone else. A raw client pipelines the handshake;
the gateway's hasher holds each check at a gate (tests/gated_hasher.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame

from gateway.amqp.spec import PROTOCOL_HEADER
from tests.gated_hasher import GatedHasher, gated_gateway
from tests.gateway_runner import RunningGateway
from tests.integration.test_amqp_wire import RawClient
from tests.interop.mqtt_helpers import wait_until


@pytest.fixture
def gated() -> Iterator[tuple[RunningGateway, GatedHasher]]:
    with gated_gateway() as gateway_and_hasher:
        yield gateway_and_hasher


def start_login(gateway: RunningGateway, password: str) -> RawClient:
    """A raw client that sent its start-ok and, in the same write, tune-ok, open and a
    channel open: all before any answer to its login."""
    client = RawClient(gateway.amqp_port)
    client.send(PROTOCOL_HEADER)
    client.expect(commands.Connection.Start)
    frames = [
        (0, commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN", response=f"\x00alice\x00{password}",
        )),
        (0, commands.Connection.TuneOk(2047, 131072, 0)),
        (0, commands.Connection.Open(virtual_host="/")),
        (1, commands.Channel.Open()),
    ]  # fmt: skip
    client.send(b"".join(pamqp_frame.marshal(method, channel) for channel, method in frames))
    return client


def assert_served_meanwhile(gateway: RunningGateway) -> None:
    """guest (no hash needed) logs in, declares a queue and gets its own message back."""
    params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", name, b"still served")
        method, _, body = channel.basic_get(name, auto_ack=True)
        assert method is not None
        assert body == b"still served"
    finally:
        connection.close()


def test_other_clients_are_served_while_a_password_is_hashed(
    gated: tuple[RunningGateway, GatedHasher],
) -> None:
    gateway, hasher = gated
    alice = start_login(gateway, "wonderland")
    hasher.wait_submitted()
    assert_served_meanwhile(gateway)
    hasher.gate.set()
    alice.expect(commands.Connection.Tune)
    alice.expect(commands.Connection.OpenOk)
    alice.expect(commands.Channel.OpenOk)
    # The socket is read again: the connection goes on as any other.
    alice.call(1, commands.Queue.Declare(queue="after-login", auto_delete=True))
    assert alice.expect(commands.Queue.DeclareOk).queue == "after-login"
    alice.close()


def test_a_wrong_password_is_refused_after_its_hash(
    gated: tuple[RunningGateway, GatedHasher],
) -> None:
    gateway, hasher = gated
    mallory = start_login(gateway, "guess")
    hasher.wait_submitted()
    assert_served_meanwhile(gateway)
    hasher.gate.set()
    close = mallory.expect(commands.Connection.Close)  # no tune, nothing for what waited
    assert close.reply_code == 403
    assert close.reply_text.startswith("ACCESS_REFUSED")
    assert mallory.closed_by_server()
    mallory.close()
    wait_until(lambda: gateway.gateway.amqp.connections == 0)


def test_a_client_that_leaves_while_hashed_is_forgotten(
    gated: tuple[RunningGateway, GatedHasher],
) -> None:
    gateway, hasher = gated
    leaver = start_login(gateway, "wonderland")
    hasher.wait_submitted()
    leaver.close()
    hasher.gate.set()
    assert_served_meanwhile(gateway)
    wait_until(lambda: gateway.gateway.amqp.connections == 0)
