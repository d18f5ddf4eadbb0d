"""The RabbitMQ Java client against the gateway (tests/interop/java/JavaClientCheck.java)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.gateway_runner import RunningGateway

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent / "java"
JARS = [
    Path("/usr/share/java/amqp-client.jar"),
    Path("/usr/share/java/slf4j-api.jar"),
    Path("/usr/share/java/slf4j-nop.jar"),
]


def test_java_client(gateway: RunningGateway, tmp_path: Path) -> None:
    # A missing peer is a failure, never a skip: `make test` installs it.
    assert shutil.which("javac") is not None, (
        "javac missing: run tests/interop/java/install-peer.sh"
    )
    assert all(jar.is_file() for jar in JARS), "run tests/interop/java/install-peer.sh"
    classpath = ":".join(str(jar) for jar in JARS)
    subprocess.run(
        ["javac", "-cp", classpath, "-d", str(tmp_path), str(HERE / "JavaClientCheck.java")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    result = subprocess.run(
        ["java", "-cp", f"{tmp_path}:{classpath}", "JavaClientCheck", str(gateway.amqp_port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "confirmed": True,
        "consumed": "kern.error:disk full",
        "rpc": "c1=49",
        "passive": 404,
        "connection_open": True,
    }
