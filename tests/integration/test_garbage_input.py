"""Bad input never takes the process down: random and mutated bytes on every listener close at
most the offending connection, raise no internal error, and leave the gateway serving."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
import structlog
import structlog.testing

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import MQTT_5, ConnAck, Connect, Publish, Subscribe, SubscriptionOptions
from tests.gateway_runner import RunningGateway, running_gateway

SEED = 20261127
VALID_MQTT = b"".join(
    [
        encode(Connect("fuzz", protocol_level=MQTT_5), MQTT_5),
        encode(Subscribe(1, (("a/+", SubscriptionOptions(1)),)), MQTT_5),
        encode(Publish("a/b", b"payload", 1, packet_id=2), MQTT_5),
    ]
)
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
AMQP_FRAME = b"\x01\x00\x00\x00\x00\x00\x04ABCD\xce"


def mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        position = rng.randrange(len(raw))
        if choice < 0.5:
            raw[position] = rng.randrange(256)
        elif choice < 0.75:
            del raw[position]
        else:
            raw.insert(position, rng.randrange(256))
    return bytes(raw)


def blast(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the gateway may reset a connection it refused: that is the point


def mqtt_still_works(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(Connect("after-fuzz", protocol_level=MQTT_5), MQTT_5))
        packets = PacketDecoder(protocol_level=MQTT_5).feed(sock.recv(1024))
        assert isinstance(packets[0], ConnAck)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[RunningGateway]:
    with running_gateway() as running:
        yield running


def test_garbage_on_every_listener(fuzzed: RunningGateway) -> None:
    rng = random.Random(SEED)
    with structlog.testing.capture_logs() as logs:
        for _ in range(150):
            blast(fuzzed.mqtt_port, mutate(rng, VALID_MQTT))
            blast(fuzzed.mqtt_port, bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
            blast(fuzzed.amqp_port, AMQP_HEADER + bytes(rng.randrange(256) for _ in range(64)))
            blast(fuzzed.amqp_port, mutate(rng, AMQP_HEADER + AMQP_FRAME))
    # Refused with a log line per connection, and never through an unexpected exception.
    assert [e for e in logs if e["event"].endswith("internal_error")] == []
    assert any(e["event"] == "mqtt.protocol_violation" for e in logs)
    assert any(e["event"] == "amqp.protocol_error" for e in logs)
    mqtt_still_works(fuzzed.mqtt_port)
    assert fuzzed.call(lambda: fuzzed.gateway.mqtt.connections) == 0
    assert fuzzed.call(lambda: fuzzed.gateway.amqp.connections) == 0
