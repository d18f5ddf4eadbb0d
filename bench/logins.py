"""Other clients' latency while logins need their passwords checked: the gateway beside mosquitto.

    .venv/bin/python bench/logins.py                   # 3 runs, 10 wrong-password CONNECTs/s
    .venv/bin/python bench/logins.py --rate 20 --runs 5 --brokers gateway

Each broker gets a user `alice` (password `wonderland`; the gateway stores it as `gateway
passwd` does, with scrypt's default cost, mosquitto with `mosquitto_passwd`) and lets anonymous
clients in. A pinger (MQTT 3.1.1, anonymous, TCP_NODELAY) publishes 8-byte QoS 0 messages to
its own subscription every 2 ms and times each round trip, first for `--seconds` with nothing
else going on ("quiet"), then for as long again while another process sends `--rate`
CONNECTs per second as alice with a wrong password, each waiting for its refusal ("logins").
Reports the median over the runs of each phase's p50, p99 and max round trip in ms, and how
many logins were refused.

A gateway that hashed on its event loop stopped every client for one scrypt (about 43 ms here)
per login; since session 7 the hash runs on a worker thread (gateway/net_login.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.brokers import Broker, GatewayBroker, MosquittoBroker
from bench.wire import mqtt_connect_packet, recv_exact, tcp_connect
from gateway.core.users import hash_password

USER, PASSWORD = "alice", "wonderland"
TOPIC = b"logins/ping"


def pinger(port: int) -> socket.socket:
    sock = tcp_connect(port, 10)
    sock.sendall(mqtt_connect_packet("logins-pinger", None, None))
    assert recv_exact(sock, 4)[3] == 0, "the pinger was refused"
    body = b"\x00\x01" + len(TOPIC).to_bytes(2, "big") + TOPIC + b"\x00"
    sock.sendall(bytes([0x82, len(body)]) + body)
    recv_exact(sock, 5)  # SUBACK
    return sock


def round_trips(sock: socket.socket, seconds: float) -> list[float]:
    publish = bytes([0x30, 2 + len(TOPIC) + 8]) + len(TOPIC).to_bytes(2, "big") + TOPIC + b"x" * 8
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        sock.sendall(publish)
        recv_exact(sock, len(publish))
        times.append((time.perf_counter() - started) * 1e3)
        time.sleep(0.002)
    return sorted(times)


def storm(port: int, rate: float, seconds: float, refused: multiprocessing.Queue[int]) -> None:
    """Wrong-password CONNECTs as alice, one after another, at most ``rate`` per second."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        started = time.monotonic()
        with tcp_connect(port, 10) as sock:
            sock.sendall(mqtt_connect_packet(f"storm-{count}", USER, b"guess-%d" % count))
            if recv_exact(sock, 4)[3] != 0:
                count += 1
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    refused.put(count)


def summary(times: list[float]) -> tuple[float, float, float]:
    return times[len(times) // 2], times[int(len(times) * 0.99)], times[-1]


def run_once(port: int, rate: float, seconds: float) -> dict[str, tuple[float, float, float]]:
    sock = pinger(port)
    try:
        quiet = round_trips(sock, seconds)
        refused: multiprocessing.Queue[int] = multiprocessing.Queue()
        process = multiprocessing.Process(target=storm, args=(port, rate, seconds, refused))
        process.start()
        loaded = round_trips(sock, seconds)
        count = refused.get(timeout=30)
        process.join(30)
    finally:
        sock.close()
    return {"quiet": summary(quiet), "logins": summary(loaded), "refused": (count, 0, 0)}


def make_broker(name: str, workdir: Path) -> Broker:
    if name == "gateway":
        config = (
            f'[[users]]\nname = "{USER}"\n'
            f'password_hash = "{hash_password(PASSWORD)}"\nloopback_only = true\n'
        )
        return GatewayBroker("gateway", workdir, extra_config=config)
    passwords = workdir / "passwords"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwords), USER, PASSWORD], check=True)
    # mosquitto started as root reads it as its own user, after dropping privileges.
    workdir.chmod(0o755)
    passwords.chmod(0o644)
    return MosquittoBroker("mosquitto", workdir, extra_config=f"password_file {passwords}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="gateway,mosquitto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="wrong-password CONNECTs/s")
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase")
    args = parser.parse_args()
    print(f"{'broker':<10} {'phase':<7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  refused")
    for name in args.brokers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-logins-{name}-") as tmp:
            broker = make_broker(name, Path(tmp))
            try:
                broker.start(60)
                assert broker.mqtt_port is not None
                runs = [
                    run_once(broker.mqtt_port, args.rate, args.seconds) for _ in range(args.runs)
                ]
            finally:
                broker.stop()
        refused = statistics.median(run["refused"][0] for run in runs)
        for phase in ("quiet", "logins"):
            p50, p99, worst = (statistics.median(run[phase][i] for run in runs) for i in range(3))
            note = f"  {refused:.0f} in {args.seconds:g} s" if phase == "logins" else ""
            print(f"{name:<10} {phase:<7} {p50:8.3f} {p99:8.3f} {worst:8.3f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
