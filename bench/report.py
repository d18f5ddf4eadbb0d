"""Results: one run's figures, their medians per broker, ratios against the references, and the
printed table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.meter import Meter

GATEWAY = "gateway"
REFERENCES = ("mosquitto", "rabbitmq")


@dataclass
class RunResult:
    msgs_per_s: float
    settled: int
    expected: int
    delivered: int
    expected_delivered: int
    elapsed_s: float
    p50_ms: float | None
    p99_ms: float | None
    broker_cpu_s: float | None
    complete: bool
    error: str | None = None
    # Load generator CPU as % of one core: near 100 means the generator, not the broker, limits.
    generator_cpu_pct: float | None = None

    @classmethod
    def from_meter(cls, meter: Meter, broker_cpu_s: float | None) -> RunResult:
        elapsed = max(0, meter.last_settle_ns - meter.first_send_ns) / 1e9
        lat = sorted(meter.latencies_ns)
        return cls(
            msgs_per_s=meter.settled / elapsed if elapsed else 0.0,
            settled=meter.settled,
            expected=meter.expected_settled,
            delivered=meter.delivered,
            expected_delivered=meter.expected_delivered,
            elapsed_s=round(elapsed, 4),
            p50_ms=_percentile_ms(lat, 0.50),
            p99_ms=_percentile_ms(lat, 0.99),
            broker_cpu_s=broker_cpu_s,
            complete=meter.finished and meter.nacked == 0,
            error=meter.error or (f"{meter.nacked} nacked" if meter.nacked else None),
            generator_cpu_pct=round(100 * meter.client_cpu_s / elapsed, 1) if elapsed else None,
        )

    @classmethod
    def failed(cls, error: str) -> RunResult:
        return cls(0.0, 0, 0, 0, 0, 0.0, None, None, None, False, error)


def _percentile_ms(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    index = min(len(sorted_ns) - 1, int(q * len(sorted_ns)))
    return round(sorted_ns[index] / 1e6, 3)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class BrokerSummary:
    runs: list[RunResult] = field(default_factory=list)
    skipped: str | None = None
    rss_mb: float | None = None  # resident memory after the scenario's runs
    hwm_mb: float | None = None  # peak resident memory of the broker process so far

    @property
    def good_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.complete]

    @property
    def msgs_per_s(self) -> float | None:
        return _median([r.msgs_per_s for r in self.good_runs])

    @property
    def p50_ms(self) -> float | None:
        return _median([r.p50_ms for r in self.good_runs])

    @property
    def p99_ms(self) -> float | None:
        return _median([r.p99_ms for r in self.good_runs])

    @property
    def delivered_pct(self) -> float | None:
        runs = [r for r in self.runs if r.expected_delivered]
        if not runs:
            return None
        return 100.0 * sum(r.delivered for r in runs) / sum(r.expected_delivered for r in runs)

    @property
    def generator_cpu_pct(self) -> float | None:
        return _median([r.generator_cpu_pct for r in self.good_runs])

    @property
    def cpu_us_per_msg(self) -> float | None:
        """Broker CPU time per settled message, in microseconds (both cores counted)."""
        values = [
            r.broker_cpu_s * 1e6 / r.settled
            for r in self.good_runs
            if r.broker_cpu_s is not None and r.settled
        ]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "median_msgs_per_s": self.msgs_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "delivered_pct": self.delivered_pct,
            "broker_cpu_us_per_msg": self.cpu_us_per_msg,
            "generator_cpu_pct": self.generator_cpu_pct,
            "rss_mb": self.rss_mb,
            "hwm_mb": self.hwm_mb,
            "runs": [asdict(r) for r in self.runs],
        }


@dataclass
class ScenarioResult:
    name: str
    measures: str
    latency: str
    brokers: dict[str, BrokerSummary] = field(default_factory=dict)

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """gateway / reference for throughput (higher is better), p99 latency, CPU per message
        and memory (lower is better)."""
        gateway = self.brokers.get(GATEWAY)
        out: dict[str, dict[str, float | None]] = {}
        if gateway is None or gateway.skipped:
            return out
        for ref in REFERENCES:
            other = self.brokers.get(ref)
            if other is None or other.skipped:
                continue
            out[f"{GATEWAY}/{ref}"] = {
                "msgs_per_s": _ratio(gateway.msgs_per_s, other.msgs_per_s),
                "p99_ms": _ratio(gateway.p99_ms, other.p99_ms),
                "cpu_per_msg": _ratio(gateway.cpu_us_per_msg, other.cpu_us_per_msg),
                "rss_mb": _ratio(gateway.rss_mb, other.rss_mb),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "measures": self.measures,
            "latency": self.latency,
            "brokers": {name: s.to_json() for name, s in self.brokers.items()},
            "ratios": self.ratios(),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _fmt(value: float | None, spec: str) -> str:
    """`spec` is a width and a precision ("9.0f"); None prints as a right-aligned dash."""
    if value is None:
        return "-".rjust(int(spec.split(".")[0]))
    return format(value, spec)


def format_table(results: list[ScenarioResult]) -> str:
    head = (
        f"{'scenario':<16} {'broker':<10} {'msgs/s':>9} {'min..max':>15} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'deliv%':>7} {'cpu us/msg':>10} {'RSS MB':>7} {'gen%':>5}"
    )
    lines = [head, "-" * len(head)]
    for sc in results:
        for name, s in sc.brokers.items():
            if s.skipped:
                lines.append(f"{sc.name:<16} {name:<10} skipped: {s.skipped}")
                continue
            rates = [r.msgs_per_s for r in s.good_runs]
            spread = f"{min(rates):.0f}..{max(rates):.0f}" if rates else "-"
            failed = len(s.runs) - len(s.good_runs)
            note = f"  ({failed} of {len(s.runs)} runs incomplete)" if failed else ""
            lines.append(
                f"{sc.name:<16} {name:<10} {_fmt(s.msgs_per_s, '9.0f')} {spread:>15} "
                f"{_fmt(s.p50_ms, '8.2f')} {_fmt(s.p99_ms, '8.2f')} "
                f"{_fmt(s.delivered_pct, '7.1f')} {_fmt(s.cpu_us_per_msg, '10.1f')} "
                f"{_fmt(s.rss_mb, '7.1f')} {_fmt(s.generator_cpu_pct, '5.0f')}{note}"
            )
    lines.append(
        "msgs/s: median of complete runs; p50/p99: median over runs; cpu us/msg: broker CPU "
        "(all threads) per message;\nRSS: broker resident memory after the scenario; gen%: "
        "load generator CPU in % of one core (near 100: the generator limits the run)."
    )
    lines.append("")
    lines.append(
        "Ratios gateway/reference (msgs/s: >1 means the gateway is faster; p99, cpu/msg, RSS: "
        "<1 means the gateway is better)"
    )
    head2 = f"{'scenario':<16} {'vs':<10} {'msgs/s':>8} {'p99':>8} {'cpu/msg':>8} {'RSS':>8}"
    lines += [head2, "-" * len(head2)]
    for sc in results:
        for pair, r in sc.ratios().items():
            ref = pair.split("/", 1)[1]
            lines.append(
                f"{sc.name:<16} {ref:<10} {_fmt(r['msgs_per_s'], '8.2f')} "
                f"{_fmt(r['p99_ms'], '8.2f')} {_fmt(r['cpu_per_msg'], '8.2f')} "
                f"{_fmt(r['rss_mb'], '8.2f')}"
            )
    return "\n".join(lines)
