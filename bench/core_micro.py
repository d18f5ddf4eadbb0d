"""In-process micro-benchmark of the routing core's per-message path (no sockets, no codecs).

Cases (amq.topic, queues bound with the trie pattern "sensors.#", one consumer per queue):
  mqtt_ack  one queue; the consumer acks each delivery as soon as it gets it, no prefetch and
            no credit group (the MQTT session's shape: it acks QoS 0 deliveries at once)
  amqp_ack  one queue; prefetch 100 inside a channel-wide credit group (limit 0), messages
            built from raw properties, acked at once (the AMQP channel's shape)
  noack     one queue, a no-ack consumer
  fanout50  50 queues, a no-ack consumer on each (ns per published message, 50 deliveries)

Reports ns per published message, the best of several repeats.

    .venv/bin/python bench/core_micro.py [--count N] [--repeats R] [--case NAME ...]
    .venv/bin/python bench/core_micro.py --profile ack      # cProfile of one case
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections.abc import Callable

from gateway.core.broker import Broker
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.message import Message, Properties
from gateway.core.vhost import VirtualHost

_PROPS = Properties(delivery_mode=1)


def _decode(raw: bytes) -> Properties:
    return _PROPS


class AckingConsumer:
    """Acks each delivery at once, as a client with a fast round trip would."""

    def __init__(self) -> None:
        self.count = 0

    def can_accept(self) -> bool:
        return True

    def deliver(self, delivery: Delivery) -> None:
        self.count += 1
        delivery.queue.ack(delivery)

    def cancelled_by_server(self) -> None:
        pass


class CountingConsumer:
    """A no-ack consumer that only counts."""

    def __init__(self) -> None:
        self.count = 0

    def can_accept(self) -> bool:
        return True

    def deliver(self, delivery: Delivery) -> None:
        self.count += 1

    def cancelled_by_server(self) -> None:
        pass


def _setup(
    queues: int, *, no_ack: bool, prefetch: int = 0, group: CreditGroup | None = None
) -> tuple[VirtualHost, list[AckingConsumer | CountingConsumer]]:
    broker = Broker(time.monotonic)
    vhost = broker.vhost("/")
    consumers: list[AckingConsumer | CountingConsumer] = []
    for i in range(queues):
        name = f"q{i}"
        vhost.declare_queue(name)
        vhost.bind_queue(name, "amq.topic", "sensors.#")
        consumer = CountingConsumer() if no_ack else AckingConsumer()
        vhost.consume(
            name, consumer, tag=f"c{i}", no_ack=no_ack, prefetch=prefetch, credit_group=group
        )
        consumers.append(consumer)
    return vhost, consumers


def _run_plain(count: int, queues: int, no_ack: bool) -> float:
    vhost, consumers = _setup(queues, no_ack=no_ack)
    publish = vhost.publish
    body = b"x" * 16
    props = _PROPS
    gc.disable()
    start = time.perf_counter_ns()
    for _ in range(count):
        publish(
            "amq.topic",
            Message("amq.topic", "sensors.7.temp", body, properties=props, persistent=False),
        )
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    assert all(c.count == count for c in consumers), "every consumer got every message"
    return elapsed / count


def _run_raw(count: int) -> float:
    vhost, consumers = _setup(1, no_ack=False, prefetch=100, group=CreditGroup())
    publish = vhost.publish
    body = b"x" * 16
    raw = b"\x10\x00\x01"
    gc.disable()
    start = time.perf_counter_ns()
    for _ in range(count):
        publish(
            "amq.topic",
            Message(
                "amq.topic",
                "sensors.7.temp",
                body,
                raw_properties=raw,
                decode_properties=_decode,
                persistent=False,
                expiration_ms=None,
            ),
        )
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    assert consumers[0].count == count
    return elapsed / count


CASES: dict[str, Callable[[int], float]] = {
    "mqtt_ack": lambda n: _run_plain(n, 1, False),
    "amqp_ack": _run_raw,
    "noack": lambda n: _run_plain(n, 1, True),
    "fanout50": lambda n: _run_plain(n // 20, 50, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    parser.add_argument("--profile", choices=sorted(CASES))
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(CASES[args.profile], args.count)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    for name in args.case or list(CASES):
        best = min(CASES[name](args.count) for _ in range(args.repeats))
        print(f"{name:10s} {best:8.0f} ns/message")


if __name__ == "__main__":
    main()
