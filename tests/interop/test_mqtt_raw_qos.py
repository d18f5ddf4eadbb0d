"""QoS flows a well-behaved client library will not produce on purpose, with a raw client made
of a socket and the gateway's codec: duplicate QoS 2 packet ids, unacked messages across a
reconnect, the in-flight window, packet id reuse."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest

from gateway.mqtt.packets import (
    MQTT_3_1_1,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
)
from tests.gateway_runner import RunningGateway, running_gateway

from .mqtt_raw import (
    RawClient,
    close_raw_clients,  # noqa: F401  (autouse: closes every client)
)

pytestmark = pytest.mark.interop

KEEP = Properties(session_expiry_interval=60)
FORGET = Properties(session_expiry_interval=0)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client(gateway: RunningGateway, client_id: str, version: int = 5, **kw: object) -> RawClient:
    raw = RawClient(gateway.mqtt_port, version)
    ack = raw.connect(client_id, **kw)  # type: ignore[arg-type]
    assert ack.reason_code == ReasonCode.SUCCESS, ack
    return raw


def test_MQTT_4_3_3_10_qos2_duplicate_packet_id_is_routed_once(gateway: RunningGateway) -> None:
    topic = uid("dup2")
    sub = client(gateway, uid("sub"))
    sub.subscribe(topic, 2)
    pub = client(gateway, uid("pub"))
    pub.publish(topic, b"exactly once", 2, packet_id=9)
    assert pub.expect(PubRec).packet_id == 9
    # The client did not see PUBREC (as far as it knows) and resends with DUP.
    pub.publish(topic, b"exactly once", 2, packet_id=9, dup=True)
    assert pub.expect(PubRec).packet_id == 9
    pub.send(PubRel(9))
    assert pub.expect(PubComp) == PubComp(9)
    (got,) = sub.publishes(1)
    assert got.payload == b"exactly once"
    sub.send(PubRec(got.packet_id or 0))
    sub.expect(PubRel)
    sub.send(PubComp(got.packet_id or 0))
    sub.assert_silent()
    pub.close()
    sub.close()


def test_qos2_without_subscribers_gets_pubrec_0x10(gateway: RunningGateway) -> None:
    pub = client(gateway, uid("pub"))
    pub.publish(uid("nobody"), b"x", 2, packet_id=3)
    assert pub.expect(PubRec).reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS
    pub.send(PubRel(3))
    assert pub.expect(PubComp).reason_code == ReasonCode.SUCCESS
    pub.close()


def test_MQTT_4_4_0_1_unacked_messages_are_resent_with_dup_after_reconnect(
    gateway: RunningGateway,
) -> None:
    cid, topic = uid("redeliver"), uid("redeliver")
    sub = client(gateway, cid, clean=False, properties=KEEP)
    sub.subscribe(topic, 2)
    pub = client(gateway, uid("pub"))
    pub.publish(topic, b"one", 1, packet_id=1)
    pub.expect(PubAck)
    pub.publish(topic, b"two", 2, packet_id=2)
    pub.expect(PubRec)
    pub.send(PubRel(2))
    pub.expect(PubComp)
    one, two = sub.publishes(2)
    assert (one.qos, one.dup, two.qos, two.dup) == (1, False, 2, False)
    sub.send(PubRec(two.packet_id or 0))  # QoS 2 half way: the gateway now owes a PUBREL
    assert sub.expect(PubRel).packet_id == two.packet_id
    sub.close()  # no PUBACK for one, no PUBCOMP for two

    again = RawClient(gateway.mqtt_port)
    assert again.connect(cid, clean=False, properties=KEEP).session_present
    resent = again.recv()
    assert isinstance(resent, Publish)
    assert (resent.payload, resent.dup, resent.packet_id) == (b"one", True, one.packet_id)
    assert again.recv() == PubRel(two.packet_id or 0)
    again.send(PubAck(one.packet_id or 0), PubComp(two.packet_id or 0))
    again.assert_silent()
    again.send(Disconnect(properties=FORGET))
    again.close()
    pub.close()


def test_v311_unacked_message_is_resent_with_dup(gateway: RunningGateway) -> None:
    cid, topic = uid("redeliver311"), uid("redeliver311")
    sub = client(gateway, cid, MQTT_3_1_1, clean=False)
    sub.subscribe(topic, 1)
    pub = client(gateway, uid("pub"), MQTT_3_1_1)
    pub.publish(topic, b"again", 1, packet_id=1)
    pub.expect(PubAck)
    (first,) = sub.publishes(1)
    sub.close()
    again = RawClient(gateway.mqtt_port, MQTT_3_1_1)
    assert again.connect(cid, clean=False).session_present
    (resent,) = again.publishes(1)
    assert (resent.payload, resent.dup, resent.packet_id) == (b"again", True, first.packet_id)
    again.ack(resent)
    again.close()
    pub.close()


def test_MQTT_3_3_4_9_inflight_window_is_the_client_receive_maximum(
    gateway: RunningGateway,
) -> None:
    topic = uid("window")
    sub = client(gateway, uid("sub"), properties=Properties(receive_maximum=2))
    sub.subscribe(topic, 1)
    pub = client(gateway, uid("pub"))
    for n in range(5):
        pub.publish(topic, str(n).encode(), 1, packet_id=n + 1)
        pub.expect(PubAck)
    first = sub.publishes(2)
    assert [p.payload for p in first] == [b"0", b"1"]
    sub.assert_silent()  # the window is full
    sub.ack(first[0])
    (third,) = sub.publishes(1)
    assert third.payload == b"2"
    sub.assert_silent()
    for packet in (first[1], third):
        sub.ack(packet)
    assert [p.payload for p in sub.publishes(2)] == [b"3", b"4"]
    sub.close()
    pub.close()


def test_MQTT_2_2_1_3_outbound_packet_ids_in_flight_never_collide(
    gateway: RunningGateway,
) -> None:
    topic = uid("ids")
    sub = client(gateway, uid("sub"), properties=Properties(receive_maximum=8))
    sub.subscribe(topic, 2)
    pub = client(gateway, uid("pub"))
    for n in range(60):
        pub.publish(topic, str(n).encode(), 1 + n % 2, packet_id=n + 1)
    rng = random.Random(7)
    in_flight: dict[int, Publish] = {}
    awaiting_pubrel: set[int] = set()
    payloads: list[bytes] = []
    while len(payloads) < 60 or awaiting_pubrel:
        packet = sub.recv()
        if isinstance(packet, PubRel):
            awaiting_pubrel.remove(packet.packet_id)
            sub.send(PubComp(packet.packet_id))
            continue
        assert isinstance(packet, Publish), packet
        # A QoS 2 id stays in use until PUBCOMP, so it may not be reused before.
        assert packet.packet_id not in in_flight, packet
        assert packet.packet_id not in awaiting_pubrel, packet
        in_flight[packet.packet_id or 0] = packet
        payloads.append(packet.payload)
        assert len(in_flight) + len(awaiting_pubrel) <= 8
        if len(in_flight) + len(awaiting_pubrel) == 8 or len(payloads) == 60:
            # Settle a random half, out of order: freed ids come round again.
            for packet_id in rng.sample(sorted(in_flight), (len(in_flight) + 1) // 2):
                if in_flight.pop(packet_id).qos == 1:
                    sub.send(PubAck(packet_id))
                else:
                    sub.send(PubRec(packet_id))
                    awaiting_pubrel.add(packet_id)
    assert payloads == [str(n).encode() for n in range(60)]
    sub.close()
    pub.close()


@pytest.fixture(scope="module")
def small_window() -> Iterator[RunningGateway]:
    with running_gateway(mqtt={"max_inflight": 2}) as running:
        yield running


def test_inflight_window_is_the_server_maximum_when_smaller(small_window: RunningGateway) -> None:
    topic = uid("srvwin")
    sub = RawClient(small_window.mqtt_port)
    ack = sub.connect(uid("sub"))  # no Receive Maximum: 65535, so the server's 2 applies
    assert ack.properties.receive_maximum == 2
    sub.subscribe(topic, 1)
    pub = client(small_window, uid("pub"))
    for n in range(4):
        pub.publish(topic, str(n).encode(), 1, packet_id=n + 1)
        pub.expect(PubAck)
    first = sub.publishes(2)
    sub.assert_silent()
    sub.ack(first[0])
    assert [p.payload for p in sub.publishes(1)] == [b"2"]


def test_inbound_qos2_beyond_the_receive_maximum_is_0x93(small_window: RunningGateway) -> None:
    pub = client(small_window, uid("pub"))
    for packet_id in (1, 2):
        pub.publish(uid("t"), b"x", 2, packet_id=packet_id)
        pub.expect(PubRec)
    pub.publish(uid("t"), b"x", 2, packet_id=3)
    (disconnect,) = pub.expect_closed()
    assert disconnect == Disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
