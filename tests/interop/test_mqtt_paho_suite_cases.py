"""Cases found by running Eclipse Paho's interoperability suites (paho.mqtt.testing,
client_test.py / client_test5.py) against the gateway, kept as regression tests with the raw
client so they do not depend on that suite's code."""

from __future__ import annotations

import uuid

import pytest

from gateway.mqtt.packets import (
    Disconnect,
    Packet,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
)
from tests.gateway_runner import RunningGateway

from .mqtt_raw import (
    TIMEOUT,
    RawClient,
    close_raw_clients,  # noqa: F401  (autouse: closes every client)
)

pytestmark = pytest.mark.interop


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def recv_slowly(raw: RawClient) -> Packet | None:
    """The next packet read a few bytes at a time, as Paho's test client does, so that most
    of what the server sent is still in the socket when the client answers; None at EOF."""
    raw.sock.settimeout(TIMEOUT)
    while True:
        data = raw.sock.recv(4)
        if not data:
            return None
        packets = raw.decoder.feed(data)
        if packets:
            assert len(packets) == 1, packets
            return packets[0]


def test_receive_maximum_disconnect_reaches_a_client_that_keeps_talking(
    gateway: RunningGateway,
) -> None:
    """client_test5 test_flow_control2: one QoS 2 PUBLISH more than the advertised Receive
    Maximum draws DISCONNECT 0x93 (3.3.4). The client is still answering each PUBREC with a
    PUBREL when the server closes; closing a socket with unread input makes the kernel send
    RST, which used to destroy the DISCONNECT (and its reason code) before the client read it.
    """
    raw = RawClient(gateway.mqtt_port)
    ack = raw.connect(uid("flow2"))
    assert ack.reason_code == ReasonCode.SUCCESS, ack
    receive_maximum = ack.properties.receive_maximum or 65535
    topic = uid("flow2")
    raw.send(*(Publish(topic, b"m", 2, packet_id=i) for i in range(1, receive_maximum + 2)))

    got: list[Packet] = []
    while True:
        try:
            packet = recv_slowly(raw)
            if packet is None:
                break
            got.append(packet)
            if isinstance(packet, PubRec):
                raw.send(PubRel(packet.packet_id))
        except (BrokenPipeError, ConnectionResetError) as exc:
            pytest.fail(f"connection reset before DISCONNECT, after {len(got)} packets: {exc}")
        if isinstance(packet, Disconnect):
            break
    assert got, "nothing received"
    last = got[-1]
    assert isinstance(last, Disconnect), got[-3:]
    assert last.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
