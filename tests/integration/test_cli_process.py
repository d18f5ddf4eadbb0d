"""`gateway` as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import MQTT_5, ConnAck, Connect, Disconnect, ReasonCode

GATEWAY = [sys.executable, "-m", "gateway"]
ALL_PORTS_FREE = [
    "--bind", "127.0.0.1",
    "--mqtt-port", "0", "--ws-port", "0", "--amqp-port", "0", "--http-port", "0",
]  # fmt: skip


def run_cli(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, *args], capture_output=True, text=True, timeout=30, cwd=cwd, input=stdin,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_help_lists_the_flags() -> None:
    out = run_cli("run", "--help").stdout
    for flag in ("--config", "--bind", "--mqtt-port", "--mqtts-port", "--ws-port", "--amqp-port",
                 "--amqps-port", "--http-port", "--data-dir", "--mappings", "--log-level",
                 "--log-format"):  # fmt: skip
        assert flag in out


def test_version() -> None:
    from gateway import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {__version__}"


def test_bad_flag_value_is_one_line() -> None:
    result = run_cli("run", "--mqtt-port", "abc")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--mqtt-port" in lines[0]
    assert "expected an integer port" in lines[0]


def test_bad_log_level_is_refused() -> None:
    result = run_cli("run", "--log-level", "loud")
    assert result.returncode != 0
    assert "--log-level" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("mqtt_port = = 1\n", "not valid TOML"),
        ("mqtt_prot = 1\n", "key mqtt_prot: unknown key"),
        ('[amqp]\nframe_max = "big"\n', "key amqp.frame_max: expected `int`, got `str`"),
    ],
)
def test_broken_config_file_is_one_clear_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(content)
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert expected in lines[0]


def test_passwd_prints_a_hash_the_config_accepts(tmp_path: Path) -> None:
    result = run_cli("passwd", "--stdin", stdin="s3cret\n")
    assert result.returncode == 0
    encoded = result.stdout.strip()
    assert encoded.startswith("scrypt$")
    from gateway.core.users import verify_password

    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)


@pytest.mark.parametrize(("cost", "n"), [("10", "1024"), ("17", "131072")])
def test_passwd_cost_picks_the_scrypt_work_factor(cost: str, n: str) -> None:
    result = run_cli("passwd", "--stdin", "--cost", cost, stdin="s3cret\n")
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert encoded.split("$")[1:4] == [n, "8", "1"]
    from gateway.core.users import verify_password

    assert verify_password("s3cret", encoded)  # the login check accepts every allowed cost


@pytest.mark.parametrize("cost", ["9", "18", "fast"])
def test_passwd_refuses_a_cost_out_of_range(cost: str) -> None:
    result = run_cli("passwd", "--stdin", "--cost", cost, stdin="s3cret\n")
    assert result.returncode == 2
    assert "argument --cost: expected" in result.stderr
    assert result.stdout == ""


def wait_for_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> dict[str, object]:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        event = json.loads(line)
        if event.get("event") == "gateway.ready":
            return event
    raise AssertionError(f"no gateway.ready event; stderr was: {''.join(seen)}")


def mqtt5_connect(port: int) -> socket.socket:
    """A raw MQTT 5 client (the gateway under `gateway run` uses uvloop's transports)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(encode(Connect("cli-test", protocol_level=MQTT_5), MQTT_5))
    decoder = PacketDecoder(protocol_level=MQTT_5)
    packets = decoder.feed(sock.recv(1024))
    assert isinstance(packets[0], ConnAck)
    assert packets[0].reason_code == ReasonCode.SUCCESS
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    return data


def start_run(tmp_path: Path) -> subprocess.Popen[str]:
    """`gateway run` on free ports with JSON logs on stderr (`wait_for_ready` reads them)."""
    return subprocess.Popen(
        [*GATEWAY, "run", *ALL_PORTS_FREE, "--log-format", "json", "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_starts_and_stops_on_signal(tmp_path: Path, signum: int) -> None:
    proc = start_run(tmp_path)
    try:
        ready = wait_for_ready(proc)
        ports = ready["ports"]
        assert isinstance(ports, dict)
        assert all(isinstance(p, int) and p > 0 for p in ports.values())
        assert set(ports) == {"mqtt", "ws", "amqp", "http"}
        mqtt_client = mqtt5_connect(ports["mqtt"])
        amqp_client = socket.create_connection(("127.0.0.1", ports["amqp"]), timeout=5)
        amqp_client.sendall(b"AMQP\x00\x00\x09\x01")
        assert amqp_client.recv(7)[:3] == b"\x01\x00\x00"  # a method frame: connection.start
        started = time.monotonic()
        proc.send_signal(signum)
        # Clients are told: MQTT 5 DISCONNECT 0x8B (server shutting down).
        assert read_until_closed(mqtt_client) == encode(
            Disconnect(ReasonCode.SERVER_SHUTTING_DOWN), MQTT_5
        )
        read_until_closed(amqp_client)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_top_level_help_lists_the_run_flags() -> None:
    out = run_cli("--help").stdout
    for flag in ("--mqtt-port", "--amqp-port", "--ws-port", "--http-port", "--config"):
        assert flag in out


def test_a_bad_mapping_rule_stops_the_start_naming_file_and_rule(tmp_path: Path) -> None:
    rules = tmp_path / "mappings"
    rules.mkdir()
    (rules / "plant.toml").write_text("[[rule]]\n")
    result = run_cli("run", "--mappings", str(rules))
    assert result.returncode == 2
    assert "plant.toml: rule #1: name: required key missing" in result.stderr
    missing = run_cli("run", "--mappings", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "expected a directory" in missing.stderr


def test_run_grows_the_fd_table_and_logs_the_open_files_limit(tmp_path: Path) -> None:
    # `gateway run` calls presize_fd_table() at start-up (gateway/app.py): without it the table
    # grows by doubling under load, each growth waiting for an RCU grace period.
    import resource

    from gateway.app import FD_TABLE_SLOTS

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = FD_TABLE_SLOTS if soft == resource.RLIM_INFINITY else min(soft, FD_TABLE_SLOTS)
    proc = start_run(tmp_path)
    try:
        ready = wait_for_ready(proc)
        assert ready["open_files"] == soft  # said where an operator reads the ports
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fd_size = int(status.split("FDSize:")[1].split()[0])
        assert fd_size >= expected
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
