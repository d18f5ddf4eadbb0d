"""The scenarios of issue 7 (S1..S7) plus the bounded-memory checks, as role line-ups.

Each scenario builds its roles (bench/roles.py, one process each), runs them with
bench/procs.py and turns their reports into a RunResult. `--count` is the number of messages one
run moves end to end; publishers split it between them.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import roles
from bench.procs import CONNECTED, DELIVERED, Outcome, Role, Shared, run_roles
from bench.procstat import cpu_seconds, status_kib, wait_idle
from bench.report import RunResult
from bench.scrape import gateway_metrics


@dataclass(frozen=True)
class Params:
    count: int = 200_000
    payload: int = 64
    batch: int = 500  # messages per socket write
    window: int = 50_000  # QoS 0 / no-confirm messages ahead of delivery, over all publishers
    in_flight: int = 100  # QoS 1 PUBLISHes awaiting PUBACK, per publisher
    confirm_window: int = 1000  # unconfirmed AMQP publishes, per publisher
    prefetch: int = 1000
    publishers: int = 2
    latency_rate: float = 2000.0
    latency_count: int = 20_000
    idle_connections: int = 5000
    connectors: int = 4  # generator processes opening the idle connections
    connect_concurrency: int = 16  # handshakes in progress per connector (64 in all: below
    # the usual listen backlog of 100, past which SYNs are dropped and retried after 1 s)
    bounded_seconds: float = 20.0
    slow_rate: float = 20_000.0  # the bounded check's consumer reads at most this many msgs/s
    run_timeout: float = 60.0
    idle_timeout: float = 5.0
    setup_timeout: float = 30.0


@dataclass(frozen=True)
class Target:
    mqtt_port: int | None
    amqp_port: int | None
    pid: int  # the broker process whose CPU and memory are measured
    http_port: int | None = None  # the gateway's metrics endpoint


RunFn = Callable[[Target, Params, str], RunResult]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str  # what is measured, for --list and the table
    needs: frozenset[str]
    run: RunFn
    only: frozenset[str] = field(default_factory=frozenset)  # brokers it runs on; empty: all
    unit: str = "msg/s"


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _execute(
    target: Target,
    params: Params,
    line_up: list[Role],
    tick: Callable[[Shared], bool] | None = None,
    run_timeout: float | None = None,
) -> tuple[Outcome, float | None]:
    wait_idle(target.pid)
    before = cpu_seconds(target.pid)
    dropped: list[int] = []

    def count_drops() -> None:
        # The gateway's queue counters, read while the run's queues still exist: messages a
        # full queue dropped (x-overflow drop-head) instead of throttling the publishers.
        metrics = gateway_metrics(target.http_port, timeout=2.0)
        if metrics:
            dropped.append(int(sum(v for k, v in metrics.items() if "dropped_total" in k)))

    outcome = run_roles(
        line_up,
        setup_timeout=params.setup_timeout,
        run_timeout=run_timeout or params.run_timeout,
        tick=tick,
        before_stop=count_drops if target.http_port else None,
    )
    after = cpu_seconds(target.pid)
    used = None if before is None or after is None else after - before
    if dropped:
        outcome.dropped = dropped[0]
    return outcome, used


def _result(
    outcome: Outcome,
    broker_cpu_s: float | None,
    settled: int,
    expected: int,
    end_ns: int,
    delivered: int | None = None,
) -> RunResult:
    elapsed = max(0, end_ns - outcome.go_ns) / 1e9 if outcome.go_ns else 0.0
    cpus = {name: float(r.get("cpu_s", 0.0)) for name, r in outcome.results.items()}
    return RunResult(
        value=settled / elapsed if elapsed else 0.0,
        settled=settled,
        expected=expected,
        delivered=settled if delivered is None else delivered,
        elapsed_s=round(elapsed, 4),
        broker_cpu_s=None if broker_cpu_s is None else round(broker_cpu_s, 3),
        complete=outcome.error is None and settled >= expected,
        error=outcome.error,
        generator_cpu_pct=(
            {n: round(100 * c / elapsed, 1) for n, c in cpus.items()} if elapsed else {}
        ),
        extra={} if outcome.dropped is None else {"dropped": outcome.dropped},
    )


def _mqtt_pubs(
    target: Target, params: Params, tag: str, qos: int, decisive: bool = True
) -> list[Role]:
    assert target.mqtt_port is not None
    out = []
    for i, n in enumerate(_split(params.count, params.publishers)):
        kwargs = {
            "port": target.mqtt_port,
            "client_id": f"{tag}p{i}",
            "topic": f"bench/{i}",
            "count": n,
            "payload": params.payload,
            "idle_timeout": params.idle_timeout,
        }
        if qos:
            out.append(
                Role(
                    f"pub{i}",
                    roles.mqtt_pub_qos1,
                    kwargs | {"in_flight": params.in_flight},
                    decisive,
                )
            )
        else:
            kwargs |= {
                "batch": params.batch,
                "window": params.window,
                "publishers": params.publishers,
            }
            out.append(Role(f"pub{i}", roles.mqtt_pub_qos0, kwargs, decisive))
    return out


def _amqp_pubs(
    target: Target, params: Params, exchange: str, key: str, confirms: bool
) -> list[Role]:
    assert target.amqp_port is not None
    return [
        Role(
            f"pub{i}",
            roles.amqp_pub,
            {
                "port": target.amqp_port,
                "exchange": exchange,
                "routing_key": key.format(i=i),
                "count": n,
                "payload": params.payload,
                "batch": params.batch,
                "window": params.window,
                "publishers": params.publishers,
                "idle_timeout": params.idle_timeout,
                "confirm_window": params.confirm_window if confirms else 0,
            },
        )
        for i, n in enumerate(_split(params.count, params.publishers))
    ]


def _mqtt_sub(target: Target, params: Params, tag: str, qos: int, **extra: object) -> Role:
    assert target.mqtt_port is not None
    kwargs = {
        "port": target.mqtt_port,
        "client_id": f"{tag}s",
        "topic_filter": "bench/#",
        "qos": qos,
        "expected": params.count,
        "idle_timeout": params.idle_timeout,
    }
    return Role("sub", roles.mqtt_sub, kwargs | extra)


def _amqp_consumer(target: Target, params: Params, tag: str, bind: bool) -> Role:
    assert target.amqp_port is not None
    kwargs = {
        "port": target.amqp_port,
        "bind": ("amq.topic", "bench.#") if bind else None,
        "queue": f"bench-{tag}",
        "prefetch": params.prefetch,
        "expected": params.count,
        "idle_timeout": params.idle_timeout,
    }
    return Role("consumer", roles.amqp_consumer, kwargs)


def _delivered_run(target: Target, params: Params, line_up: list[Role], receiver: str) -> RunResult:
    outcome, cpu = _execute(target, params, line_up)
    got = outcome.results.get(receiver, {})
    delivered = int(got.get("delivered", 0))
    return _result(outcome, cpu, delivered, params.count, int(got.get("end_ns", 0)))


def s1(target: Target, params: Params, tag: str) -> RunResult:
    """MQTT QoS 0, 2 publishers -> 1 subscriber on bench/#: deliveries/s."""
    line_up = [_mqtt_sub(target, params, tag, 0), *_mqtt_pubs(target, params, tag, 0)]
    return _delivered_run(target, params, line_up, "sub")


def s2(target: Target, params: Params, tag: str) -> RunResult:
    """MQTT QoS 1, 2 publishers (100 in flight each) -> 1 QoS 1 subscriber: PUBACKs/s."""
    sub = _mqtt_sub(target, params, tag, 1)
    # PUBACKs are the figure; what reaches the subscriber is reported as delivered %.
    sub.decisive = False
    line_up = [sub, *_mqtt_pubs(target, params, tag, 1)]
    outcome, cpu = _execute(target, params, line_up)
    pubs = [r for name, r in outcome.results.items() if name.startswith("pub")]
    acked = sum(int(r.get("settled", 0)) for r in pubs)
    end = max((int(r.get("end_ns", 0)) for r in pubs), default=0)
    delivered = int(outcome.results.get("sub", {}).get("delivered", 0))
    return _result(outcome, cpu, acked, params.count, end, delivered)


def _s3(target: Target, params: Params, tag: str, confirms: bool) -> RunResult:
    line_up = [
        _amqp_consumer(target, params, tag, bind=False),
        *_amqp_pubs(target, params, "", f"bench-{tag}", confirms),
    ]
    return _delivered_run(target, params, line_up, "consumer")


def s3(target: Target, params: Params, tag: str) -> RunResult:
    """AMQP 2 publishers -> queue -> 1 consumer (prefetch 1000, acks): deliveries/s."""
    return _s3(target, params, tag, confirms=False)


def s3c(target: Target, params: Params, tag: str) -> RunResult:
    """S3 with publisher confirms (each publisher 1000 unconfirmed at most): deliveries/s."""
    return _s3(target, params, tag, confirms=True)


def _s4(target: Target, params: Params, tag: str, qos: int) -> RunResult:
    line_up = [
        _amqp_consumer(target, params, tag, bind=True),
        *_mqtt_pubs(target, params, tag, qos),
    ]
    return _delivered_run(target, params, line_up, "consumer")


def s4q0(target: Target, params: Params, tag: str) -> RunResult:
    """MQTT QoS 0 publishers -> amq.topic `bench.#` queue -> AMQP consumer: deliveries/s."""
    return _s4(target, params, tag, 0)


def s4q1(target: Target, params: Params, tag: str) -> RunResult:
    """As S4 with QoS 1 publishers (100 in flight each): deliveries/s."""
    return _s4(target, params, tag, 1)


def s5(target: Target, params: Params, tag: str) -> RunResult:
    """AMQP publishers to amq.topic -> MQTT QoS 0 subscriber on bench/#: deliveries/s."""
    line_up = [
        _mqtt_sub(target, params, tag, 0),
        *_amqp_pubs(target, params, "amq.topic", "bench.{i}", confirms=False),
    ]
    return _delivered_run(target, params, line_up, "sub")


def s6(target: Target, params: Params, tag: str) -> RunResult:
    """MQTT QoS 0 latency at a fixed 2,000 msg/s (one paced publisher): p50/p99 ms."""
    assert target.mqtt_port is not None
    count = params.latency_count
    paced = Role(
        "pub0",
        roles.mqtt_pub_paced,
        {
            "port": target.mqtt_port,
            "client_id": f"{tag}p0",
            "topic": "bench/0",
            "count": count,
            "payload": params.payload,
            "rate": params.latency_rate,
            "idle_timeout": params.idle_timeout,
        },
    )
    sub = _mqtt_sub(target, params, tag, 0, latency=True, expected=count)
    outcome, cpu = _execute(target, params, [sub, paced])
    got = outcome.results.get("sub", {})
    result = _result(outcome, cpu, int(got.get("delivered", 0)), count, int(got.get("end_ns", 0)))
    percentiles = latency_percentiles_ms(got.get("latencies_ns", []))
    if percentiles is not None:
        result.p50_ms, result.p99_ms = percentiles
    return result


def latency_percentiles_ms(arrival_order_ns: list[int]) -> tuple[float, float] | None:
    """p50 and p99 in ms of latencies listed in arrival order, without the first tenth: the
    warm-up (connection buffers, caches), as for any latency test. None without samples."""
    samples = sorted(arrival_order_ns[len(arrival_order_ns) // 10 :])
    if not samples:
        return None
    p99_at = min(len(samples) - 1, int(0.99 * len(samples)))
    return round(samples[len(samples) // 2] / 1e6, 3), round(samples[p99_at] / 1e6, 3)


def s7(target: Target, params: Params, tag: str) -> RunResult:
    """5,000 idle MQTT connections: KiB of broker RSS per connection, CONNECT->CONNACK/s."""
    assert target.mqtt_port is not None
    total = params.idle_connections
    shares = _split(total, params.connectors)
    line_up = [
        Role(
            f"conn{i}",
            roles.mqtt_idle_connections,
            {
                "port": target.mqtt_port,
                "prefix": f"{tag}c{i}",
                "count": n,
                "concurrency": params.connect_concurrency,
                "idle_timeout": params.idle_timeout,
                "slot": i,
            },
            decisive=False,
        )
        for i, n in enumerate(shares)
    ]
    wait_idle(target.pid)  # the previous run's connections closed and freed
    rss_before = status_kib(target.pid, "VmRSS") or 0
    rss_after: list[int] = []
    settle_ticks: list[int] = []

    def tick(shared: Shared) -> bool:
        done = sum(shared.counters[CONNECTED + i] for i in range(len(shares)))
        if done < total:
            return False
        # Connected: let the broker finish its per-connection work, then read its memory.
        settle_ticks.append(done)
        if len(settle_ticks) < 2:
            return False
        rss_after.append(status_kib(target.pid, "VmRSS") or 0)
        return True

    outcome, cpu = _execute(target, params, line_up, tick=tick)
    results = outcome.results.values()
    connected = sum(int(r.get("connected", 0)) for r in results)
    end = max((int(r.get("end_ns", 0)) for r in results), default=0)
    result = _result(outcome, cpu, connected, total, end)
    if rss_after and connected:
        result.extra["kib_per_connection"] = round((rss_after[0] - rss_before) / connected, 2)
        result.extra["rss_before_mb"] = round(rss_before / 1024, 1)
        result.extra["rss_connected_mb"] = round(rss_after[0] / 1024, 1)
    result.extra["connects_per_s"] = round(result.value)
    return result


def _bounded(target: Target, params: Params, line_up: list[Role]) -> RunResult:
    """Publishers without a window against a consumer capped at `slow_rate`, for
    `bounded_seconds`: RSS every second; plateau or growth."""
    rss: list[int] = []
    queued: list[float | None] = []
    delivered_at: list[int] = []
    last: dict[str, float] = {}

    def tick(shared: Shared) -> bool:
        rss.append(status_kib(target.pid, "VmRSS") or 0)
        delivered_at.append(int(shared.counters[DELIVERED]))
        # A short timeout: a gateway too busy to answer is a finding, not a reason to wait.
        metrics = gateway_metrics(target.http_port, timeout=0.5)
        if metrics:
            last.clear()
            last.update(metrics)
        queued.append(metrics.get("gateway_queued_bytes"))
        return False

    started = time.monotonic()
    outcome, cpu = _execute(
        target, params, line_up, tick=tick, run_timeout=params.bounded_seconds + 15
    )
    pubs = [r for name, r in outcome.results.items() if name.startswith("pub")]
    accepted = sum(int(r.get("sent", 0)) for r in pubs)
    got = next(r for name, r in outcome.results.items() if not name.startswith("pub"))
    delivered = int(got.get("delivered", 0))
    result = _result(outcome, cpu, delivered, delivered, int(got.get("end_ns", 0)))
    rates = [b - a for a, b in itertools.pairwise(delivered_at)]
    result.extra.update(
        accepted=accepted,
        delivered=delivered,
        seconds=round(time.monotonic() - started, 1),
        rss_mb_per_s=[round(k / 1024, 1) for k in rss],
        queued_mb_per_s=[None if b is None else round(b / 2**20, 2) for b in queued],
        delivered_per_s=rates,
        metrics_unanswered=sum(1 for b in queued if b is None),
        # Counters read during the run: the subscriber's queue goes away with it.
        dropped=result.extra.get(
            "dropped", int(sum(v for k, v in last.items() if "dropped_total" in k))
        ),
        verdict=_verdict(rss),
    )
    return result


def _verdict(rss_kib: list[int]) -> str:
    """Plateau if the second half of the samples grew less than 5% and 5 MB."""
    if len(rss_kib) < 6:
        return "too few samples"
    half = rss_kib[len(rss_kib) // 2 :]
    growth = half[-1] - half[0]
    slope = statistics.linear_regression(range(len(half)), half).slope / 1024
    if growth < max(0.05 * half[0], 5 * 1024):
        return f"plateau (second half +{growth / 1024:.1f} MB, {slope:+.1f} MB/s)"
    return f"grows (second half +{growth / 1024:.1f} MB, {slope:+.1f} MB/s)"


def bounded_s1(target: Target, params: Params, tag: str) -> RunResult:
    """S1 shape, publishers unthrottled, subscriber reads <= slow_rate msg/s, ~20 s: RSS."""
    duration = params.bounded_seconds
    pubs = _mqtt_pubs(target, params, tag, 0)
    for pub in pubs:
        pub.kwargs.update(window=0, count=10**9, duration=duration)
    sub = _bounded_sub(target, params, tag)
    return _bounded(target, params, [sub, *pubs])


def _bounded_sub(target: Target, params: Params, tag: str) -> Role:
    # It outlives the publishers by 3 s: the last metrics are read while its queue exists.
    return _mqtt_sub(
        target,
        params,
        tag,
        0,
        max_rate=params.slow_rate,
        expected=10**9,
        duration=params.bounded_seconds + 3,
    )


def bounded_s5(target: Target, params: Params, tag: str) -> RunResult:
    """S5 shape, AMQP publishers unthrottled, MQTT subscriber reads <= slow_rate msg/s."""
    duration = params.bounded_seconds
    pubs = _amqp_pubs(target, params, "amq.topic", "bench.{i}", confirms=False)
    for pub in pubs:
        pub.kwargs.update(window=0, count=10**9, duration=duration)
    return _bounded(target, params, [_bounded_sub(target, params, tag), *pubs])


_MQTT = frozenset({"mqtt"})
_AMQP = frozenset({"amqp"})
_BOTH = frozenset({"mqtt", "amqp"})
_GATEWAY = frozenset({"gateway"})

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("S1", "MQTT QoS 0, 2 pub -> 1 sub bench/#", _MQTT, s1),
        Scenario("S2", "MQTT QoS 1, 2 pub x 100 in flight, PUBACKs/s", _MQTT, s2),
        Scenario("S3", "AMQP 2 pub -> queue -> consumer, acks", _AMQP, s3),
        Scenario("S3c", "S3 with publisher confirms", _AMQP, s3c),
        Scenario("S4q0", "MQTT QoS 0 -> amq.topic -> AMQP consumer", _BOTH, s4q0),
        Scenario("S4q1", "MQTT QoS 1 -> amq.topic -> AMQP consumer", _BOTH, s4q1),
        Scenario("S5", "AMQP -> amq.topic -> MQTT sub bench/#", _BOTH, s5),
        Scenario("S6", "MQTT QoS 0 latency at 2,000 msg/s", _MQTT, s6, unit="ms"),
        Scenario("S7", "5,000 idle MQTT connections", _MQTT, s7, unit="conn/s"),
        Scenario("B1", "bounded memory, S1 shape, slow subscriber", _MQTT, bounded_s1, _GATEWAY),
        Scenario("B5", "bounded memory, S5 shape, slow subscriber", _BOTH, bounded_s5, _GATEWAY),
    )
}
