"""Command line and orchestration: start the brokers, run the scenarios, report, stop everything.

Runs are interleaved across brokers (run 1 on each broker, then run 2 on each, ...) so that noise
from other work on the machine spreads over all of them instead of hitting one broker's runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType

from bench.brokers import BROKERS, OPT_IN, Broker, BrokerError, GatewayBroker
from bench.procstat import status_kib, wait_idle
from bench.profiling import PySpy, summarize_collapsed, summarize_cprofile
from bench.report import BrokerSummary, RunResult, ScenarioResult, format_markdown, format_table
from bench.scenarios import SCENARIOS, Params, Scenario, Target

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_SCENARIOS = [name for name in SCENARIOS if not name.startswith("B")]
DEFAULT_BROKERS = [name for name in BROKERS if name not in OPT_IN]
# How long a broker may take to go quiet after a run before the next run starts anyway.
TEARDOWN_LIMIT_S = 60.0


def _csv(choices: Sequence[str], every: Sequence[str] | None = None) -> type[argparse.Action]:
    """A comma list of `choices`; 'all' means `every` (default: every choice)."""

    class Csv(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: object,
            option_string: str | None = None,
        ) -> None:
            names = [v.strip() for v in str(values).split(",") if v.strip()]
            if "all" in names:  # 'all' may be combined: 'all,relay'
                expanded = list(choices if every is None else every)
                names = expanded + [n for n in names if n != "all" and n not in expanded]
            unknown = sorted(set(names) - set(choices))
            if unknown:
                parser.error(f"{option_string}: unknown {unknown}; choose from {list(choices)}")
            setattr(namespace, self.dest, names)

    return Csv


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _payload(text: str) -> int:
    value = int(text)
    if value < 8:
        raise argparse.ArgumentTypeError("payload must be at least 8 bytes (the send stamp)")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = Params()
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Drive the gateway and peer brokers side by side with raw-socket load "
        "generators (one process per role); print a table and write JSON results.",
    )
    p.add_argument(
        "--scenarios",
        action=_csv(list(SCENARIOS)),
        default=DEFAULT_SCENARIOS,
        help=f"comma list or 'all' (default: {','.join(DEFAULT_SCENARIOS)}); "
        "B1,B5 are the bounded-memory checks (gateway only, one run)",
    )
    p.add_argument(
        "--brokers",
        action=_csv(list(BROKERS), DEFAULT_BROKERS),
        default=DEFAULT_BROKERS,
        help=f"comma list or 'all' (default all): {', '.join(DEFAULT_BROKERS)}; 'relay' "
        "(bench/relay.py, a bare uvloop QoS 0 relay for S1, S6, S7) only when named",
    )
    p.add_argument("--runs", type=_positive, default=3, help="measured runs per broker (3)")
    p.add_argument("--count", type=_positive, default=d.count, help=f"messages per run ({d.count})")
    p.add_argument(
        "--amqtt-count",
        type=_positive,
        default=20_000,
        help="messages per run against amqtt, which moves a few thousand per second (20000)",
    )
    p.add_argument("--payload", type=_payload, default=d.payload, help="payload bytes, >= 8 (64)")
    p.add_argument("--batch", type=_positive, default=d.batch, help="messages per write (500)")
    p.add_argument(
        "--window",
        type=_positive,
        default=d.window,
        help="QoS 0 / unconfirmed-free messages sent but not delivered, all publishers (50000)",
    )
    p.add_argument("--publishers", type=_positive, default=d.publishers, help="publishers (2)")
    p.add_argument(
        "--connections", type=_positive, default=d.idle_connections, help="S7 connections (5000)"
    )
    p.add_argument(
        "--connectors", type=_positive, default=d.connectors, help="S7 generator processes (4)"
    )
    p.add_argument(
        "--bounded-seconds", type=float, default=d.bounded_seconds, help="B1/B5 duration (20)"
    )
    p.add_argument(
        "--slow-rate",
        type=float,
        default=d.slow_rate,
        help="B1/B5 consumer speed limit in msg/s (20000)",
    )
    p.add_argument("--run-timeout", type=float, default=d.run_timeout, help="seconds per run (60)")
    p.add_argument(
        "--idle-timeout", type=float, default=d.idle_timeout, help="a run without progress ends (5)"
    )
    p.add_argument(
        "--start-timeout", type=float, default=90.0, help="seconds for a broker to start (90)"
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up run")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    p.add_argument(
        "--profile-gateway",
        choices=["py-spy", "cprofile"],
        help="profile the gateway during the runs (py-spy attaches and samples; cprofile runs it "
        "under cProfile and slows it down); the top functions are printed after the table",
    )
    p.add_argument(
        "--gateway-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the gateway process (uvloop, as `gateway run` picks it)",
    )
    p.add_argument("--markdown", action="store_true", help="also print the README table")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def _params(args: argparse.Namespace) -> Params:
    return Params(
        count=args.count,
        payload=args.payload,
        batch=args.batch,
        window=args.window,
        publishers=args.publishers,
        idle_connections=args.connections,
        connectors=args.connectors,
        bounded_seconds=args.bounded_seconds,
        slow_rate=args.slow_rate,
        run_timeout=args.run_timeout,
        idle_timeout=args.idle_timeout,
    )


class _Tags:
    """Short unique prefixes for a run's client ids and queue names (MQTT 3.1.1 ids <= 23)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(2)
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"b{self._prefix}{self._n}"


def _serves(broker: Broker, scenario: Scenario) -> str | None:
    """Why the broker cannot run the scenario, or None."""
    if scenario.only and broker.name not in scenario.only:
        return f"runs on {', '.join(sorted(scenario.only))} only"
    if broker.scenarios is not None and scenario.name not in broker.scenarios:
        return f"{broker.name} runs {', '.join(sorted(broker.scenarios))} only"
    ports = {"mqtt": broker.mqtt_port, "amqp": broker.amqp_port}
    missing = sorted(need for need in scenario.needs if ports[need] is None)
    if missing:
        return f"no {'/'.join(missing)} listener"
    return None


def _one_run(scenario: Scenario, broker: Broker, params: Params, tag: str) -> RunResult:
    target = Target(broker.mqtt_port, broker.amqp_port, broker.main_pid, broker.http_port)
    try:
        return scenario.run(target, params, tag)
    except Exception as exc:  # a run's failure is a result in the table, not a crash
        return RunResult.failed(f"{type(exc).__name__}: {exc}")


def _broker_params(params: Params, name: str, amqtt_count: int) -> Params:
    if name == "amqtt":
        return replace(params, count=min(params.count, amqtt_count))
    return params


def run_scenarios(
    scenarios: list[Scenario],
    brokers: dict[str, Broker],
    params: Params,
    runs: int,
    warmup: bool,
    amqtt_count: int,
) -> list[ScenarioResult]:
    tags = _Tags()
    results: list[ScenarioResult] = []
    for scenario in scenarios:
        result = ScenarioResult(scenario.name, scenario.title, scenario.unit)
        active: list[str] = []
        for name, broker in brokers.items():
            summary = result.brokers[name] = BrokerSummary()
            summary.skipped = broker.problem() or _serves(broker, scenario)
            if summary.skipped is None:
                active.append(name)
        _progress(f"== {scenario.name} {scenario.title}: {', '.join(active) or 'no broker'}")
        single = bool(scenario.only)  # the bounded checks: one long run
        if warmup and not single and scenario.name != "S7":
            for name in active:
                p = _broker_params(params, name, amqtt_count)
                _one_run(
                    scenario, brokers[name], replace(p, count=max(1000, p.count // 10)), tags.next()
                )
        for run in range(1 if single else runs):
            for name in active:
                p = _broker_params(params, name, amqtt_count)
                res = _one_run(scenario, brokers[name], p, tags.next())
                result.brokers[name].runs.append(res)
                gen = max(res.generator_cpu_pct.values(), default=0.0)
                _progress(
                    f"   run {run + 1} {name:<10} {res.value:10.0f} {scenario.unit}"
                    f"  p99 {res.p99_ms if res.p99_ms is not None else '-'} ms  gen {gen:.0f}%"
                    + (f"  {res.extra}" if res.extra and not single else "")
                    + (f"  [{res.error}]" if res.error else "")
                )
                # The next run is another broker's: this one must have torn its clients down
                # first. RabbitMQ and amqtt take seconds of CPU to close S7's 5,000
                # connections, which slowed whichever broker ran next by up to a third.
                began = time.monotonic()
                wait_idle(brokers[name].main_pid, limit=TEARDOWN_LIMIT_S)
                waited = time.monotonic() - began
                if waited >= 1.0:
                    _progress(f"   ({name} took {waited:.1f} s to go quiet after the run)")
        for name in active:
            rss = status_kib(brokers[name].main_pid, "VmRSS")
            result.brokers[name].rss_mb = None if rss is None else round(rss / 1024, 1)
        results.append(result)
    return results


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the brokers are stopped on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_brokers(
    args: argparse.Namespace,
    workdir: Path,
    profile: Path | None,
    stack: contextlib.ExitStack,
) -> dict[str, Broker]:
    brokers: dict[str, Broker] = {}
    for name in args.brokers:
        home = workdir / name
        home.mkdir()
        broker = BROKERS[name](name, home)
        if isinstance(broker, GatewayBroker):
            broker.profile_to = profile
            broker.loop = args.gateway_loop
        stack.callback(broker.stop)
        _progress(f"starting {name} ...")
        began = time.monotonic()
        try:
            broker.start(args.start_timeout)
        except (BrokerError, OSError) as exc:
            broker.start_error = str(exc).splitlines()[0]
            _progress(f"   {name} unavailable: {exc}")
            broker.stop()
        else:
            _progress(
                f"   {name} {broker.version} up in {time.monotonic() - began:.1f} s "
                f"(mqtt {broker.mqtt_port}, amqp {broker.amqp_port})"
            )
        brokers[name] = broker
    return brokers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:<5} {(s.run.__doc__ or '').splitlines()[0]}")
        return 0
    params = _params(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS_DIR / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cprofile = out.with_suffix(".gateway.prof") if args.profile_gateway == "cprofile" else None
    spy_out = out.with_suffix(".gateway.pyspy.txt")
    # S7 first: its memory per connection is read on brokers that have not grown yet.
    scenarios = sorted((SCENARIOS[name] for name in args.scenarios), key=lambda s: s.name != "S7")
    with (
        _sigterm_exits(),
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        brokers = _start_brokers(args, Path(tmp), cprofile, stack)
        gateway = brokers.get("gateway")
        if args.profile_gateway == "py-spy" and gateway is not None and not gateway.problem():
            spy = PySpy(gateway.main_pid, spy_out)
            stack.callback(spy.stop)  # runs before the brokers stop (last in, first out)
        results = run_scenarios(
            scenarios, brokers, params, args.runs, not args.no_warmup, args.amqtt_count
        )
        results.sort(key=lambda r: list(SCENARIOS).index(r.name))
        versions = {name: b.version for name, b in brokers.items()}
        errors = {name: b.problem() for name, b in brokers.items()}
        stack.close()  # stop the brokers now: cProfile writes its file as the gateway exits
    document = {
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "params": asdict(params),
        "runs": args.runs,
        "brokers": {n: {"version": versions[n], "error": errors[n]} for n in brokers},
        "scenarios": {r.name: r.to_json() for r in results},
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(results))
    if args.markdown:
        print()
        print(format_markdown(results, list(brokers)))
    print(f"\nJSON: {out}")
    if cprofile is not None and cprofile.exists():
        print(f"\ngateway profile (cProfile): {cprofile}, top 25 by own time\n")
        print(summarize_cprofile(cprofile))
    if args.profile_gateway == "py-spy" and spy_out.exists():
        print(f"\ngateway profile (py-spy): {spy_out}, top 25 by own time\n")
        print(summarize_collapsed(spy_out))
    return 0
