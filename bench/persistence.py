"""Persistent throughput and recovery time: the gateway beside RabbitMQ.

    .venv/bin/python bench/persistence.py                       # both scenarios, 3 runs each
    .venv/bin/python bench/persistence.py --count 50000 --runs 5 --recovery 1000000
    .venv/bin/python bench/persistence.py --brokers gateway --recovery 0
    .venv/bin/python bench/persistence.py --brokers gateway --scenarios "" --recovery 0 \
        --backlog 1000000                                       # the backlog run alone

Scenarios (each broker started by bench/brokers.py in its own temporary directory):

- amqp_confirm_durable: one AMQP publisher in confirm mode, persistent messages
  (delivery_mode 2) to a durable queue through the default exchange, at most `--window`
  unconfirmed; msgs/s counts confirms.
- mqtt_qos1_durable: one MQTT 3.1.1 publisher, QoS 1 to `persist/data`, a durable queue bound
  to amq.topic with `persist.data`; at most `--window` awaiting PUBACK; msgs/s counts PUBACKs.
- backlog (`--backlog N`, before the scenarios): N persistent messages of `--backlog-payload`
  bytes (1 KiB) published with confirms to a durable queue nobody consumes; the broker's RSS
  (now and peak) is taken, then one consumer (prefetch 2000, multiple acks) drains the queue.
  With paging the gateway's RSS stays near its per-message index, far below the bodies.

In the two scenarios nobody consumes: every message stays on disk, as a backlog would.
Recovery: `--recovery N` messages are written into a fresh data directory with the store's
own writer, then the time of `Store.open` + `recover` (in this process) and of a real
`gateway run` until `gateway.ready` are measured. The load generator is a blocking socket in
this process with pre-encoded frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # `python bench/persistence.py` puts bench/ on sys.path, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pamqp import commands, frame, header

from bench.brokers import Broker, BrokerError, GatewayBroker, RabbitBroker
from bench.streams import AmqpDeliveryCounter
from bench.wire import AmqpConnection, mqtt_connect, mqtt_disconnect, mqtt_publish
from gateway.core.message import Properties

QUEUE = "bench-durable"
TOPIC = "persist/data"
_HEAD = struct.Struct(">BHI")
_ACK = (60, 80)
_NACK = (60, 120)


def _persistent_publish(routing_key: str, payload: bytes) -> bytes:
    properties = commands.Basic.Properties(delivery_mode=2)
    return b"".join(
        (
            frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), 1),
            frame.marshal(header.ContentHeader(0, len(payload), properties), 1),
            _HEAD.pack(3, 1, len(payload)) + payload + b"\xce",
        )
    )


def _declare_durable(port: int) -> None:
    conn = AmqpConnection(port, 10)
    try:
        # A fresh queue per run: deleting is one range delete, a purge one delete per message.
        conn.rpc(commands.Queue.Delete(queue=QUEUE), commands.Queue.DeleteOk)
        conn.rpc(commands.Queue.Declare(queue=QUEUE, durable=True), commands.Queue.DeclareOk)
        conn.bind(QUEUE, "amq.topic", TOPIC.replace("/", "."))
    finally:
        conn.close()


class _ConfirmCounter:
    """basic.ack / basic.nack frames, `multiple` honoured; counts distinct confirmed tags."""

    def __init__(self) -> None:
        self.buf = b""
        self.upto = 0
        self.singles: set[int] = set()
        self.nacked = 0

    @property
    def confirmed(self) -> int:
        return self.upto + len(self.singles)

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 7:
            kind, _channel, size = _HEAD.unpack_from(buf, pos)
            end = pos + 8 + size
            if end > len(buf):
                break
            if kind == 1:
                class_id, method_id = struct.unpack_from(">HH", buf, pos + 7)
                if (class_id, method_id) in (_ACK, _NACK):
                    tag, bits = struct.unpack_from(">QB", buf, pos + 11)
                    if (class_id, method_id) == _NACK:
                        self.nacked += 1
                    self._settle(tag, bool(bits & 1))
                else:
                    raise ConnectionError(f"unexpected method {class_id}.{method_id}")
            pos = end
        self.buf = buf[pos:]

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.singles = {t for t in self.singles if t > tag}
            self.upto = max(self.upto, tag)
        elif tag > self.upto:
            self.singles.add(tag)


class _PubackCounter:
    def __init__(self) -> None:
        self.buf = b""
        self.count = 0

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 2:
            size = buf[pos + 1]  # PUBACK and friends: remaining length < 128
            if len(buf) - pos < 2 + size:
                break
            if buf[pos] >> 4 == 4:
                self.count += 1
            pos += 2 + size
        self.buf = buf[pos:]


def _windowed(
    sock: socket.socket, records: Callable[[int, int], bytes], count: int, window: int,
    settled: Callable[[], int], feed: Callable[[bytes], None],
) -> float:  # fmt: skip
    """Send `count` messages keeping at most `window` unsettled; returns msgs/s."""
    sock.settimeout(30)
    sent = 0
    refill = max(1, window // 4)
    started = time.perf_counter()
    while settled() < count:
        credit = min(window - (sent - settled()), count - sent)
        if credit >= refill or (credit > 0 and sent + credit == count):
            sock.sendall(records(sent, credit))
            sent += credit
            continue
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("closed by the broker")
        feed(data)
    return count / (time.perf_counter() - started)


def amqp_confirm_durable(broker: Broker, count: int, payload: int, window: int) -> float:
    assert broker.amqp_port is not None
    _declare_durable(broker.amqp_port)
    conn = AmqpConnection(broker.amqp_port, 10)
    try:
        conn.confirm_select()
        one = _persistent_publish(QUEUE, b"p" * payload)
        counter = _ConfirmCounter()
        counter.feed(conn.pending())
        return _windowed(conn.sock, lambda _start, n: one * n, count, window,
                         lambda: counter.confirmed, counter.feed)  # fmt: skip
    finally:
        conn.close()


def mqtt_qos1_durable(broker: Broker, count: int, payload: int, window: int) -> float:
    assert broker.amqp_port is not None
    assert broker.mqtt_port is not None
    _declare_durable(broker.amqp_port)
    sock = mqtt_connect(broker.mqtt_port, "bench-persist", 10)
    body = b"q" * payload
    encoded = [mqtt_publish(TOPIC, body, qos=1, packet_id=pid) for pid in range(1, 0x10000)]

    def records(start: int, n: int) -> bytes:
        return b"".join(encoded[(start + i) % 0xFFFF] for i in range(n))

    counter = _PubackCounter()
    try:
        return _windowed(sock, records, count, min(window, 0xFFFF),
                         lambda: counter.count, counter.feed)  # fmt: skip
    finally:
        mqtt_disconnect(sock)


SCENARIOS = {"amqp_confirm_durable": amqp_confirm_durable, "mqtt_qos1_durable": mqtt_qos1_durable}


# -- backlog -----------------------------------------------------------------------------------


def _rss(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _drain_rate(port: int, count: int, prefetch: int = 2000) -> float:
    """Consume `count` messages from QUEUE with manual acks (one multiple-ack per quarter
    prefetch); returns msgs/s."""
    conn = AmqpConnection(port, 30)
    try:
        counter = AmqpDeliveryCounter()
        started = time.perf_counter()
        conn.consume(QUEUE, prefetch, manual_ack=True)
        counter.feed(conn.pending())
        acked = 0
        step = max(1, prefetch // 4)
        while acked < count:
            if counter.count - acked >= step or counter.count == count:
                acked = counter.count
                conn.send(commands.Basic.Ack(delivery_tag=acked, multiple=True))
                continue
            data = conn.sock.recv(1 << 18)
            if not data:
                raise ConnectionError("closed by the broker")
            counter.feed(data)
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


def backlog(broker: Broker, count: int, payload: int, window: int) -> dict[str, float]:
    """Publish `count` persistent messages (confirmed) to a durable queue nobody consumes,
    take the broker's RSS, then drain the queue with one consumer."""
    assert broker.amqp_port is not None
    _declare_durable(broker.amqp_port)
    rss_before, start_peak = _rss(broker.main_pid)
    conn = AmqpConnection(broker.amqp_port, 30)
    try:
        conn.confirm_select()
        one = _persistent_publish(QUEUE, b"b" * payload)
        counter = _ConfirmCounter()
        counter.feed(conn.pending())
        publish = _windowed(conn.sock, lambda _start, n: one * n, count, window,
                            lambda: counter.confirmed, counter.feed)  # fmt: skip
    finally:
        conn.close()
    rss, peak = _rss(broker.main_pid)
    drain = _drain_rate(broker.amqp_port, count)
    return {
        "publish": publish,
        "drain": drain,
        "rss_before": rss_before,
        "rss": rss,
        "peak": max(peak, start_peak),
        "rss_drained": _rss(broker.main_pid)[0],
    }


# -- recovery ---------------------------------------------------------------------------------


def write_backlog(data_dir: Path, count: int, payload: int) -> float:
    """`count` persistent messages in one durable queue, written by the store's own writer."""
    from gateway.core.broker import Broker as CoreBroker
    from gateway.core.message import Message
    from gateway.store import Store

    loop = asyncio.new_event_loop()
    started = time.perf_counter()
    try:
        store = Store.open(data_dir)
        broker = CoreBroker(time.monotonic)
        store.attach(broker, loop)
        vhost = broker.vhost("/")
        vhost.declare_queue(QUEUE, durable=True)
        raw = b"\x10\x00\x02"  # delivery_mode 2 only
        body = b"r" * payload
        for i in range(count):
            vhost.publish("", Message("", QUEUE, body, raw_properties=raw,
                                      decode_properties=_no_decode, persistent=True))  # fmt: skip
            if i % 100_000 == 99_999:
                _wait_drained(store)  # let the writer keep up: bounded records in flight
        store.close()
    finally:
        loop.close()
    return time.perf_counter() - started


def _no_decode(_raw: bytes) -> Properties:
    raise AssertionError("not decoded while writing the backlog")


def _wait_drained(store: object) -> None:
    log = store.log  # type: ignore[attr-defined]
    while log.records:
        time.sleep(0.01)


def measure_recovery(data_dir: Path) -> tuple[float, int]:
    from gateway.core.broker import Broker as CoreBroker
    from gateway.store import Store

    started = time.perf_counter()
    store = Store.open(data_dir)
    counts = store.recover(CoreBroker(time.monotonic))
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, counts.messages


def measure_gateway_start(data_dir: Path) -> tuple[float, int]:
    """`gateway run` on the data dir until gateway.ready: (seconds, messages recovered)."""
    argv = [sys.executable, "-m", "gateway", "run", "--bind", "127.0.0.1", "--mqtt-port", "0",
            "--amqp-port", "0", "--ws-port", "-1", "--http-port", "-1", "--log-format", "json",
            "--data-dir", str(data_dir)]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    recovered = -1
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            event = json.loads(line)
            if event.get("event") == "store.recovered":
                recovered = int(event["messages"])
            if event.get("event") == "gateway.ready":
                return time.perf_counter() - started, recovered
        raise BrokerError("gateway exited before gateway.ready")
    finally:
        proc.terminate()
        proc.wait(120)
        if proc.stderr is not None:
            proc.stderr.close()


# -- main -------------------------------------------------------------------------------------


def _start(name: str, workdir: Path) -> Broker:
    cls = GatewayBroker if name == "gateway" else RabbitBroker
    broker = cls(name=name, workdir=workdir)
    broker.start(120)
    return broker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="gateway,rabbitmq")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--payload", type=int, default=100)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--recovery", type=int, default=1_000_000, help="0 skips it")
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="messages of the backlog run (e.g. 1000000; 0 skips it)",
    )
    parser.add_argument("--backlog-payload", type=int, default=1024)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-persist-") as tmp:
        for name in args.brokers.split(","):
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                broker = _start(name, workdir)
            except BrokerError as exc:
                print(f"{name}: skipped: {exc}", file=sys.stderr)
                continue
            try:
                if args.backlog:
                    got = backlog(broker, args.backlog, args.backlog_payload, args.window)
                    mb = 1024 * 1024
                    print(f"backlog {args.backlog:,} x {args.backlog_payload} B  {name:9} "
                          f"publish {got['publish']:,.0f} msg/s, RSS {got['rss_before'] / mb:,.0f}"
                          f" -> {got['rss'] / mb:,.0f} MiB (peak {got['peak'] / mb:,.0f} MiB, "
                          f"bodies {args.backlog * args.backlog_payload / mb:,.0f} MiB), "
                          f"drain {got['drain']:,.0f} msg/s, RSS after drain "
                          f"{got['rss_drained'] / mb:,.0f} MiB", flush=True)  # fmt: skip
                for scenario in filter(None, args.scenarios.split(",")):
                    run = SCENARIOS[scenario]
                    run(broker, min(args.count, 5000), args.payload, args.window)  # warm-up
                    rates = [run(broker, args.count, args.payload, args.window)
                             for _ in range(args.runs)]  # fmt: skip
                    results.setdefault(scenario, {})[name] = rates
                    runs = ", ".join(f"{r:,.0f}" for r in rates)
                    median = statistics.median(rates)
                    print(f"{scenario:24} {name:9} {median:>10,.0f} msg/s (runs: {runs})",
                          flush=True)  # fmt: skip
            finally:
                broker.stop()
        print()
        for scenario, by_broker in results.items():
            if "gateway" in by_broker and "rabbitmq" in by_broker:
                ratio = statistics.median(by_broker["gateway"]) / statistics.median(
                    by_broker["rabbitmq"]
                )
                print(f"{scenario:24} gateway/rabbitmq = {ratio:.2f}")
        if args.recovery:
            data_dir = Path(tmp) / "recovery"
            wrote = write_backlog(data_dir, args.recovery, args.payload)
            size = (data_dir / "gateway.db").stat().st_size
            in_process, messages = measure_recovery(data_dir)
            start, recovered = measure_gateway_start(data_dir)
            print(f"\nrecovery of {messages:,} stored messages ({args.payload} B bodies, "
                  f"file {size / 1e6:,.0f} MB, written in {wrote:.1f} s):")  # fmt: skip
            print(f"  Store.open + recover in process: {in_process:.2f} s")
            print(f"  gateway run until gateway.ready: {start:.2f} s ({recovered:,} recovered)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
