"""CONNACK, SUBACK and UNSUBACK of a persistent MQTT session are sent after the commit that
records the change: `gateway run` is SIGKILLed the moment each arrives, and after the restart
the session, its subscriptions and its unsubscriptions are all there."""

from __future__ import annotations

import socket
from pathlib import Path

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import (
    MQTT_5,
    ConnAck,
    Connect,
    Packet,
    Properties,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
)
from tests.integration.test_store_crash import Gateway

CLIENT = "crash-session"


class Client:
    def __init__(self, port: int, client_id: str, *, clean_start: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = PacketDecoder(protocol_level=MQTT_5)
        self.pending: list[Packet] = []
        connect = Connect(client_id, MQTT_5, clean_start=clean_start,
                          properties=Properties(session_expiry_interval=3600))  # fmt: skip
        self.sock.sendall(encode(connect, MQTT_5))
        connack = self.next()
        assert isinstance(connack, ConnAck)
        self.connack = connack

    def next(self) -> Packet:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "closed by the gateway"
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode(packet, MQTT_5))

    def close(self) -> None:
        self.sock.close()


def test_sigkill_right_after_connack_suback_and_unsuback_keeps_each_change(
    tmp_path: Path,
) -> None:
    started: list[Gateway] = []

    def start() -> Gateway:
        started.append(Gateway(tmp_path))
        return started[-1]

    try:
        # CONNACK of a new persistent session, then the kill.
        gateway = start()
        client = Client(gateway.ports["mqtt"], CLIENT, clean_start=True)
        gateway.kill()
        client.close()
        assert not client.connack.session_present

        # The session is there; SUBACK, then the kill.
        gateway = start()
        client = Client(gateway.ports["mqtt"], CLIENT, clean_start=False)
        assert client.connack.session_present
        client.send(Subscribe(1, (("crash/a", SubscriptionOptions(1)),
                                  ("crash/b", SubscriptionOptions(1)))))  # fmt: skip
        assert client.next() == SubAck(1, (1, 1))  # type: ignore[arg-type]
        gateway.kill()
        client.close()

        # The subscriptions are there; UNSUBACK, then the kill.
        gateway = start()
        client = Client(gateway.ports["mqtt"], CLIENT, clean_start=False)
        assert client.connack.session_present
        client.send(Unsubscribe(2, ("crash/a",)))
        unsuback = client.next()
        assert isinstance(unsuback, UnsubAck)
        assert unsuback.packet_id == 2
        gateway.kill()
        client.close()

        # Only crash/b is still subscribed: a message to crash/a and one to crash/b give one.
        gateway = start()
        client = Client(gateway.ports["mqtt"], CLIENT, clean_start=False)
        assert client.connack.session_present
        publisher = Client(gateway.ports["mqtt"], "crash-session-pub", clean_start=True)
        for packet_id, topic in ((1, "crash/a"), (2, "crash/b")):
            publisher.send(Publish(topic, topic.encode(), qos=1, packet_id=packet_id))
            assert isinstance(publisher.next(), PubAck)
        got = client.next()
        assert isinstance(got, Publish)
        assert (got.topic, got.payload) == ("crash/b", b"crash/b")
        assert got.packet_id is not None
        client.send(PubAck(got.packet_id))
        publisher.close()
        client.close()
        assert gateway.terminate() == 0
    finally:
        for running in started:
            if running.proc.poll() is None:
                running.kill()
