"""[MQTT-4.4.0-1] across a kill -9: QoS 1 messages in flight to a persistent MQTT 5 session
(sent, not PUBACK'd) are resent after the restart with their original packet ids and DUP=1,
first and in their original order [MQTT-4.6.0-1]; once PUBACK'd they are gone for good."""

from __future__ import annotations

from pathlib import Path

from gateway.mqtt.packets import PubAck, Publish, SubAck, Subscribe, SubscriptionOptions
from tests.integration.test_store_crash import Gateway
from tests.integration.test_store_crash_sessions import Client

SUB = "pktid-sub"
COUNT = 5


def committed(client: Client, packet_id: int) -> None:
    """Returns once everything the gateway stored before this call is committed: the SUBACK
    of a persistent session waits for the commit of its record, which comes after them."""
    client.send(Subscribe(packet_id, ((f"pktid-barrier/{packet_id}", SubscriptionOptions(0)),)))
    suback = client.next()
    assert isinstance(suback, SubAck)
    assert suback.packet_id == packet_id


def nothing_more(client: Client) -> None:
    client.sock.settimeout(0.3)
    try:
        data = client.sock.recv(65536)
    except OSError:  # the timeout (TimeoutError is an OSError)
        return
    assert data == b"", f"unexpected bytes from the gateway: {data!r}"


def test_in_flight_qos1_keeps_packet_ids_and_dup_across_sigkill(tmp_path: Path) -> None:
    started: list[Gateway] = []

    def start() -> Gateway:
        started.append(Gateway(tmp_path))
        return started[-1]

    try:
        gateway = start()
        sub = Client(gateway.ports["mqtt"], SUB, clean_start=True)
        sub.send(Subscribe(1, (("pktid/#", SubscriptionOptions(1)),)))
        assert isinstance(sub.next(), SubAck)
        publisher = Client(gateway.ports["mqtt"], "pktid-pub", clean_start=True)
        for n in range(1, COUNT + 1):
            publisher.send(Publish(f"pktid/{n}", b"m%d" % n, qos=1, packet_id=n))
            assert isinstance(publisher.next(), PubAck)
        first = [sub.next() for _ in range(COUNT)]
        assert all(isinstance(p, Publish) for p in first)
        sent = [(p.topic, p.payload, p.packet_id) for p in first if isinstance(p, Publish)]
        assert [payload for _, payload, _ in sent] == [b"m%d" % n for n in range(1, COUNT + 1)]
        assert not any(p.dup for p in first if isinstance(p, Publish))
        committed(sub, 2)  # none PUBACK'd: every id is on disk
        gateway.kill()
        sub.close()
        publisher.close()

        gateway = start()
        sub = Client(gateway.ports["mqtt"], SUB, clean_start=False)
        assert sub.connack.session_present
        again = [sub.next() for _ in range(COUNT)]
        assert all(isinstance(p, Publish) for p in again)
        resent = [(p.topic, p.payload, p.packet_id) for p in again if isinstance(p, Publish)]
        assert resent == sent
        assert all(p.dup and p.qos == 1 for p in again if isinstance(p, Publish))
        for _, _, packet_id in resent[:3]:
            assert packet_id is not None
            sub.send(PubAck(packet_id))
        committed(sub, 3)
        gateway.kill()
        sub.close()

        # The three PUBACK'd are gone; the two others come again under the same ids.
        gateway = start()
        sub = Client(gateway.ports["mqtt"], SUB, clean_start=False)
        assert sub.connack.session_present
        left = [sub.next() for _ in range(2)]
        assert [(p.topic, p.payload, p.packet_id, p.dup) for p in left
                if isinstance(p, Publish)] == [(*item, True) for item in sent[3:]]  # fmt: skip
        nothing_more(sub)
        for _, _, packet_id in sent[3:]:
            assert packet_id is not None
            sub.send(PubAck(packet_id))
        # A new message after the resends is a first delivery.
        publisher = Client(gateway.ports["mqtt"], "pktid-pub", clean_start=True)
        publisher.send(Publish("pktid/new", b"new", qos=1, packet_id=1))
        assert isinstance(publisher.next(), PubAck)
        new = sub.next()
        assert isinstance(new, Publish)
        assert (new.payload, new.dup) == (b"new", False)
        assert new.packet_id is not None
        sub.send(PubAck(new.packet_id))
        publisher.close()
        sub.close()
        assert gateway.terminate() == 0
    finally:
        for running in started:
            if running.proc.poll() is None:
                running.kill()
