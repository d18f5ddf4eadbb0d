"""Shared test doubles for the core: a fake clock, a recording consumer, message builders."""

from __future__ import annotations

from gateway.core.broker import Broker
from gateway.core.consumers import Delivery
from gateway.core.message import Message, Properties
from gateway.core.vhost import VirtualHost


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingConsumer:
    """Keeps every delivery; ``accepting`` plays the socket's back-pressure."""

    def __init__(self, *, accepting: bool = True) -> None:
        self.accepting = accepting
        self.deliveries: list[Delivery] = []
        self.cancelled = 0

    def can_accept(self) -> bool:
        return self.accepting

    def deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    def cancelled_by_server(self) -> None:
        self.cancelled += 1

    @property
    def bodies(self) -> list[bytes]:
        return [d.message.body for d in self.deliveries]

    def take(self) -> list[Delivery]:
        taken, self.deliveries = self.deliveries, []
        return taken


def make_broker(now: float = 1000.0) -> tuple[Broker, VirtualHost, FakeClock]:
    clock = FakeClock(now)
    broker = Broker(clock, wall_clock=lambda: 1_700_000_000.0)
    return broker, broker.vhost("/"), clock


def msg(
    body: bytes | str = b"x",
    routing_key: str = "",
    *,
    exchange: str = "",
    headers: dict[str, object] | None = None,
    expiration: str | None = None,
    persistent: bool = False,
) -> Message:
    data = body.encode() if isinstance(body, str) else body
    props = Properties(
        headers=headers,
        expiration=expiration,
        delivery_mode=2 if persistent else None,
    )
    return Message(exchange, routing_key, data, properties=props)


def publish(
    vhost: VirtualHost,
    exchange: str,
    routing_key: str,
    body: bytes | str = b"x",
    *,
    headers: dict[str, object] | None = None,
    expiration: str | None = None,
) -> list[str]:
    """Publish and return the names of the queues that took it."""
    message = msg(body, routing_key, exchange=exchange, headers=headers, expiration=expiration)
    return [q.name for q in vhost.publish(exchange, message).queues]
