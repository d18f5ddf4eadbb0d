"""Command line and orchestration: start the brokers, run the scenarios, report, stop everything.

Runs are interleaved across brokers (run 1 on each broker, then run 2 on each, ...) so that noise
from other work on the machine spreads over all of them instead of hitting one broker's runs.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench.brokers import BROKERS, Broker, BrokerError, GatewayBroker
from bench.procstat import cpu_seconds, status_kib
from bench.profiling import PySpy, summarize_collapsed, summarize_cprofile
from bench.report import BrokerSummary, RunResult, ScenarioResult, format_table
from bench.scenarios import SCENARIOS, Params, Scenario, Target

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _csv(choices: Sequence[str]) -> type[argparse.Action]:
    class Csv(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: object,
            option_string: str | None = None,
        ) -> None:
            names = [v.strip() for v in str(values).split(",") if v.strip()]
            if names == ["all"]:
                names = list(choices)
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
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Drive the gateway and reference brokers side by side with raw-socket "
        "load generators; print a table and write JSON results.",
    )
    p.add_argument(
        "--scenarios",
        action=_csv(list(SCENARIOS)),
        default=list(SCENARIOS),
        help=f"comma list or 'all' (default all): {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--brokers",
        action=_csv(list(BROKERS)),
        default=list(BROKERS),
        help=f"comma list or 'all' (default all): {', '.join(BROKERS)}",
    )
    p.add_argument("--runs", type=_positive, default=3, help="measured runs per broker (3)")
    p.add_argument("--count", type=_positive, default=50_000, help="messages per run (50000)")
    p.add_argument("--payload", type=_payload, default=64, help="payload bytes, >= 8 (64)")
    p.add_argument(
        "--window",
        type=_positive,
        default=1000,
        help="messages (fan-out: deliveries) sent but not yet delivered (1000)",
    )
    p.add_argument(
        "--ack-window",
        type=_positive,
        default=100,
        help="QoS 1 PUBLISHes awaiting PUBACK / unconfirmed AMQP publishes (100)",
    )
    p.add_argument("--batch", type=_positive, default=100, help="messages per socket write (100)")
    p.add_argument("--publishers", type=_positive, default=4, help="fan-in publishers (4)")
    p.add_argument("--subscribers", type=_positive, default=50, help="fan-out subscribers (50)")
    p.add_argument("--prefetch", type=_positive, default=100, help="AMQP consumer prefetch (100)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="total publish rate in msgs/s; 0 = as fast as the window allows (0)",
    )
    p.add_argument("--run-timeout", type=float, default=60.0, help="seconds per run at most (60)")
    p.add_argument(
        "--idle-timeout", type=float, default=5.0, help="a run without progress ends after (5)"
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
        "under cProfile and slows it down); the profile goes next to the JSON and the top "
        "functions are printed",
    )
    p.add_argument(
        "--gateway-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the gateway process: uvloop as `gateway run` picks it, or asyncio's "
        "own loop (uvloop)",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def _params(args: argparse.Namespace) -> Params:
    return Params(
        count=args.count,
        payload=args.payload,
        window=args.window,
        ack_window=args.ack_window,
        batch=args.batch,
        publishers=args.publishers,
        subscribers=args.subscribers,
        prefetch=args.prefetch,
        rate=args.rate,
        run_timeout=args.run_timeout,
        idle_timeout=args.idle_timeout,
    )


class _Tags:
    """Short unique names for a run's topics and client ids (MQTT 3.1.1 ids stay <= 23)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(2)
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"b{self._prefix}{self._n}"


def _serves(broker: Broker, scenario: Scenario) -> str | None:
    """Why the broker cannot run the scenario, or None."""
    ports = {"mqtt": broker.mqtt_port, "amqp": broker.amqp_port}
    missing = sorted(need for need in scenario.needs if ports[need] is None)
    if missing:
        return f"no {'/'.join(missing)} listener"
    return None


async def _one_run(scenario: Scenario, broker: Broker, params: Params, tag: str) -> RunResult:
    pid = broker.main_pid
    before = cpu_seconds(pid)
    target = Target(broker.mqtt_port, broker.amqp_port)
    try:
        meter = await scenario.run(target, params, tag)
    except Exception as exc:  # a run's failure is a result in the table, not a crash
        return RunResult.failed(f"{type(exc).__name__}: {exc}")
    after = cpu_seconds(pid)
    used = None if before is None or after is None else round(after - before, 3)
    return RunResult.from_meter(meter, used)


async def run_scenarios(
    scenarios: list[Scenario],
    brokers: dict[str, Broker],
    params: Params,
    runs: int,
    warmup: bool,
) -> list[ScenarioResult]:
    tags = _Tags()
    results: list[ScenarioResult] = []
    for scenario in scenarios:
        result = ScenarioResult(scenario.name, scenario.measures, scenario.latency)
        active: list[str] = []
        for name, broker in brokers.items():
            summary = result.brokers[name] = BrokerSummary()
            summary.skipped = broker.problem() or _serves(broker, scenario)
            if summary.skipped is None:
                active.append(name)
        _progress(f"== {scenario.name}: {', '.join(active) or 'no broker can run it'}")
        if warmup:
            small = replace(params, count=max(1000, params.count // 10))
            for name in active:
                await _one_run(scenario, brokers[name], small, tags.next())
        for run in range(runs):
            for name in active:
                res = await _one_run(scenario, brokers[name], params, tags.next())
                result.brokers[name].runs.append(res)
                _progress(
                    f"   run {run + 1}/{runs} {name:<10} {res.msgs_per_s:10.0f} msgs/s"
                    f"  p99 {res.p99_ms if res.p99_ms is not None else '-'} ms"
                    + (f"  [{res.error}]" if res.error else "")
                )
                await asyncio.sleep(0.2)  # let the broker finish tearing the run's clients down
        for name in active:
            pid = brokers[name].main_pid
            rss, hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
            result.brokers[name].rss_mb = None if rss is None else round(rss / 1024, 1)
            result.brokers[name].hwm_mb = None if hwm is None else round(hwm / 1024, 1)
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


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


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
            print(f"{s.name:<16} {s.run.__doc__ or ''}")
        return 0
    params = _params(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS_DIR / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cprofile = out.with_suffix(".gateway.prof") if args.profile_gateway == "cprofile" else None
    spy_out = out.with_suffix(".gateway.pyspy.txt")
    scenarios = [SCENARIOS[name] for name in args.scenarios]
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
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            results = runner.run(
                run_scenarios(scenarios, brokers, params, args.runs, not args.no_warmup)
            )
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
    print(f"\nJSON: {out}")
    if cprofile is not None and cprofile.exists():
        print(f"\ngateway profile (cProfile): {cprofile}, top 25 by own time\n")
        print(summarize_cprofile(cprofile))
    if args.profile_gateway == "py-spy" and spy_out.exists():
        print(f"\ngateway profile (py-spy): {spy_out}, top 25 by own time\n")
        print(summarize_collapsed(spy_out))
    return 0
