"""Results: one run's figures, their medians per broker, ratios against the peers, the tables."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

GATEWAY = "gateway"
PEERS = ("mosquitto", "rabbitmq", "amqtt", "relay")


@dataclass
class RunResult:
    value: float  # the scenario's rate: msg/s, PUBACKs/s, connects/s
    settled: int
    expected: int
    delivered: int
    elapsed_s: float
    broker_cpu_s: float | None
    complete: bool
    error: str | None = None
    # CPU of each generator process in % of one core over the run: near 100 means that role,
    # not the broker, set the pace.
    generator_cpu_pct: dict[str, float] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: str) -> RunResult:
        return cls(0.0, 0, 0, 0, 0.0, None, False, error)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class BrokerSummary:
    runs: list[RunResult] = field(default_factory=list)
    skipped: str | None = None
    rss_mb: float | None = None  # resident memory after the scenario's runs

    @property
    def good_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.complete]

    @property
    def value(self) -> float | None:
        return _median([r.value for r in self.good_runs])

    @property
    def p50_ms(self) -> float | None:
        return _median([r.p50_ms for r in self.good_runs])

    @property
    def p99_ms(self) -> float | None:
        return _median([r.p99_ms for r in self.good_runs])

    def extra(self, key: str) -> float | None:
        return _median([r.extra.get(key) for r in self.good_runs])

    @property
    def kib_per_connection(self) -> float | None:
        """S7 memory from the first run only: later runs reuse memory the first one freed."""
        runs = [r for r in self.runs if "kib_per_connection" in r.extra]
        return runs[0].extra["kib_per_connection"] if runs else None

    @property
    def delivered_pct(self) -> float | None:
        runs = [r for r in self.runs if r.expected]
        if not runs:
            return None
        return 100.0 * sum(r.delivered for r in runs) / sum(r.expected for r in runs)

    @property
    def generator_cpu_pct(self) -> float | None:
        """The busiest generator process (median over runs)."""
        return _median([max(r.generator_cpu_pct.values(), default=None) for r in self.good_runs])

    @property
    def broker_cpu_pct(self) -> float | None:
        """Broker CPU in % of one core over the run (2 cores: at most 200)."""
        return _median(
            [
                100 * r.broker_cpu_s / r.elapsed_s
                for r in self.good_runs
                if r.broker_cpu_s is not None and r.elapsed_s
            ]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "median": self.value,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "delivered_pct": self.delivered_pct,
            "broker_cpu_pct": self.broker_cpu_pct,
            "generator_cpu_pct_max_role": self.generator_cpu_pct,
            "rss_mb": self.rss_mb,
            "runs": [asdict(r) for r in self.runs],
        }


@dataclass
class ScenarioResult:
    name: str
    title: str
    unit: str
    brokers: dict[str, BrokerSummary] = field(default_factory=dict)

    def headline(self, summary: BrokerSummary) -> float | None:
        """The figure the issue's table gives: p99 for S6, KiB per connection for S7 memory."""
        if self.unit == "ms":
            return summary.p99_ms
        return summary.value

    def ratios(self) -> dict[str, float | None]:
        """gateway / peer of the headline figure (rates: >1 is better; S6 p99: <1 is better)."""
        gateway = self.brokers.get(GATEWAY)
        out: dict[str, float | None] = {}
        if gateway is None or gateway.skipped:
            return out
        for peer in PEERS:
            other = self.brokers.get(peer)
            if other is None or other.skipped:
                continue
            out[peer] = _ratio(self.headline(gateway), self.headline(other))
            if self.name == "S7":
                out[f"{peer} KiB/conn"] = _ratio(
                    gateway.kib_per_connection, other.kib_per_connection
                )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "brokers": {name: s.to_json() for name, s in self.brokers.items()},
            "ratios": self.ratios(),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        width = spec.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 0)
    return format(value, spec)


def format_table(results: list[ScenarioResult]) -> str:
    head = (
        f"{'scen':<5} {'broker':<10} {'median':>9} {'min..max':>15} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'deliv%':>6} {'brk cpu%':>8} {'gen%':>5} {'RSS MB':>7}  extra"
    )
    lines = [head, "-" * len(head)]
    for sc in results:
        lines.append(f"{sc.name}: {sc.title} ({sc.unit})")
        for name, s in sc.brokers.items():
            if s.skipped:
                lines.append(f"{'':<5} {name:<10} skipped: {s.skipped}")
                continue
            rates = [r.value for r in s.good_runs]
            spread = f"{min(rates):.0f}..{max(rates):.0f}" if rates else "-"
            failed = [r.error or "incomplete" for r in s.runs if not r.complete]
            extra = _extras(sc, s)
            if failed:
                extra += f" ({len(failed)}/{len(s.runs)} runs failed: {failed[0][:80]})"
            lines.append(
                f"{'':<5} {name:<10} {_fmt(s.value, '9.0f')} {spread:>15} "
                f"{_fmt(s.p50_ms, '7.2f')} {_fmt(s.p99_ms, '7.2f')} "
                f"{_fmt(s.delivered_pct, '6.1f')} {_fmt(s.broker_cpu_pct, '8.0f')} "
                f"{_fmt(s.generator_cpu_pct, '5.0f')} {_fmt(s.rss_mb, '7.1f')}  {extra}"
            )
    lines.append(
        "median: of complete runs (S6: msg/s achieved; its figure is p99); brk cpu%: broker CPU "
        "in % of one core;\ngen%: busiest generator process in % of one core (near 100: the "
        "generator limits the run); RSS: broker after the scenario."
    )
    lines.append("")
    lines.append(
        "Ratios gateway/peer (rates: >1 = gateway faster; S6 p99 and KiB/conn: <1 = better)"
    )
    for sc in results:
        ratios = sc.ratios()
        if ratios:
            text = "  ".join(f"{k} {_fmt(v, '.2f')}" for k, v in ratios.items())
            lines.append(f"{sc.name:<5} {text}")
    return "\n".join(lines)


def _extras(sc: ScenarioResult, s: BrokerSummary) -> str:
    if sc.name == "S7":
        return f"KiB/conn {_fmt(s.kib_per_connection, '.2f')} (first run)"
    runs = s.runs
    drops = [r.extra["dropped"] for r in runs if r.extra.get("dropped")]
    if drops and not sc.name.startswith("B"):
        return f"dropped by the broker: {drops} in {len(runs)} runs"
    if sc.name.startswith("B") and runs:
        x = runs[-1].extra
        return (
            f"accepted {x.get('accepted')} delivered {x.get('delivered')} dropped "
            f"{x.get('dropped')}; {x.get('verdict')}"
        )
    return ""


def format_markdown(results: list[ScenarioResult], brokers: list[str]) -> str:
    """The README table: medians per broker and the ratios gateway/peer."""
    peers = [b for b in brokers if b != GATEWAY]
    head = ["scenario", *brokers, *(f"÷ {p}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in results:
        if sc.name.startswith("B"):
            continue
        cells = [f"{sc.name} {sc.title} ({'p99 ms' if sc.unit == 'ms' else sc.unit})"]
        for b in brokers:
            s = sc.brokers.get(b)
            if s is None or s.skipped:
                cells.append("-")
                continue
            figure = sc.headline(s)
            if sc.unit == "ms":
                cells.append(f"{_fmt(s.p50_ms, '.2f')} / {_fmt(figure, '.2f')}")
            elif sc.name == "S7":
                kib = s.kib_per_connection
                cells.append(f"{_fmt(kib, '.1f')} KiB, {_fmt(figure, ',.0f')}/s")
            else:
                cells.append(_fmt(figure, ",.0f").strip())
        ratios = sc.ratios()
        for p in peers:
            r = ratios.get(p)
            if sc.name == "S7" and r is not None:
                kib = ratios.get(f"{p} KiB/conn")
                cells.append(f"{_fmt(kib, '.2f')} / {r:.2f}")
            else:
                cells.append(_fmt(r, ".2f").strip())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
