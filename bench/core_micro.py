"""In-process micro-benchmark of the routing core's per-message path (no sockets).

Core cases (no codecs; amq.topic, queues bound with the trie pattern "sensors.#", one consumer
per queue):
  mqtt_ack  one queue; the consumer acks each delivery as soon as it gets it, no prefetch and
            no credit group (the MQTT session's shape: it acks QoS 0 deliveries at once)
  amqp_ack  one queue; prefetch 100 inside a channel-wide credit group (limit 0), messages
            built from raw properties, acked at once (the AMQP channel's shape)
  noack     one queue, a no-ack consumer
  fanout50  50 queues, a no-ack consumer on each (ns per published message, 50 deliveries)

Bench S3 in one process (AMQP connection handlers fed bytes, output drained and dropped;
codecs, channels, confirms and acks included, sockets and the event loop not):
  s3        2 publishers (500 publishes of 64 bytes per read each) -> default exchange -> one
            queue -> 1 consumer with prefetch 1000 acking everything it got with one
            basic.ack(multiple) per round; the queue starts 2000 messages behind, so the
            consumer sits at its limit and each ack refills it from the backlog (the profile
            of the real S3)
  s3c       s3 with publisher confirms
  s3direct  s3 without the head start: every message finds the queue empty and the consumer
            with credit (delivered as it is published)

MQTT cases (bench/mqtt_micro.py: S2, S1, S6 and S7 in one process): mqtt_s2, mqtt_s1, mqtt_s6,
mqtt_s7.

Reports ns per published message, the best of several repeats.

    .venv/bin/python bench/core_micro.py [--count N] [--repeats R] [--case NAME ...]
    .venv/bin/python bench/core_micro.py --profile ack      # cProfile of one case
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pamqp import commands, frame, header
from pamqp.base import Frame

from gateway.amqp.channel_connection import AmqpConnectionHandler
from gateway.amqp.channel_context import AmqpContext
from gateway.amqp.fastpath import encode_basic_ack
from gateway.core.broker import Broker
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.message import Message, Properties
from gateway.core.users import UserDatabase, hash_password
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


# -- bench S3 in one process ------------------------------------------------------------------

QUEUE = "bench-s3"
PREFETCH = 1000
BATCH = 500
PAYLOAD = b"x" * 64


def _frame(channel: int, method: Frame) -> bytes:
    return bytes(frame.marshal(method, channel))


def _client(context: AmqpContext) -> AmqpConnectionHandler:
    """A connection through the handshake with channel 1 open."""
    handler = AmqpConnectionHandler(context, "127.0.0.1", output_ready=lambda: None)
    start_ok = commands.Connection.StartOk(
        client_properties={"capabilities": {}}, mechanism="PLAIN", response="\0guest\0guest"
    )
    for data in (
        b"AMQP\x00\x00\x09\x01",
        _frame(0, start_ok),
        _frame(0, commands.Connection.TuneOk(2047, 131072, 0)),
        _frame(0, commands.Connection.Open(virtual_host="/")),
        _frame(1, commands.Channel.Open()),
    ):
        handler.receive(data)
    handler.conn.data_to_send()
    return handler


def _publishes(count: int) -> bytes:
    """What the bench's AMQP publisher writes: transient 64-byte publishes to the queue."""
    properties = commands.Basic.Properties(delivery_mode=1)
    one = b"".join(
        (
            _frame(1, commands.Basic.Publish(exchange="", routing_key=QUEUE)),
            bytes(frame.marshal(header.ContentHeader(0, len(PAYLOAD), properties), 1)),
            b"\x03\x00\x01" + len(PAYLOAD).to_bytes(4, "big") + PAYLOAD + b"\xce",
        )
    )
    return one * count


def run_s3(count: int, *, confirms: bool, backlog: int) -> float:
    """ns per message for ``count`` messages (rounded up to whole rounds) after ``backlog``
    messages published before the consumer's first ack."""
    broker = Broker(time.monotonic)
    users = UserDatabase([], guest_password_hash=hash_password("guest", n=2, r=1, p=1))
    context = AmqpContext(broker, users)
    consumer = _client(context)
    for method in (
        commands.Queue.Declare(queue=QUEUE, exclusive=True, auto_delete=True),
        commands.Basic.Qos(prefetch_count=PREFETCH),
        commands.Basic.Consume(queue=QUEUE, consumer_tag="bench"),
    ):
        consumer.receive(_frame(1, method))
    publishers = [_client(context), _client(context)]
    if confirms:
        for publisher in publishers:
            publisher.receive(_frame(1, commands.Confirm.Select()))
    chunk = _publishes(BATCH)
    channel = consumer.channels[1]
    sent = 0
    for _ in range(backlog // BATCH):
        publishers[0].receive(chunk)
        sent += BATCH
    for handler in (consumer, *publishers):
        handler.conn.data_to_send_chunks()
    gc.disable()
    start = time.perf_counter_ns()
    measured = 0
    while measured < count:
        for publisher in publishers:
            publisher.receive(chunk)
            publisher.conn.data_to_send_chunks()
        measured += 2 * BATCH
        delivered = channel.next_tag - 1
        if delivered:
            consumer.receive(encode_basic_ack(1, delivered, True))
        consumer.conn.data_to_send_chunks()
    # Steady state: each round published and delivered about as many as it published.
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    while channel.next_tag - 1 < sent + measured:
        consumer.receive(encode_basic_ack(1, channel.next_tag - 1, True))
        consumer.conn.data_to_send_chunks()
    assert channel.next_tag - 1 == sent + measured, "every message was delivered"
    return elapsed / measured


def _mqtt_case(name: str) -> Callable[[int], float]:
    """A case of bench/mqtt_micro.py (the MQTT adapter's paths), imported when run."""

    def run(count: int) -> float:
        # `python bench/core_micro.py` puts bench/ on sys.path, not the repository root.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench import mqtt_micro

        result: float = getattr(mqtt_micro, f"run_{name}")(count)
        return result

    return run


CASES: dict[str, Callable[[int], float]] = {
    "mqtt_ack": lambda n: _run_plain(n, 1, False),
    "amqp_ack": _run_raw,
    "noack": lambda n: _run_plain(n, 1, True),
    "fanout50": lambda n: _run_plain(n // 20, 50, True),
    "s3": lambda n: run_s3(n, confirms=False, backlog=2000),
    "s3c": lambda n: run_s3(n, confirms=True, backlog=2000),
    "s3direct": lambda n: run_s3(n, confirms=False, backlog=0),
    "mqtt_s2": _mqtt_case("s2"),
    "mqtt_s1": _mqtt_case("s1"),
    "mqtt_s6": _mqtt_case("s6"),
    "mqtt_s7": _mqtt_case("s7"),
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
