"""docker-compose.yml and the Dockerfile, checked without Docker: the compose file parses, has the
shape `docker compose config` accepts, and every file, port and command it names exists."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: installed with the dev extra (amqtt depends on it)

from gateway.cli import build_parser as gateway_parser
from gateway.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

GATEWAY_PORTS = {1883, 15675, 5672, 15672}
TOP_LEVEL_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "ports", "volumes", "environment", "healthcheck",
    "depends_on", "restart", "user", "working_dir", "networks", "expose", "stop_signal",
    "stop_grace_period", "init", "labels", "ulimits",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    out = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    value = services[name]
    assert isinstance(value, dict)
    return value


def container_command(svc: dict[str, Any]) -> list[str]:
    command = svc["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    assert all(isinstance(word, str) for word in argv), f"quote every argument: {argv}"
    return list(argv)


def test_top_level_and_service_keys_are_compose_keys(compose: dict[str, Any]) -> None:
    extensions = {k for k in compose if k.startswith("x-")}
    assert set(compose) - extensions <= TOP_LEVEL_KEYS
    assert set(compose["services"]) == {"gateway", "backend", "devices"}
    for name, svc in compose["services"].items():
        assert set(svc) <= SERVICE_KEYS, f"{name}: unknown keys {set(svc) - SERVICE_KEYS}"
        assert "image" in svc or "build" in svc, name


def test_every_service_builds_this_repository(compose: dict[str, Any]) -> None:
    for name in compose["services"]:
        svc = service(compose, name)
        assert svc.get("build") == ".", name
        assert (ROOT / svc["build"] / "Dockerfile").is_file()
    images = {svc["image"] for svc in compose["services"].values()}
    assert len(images) == 1, "one image for the three services"


def test_gateway_publishes_the_four_ports(compose: dict[str, Any]) -> None:
    published: set[int] = set()
    for entry in service(compose, "gateway")["ports"]:
        assert isinstance(entry, str), "quote port mappings (YAML reads 22:22 as base 60)"
        host, _, container = entry.partition(":")
        assert host == container, entry
        published.add(int(container))
    assert published == GATEWAY_PORTS


def test_gateway_command_is_a_valid_gateway_run(compose: dict[str, Any]) -> None:
    argv = container_command(service(compose, "gateway"))
    assert argv[:2] == ["gateway", "run"]
    args = gateway_parser().parse_args(argv[1:])
    mounts = mounted(service(compose, "gateway"), compose)
    # --mappings points into the read-only ./mappings mount, at the demo rules.
    host_rules = host_path_for(args.mappings, mounts)
    assert host_rules == ROOT / "mappings" / "demo"
    assert host_rules.is_dir(), "mappings/demo (the demo's mapping rules) is missing"
    assert any(host_rules.glob("*.toml"))
    assert mounts["/etc/gateway/mappings"][1], "./mappings is mounted read-only"
    # --config names a mounted file that the gateway's own loader accepts.
    config_file = host_path_for(args.config, mounts)
    config = load_config(str(config_file), environ={})
    assert isinstance(config, Config)
    assert any(user.name == "demo" for user in config.users)
    assert config.http_port == 15672
    assert args.data_dir == "/data"
    assert mounts["/data"][0] in compose["volumes"], "the data dir is a named volume"


def mounted(svc: dict[str, Any], compose: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read_only) for a service's short-syntax volumes."""
    out = {}
    for entry in svc["volumes"]:
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{entry}: {source} does not exist"
        else:
            assert source in compose.get("volumes", {}), f"{entry}: undeclared named volume"
        out[target] = (source, read_only)
    return out


def host_path_for(container_path: str, mounts: dict[str, tuple[str, bool]]) -> Path:
    for target, (source, _) in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target + "/"):
            assert source.startswith("."), f"{container_path} is in a named volume"
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    raise AssertionError(f"{container_path} is not mounted into the container")


@pytest.mark.parametrize(
    ("name", "module"),
    [("backend", "gateway.demo.backend"), ("devices", "gateway.demo.devices")],
)
def test_client_services_run_demo_modules_with_valid_flags(
    compose: dict[str, Any], name: str, module: str
) -> None:
    svc = service(compose, name)
    argv = container_command(svc)
    assert argv[:3] == ["python", "-m", module]
    parser = importlib.import_module(module).build_parser()
    args = parser.parse_args(argv[3:])
    # They reach the gateway by its service name, on the ports it publishes, as the demo user.
    url = args.amqp_url if name == "backend" else args.mqtt_url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert "demo:demo@gateway:" in url
    assert port in GATEWAY_PORTS
    assert svc["depends_on"]["gateway"] == {"condition": "service_healthy"}


def test_gateway_healthcheck_hits_healthz(compose: dict[str, Any]) -> None:
    check = service(compose, "gateway")["healthcheck"]
    assert check["test"][0] == "CMD"
    assert "http://127.0.0.1:15672/healthz" in " ".join(check["test"])


def test_dockerfile_base_user_volume_ports_healthcheck(
    dockerfile: list[tuple[str, str]],
) -> None:
    instructions = dict(dockerfile)  # last one wins, as in Docker
    assert instructions["FROM"] == "python:3.11-slim"
    assert instructions["USER"] not in ("root", "0", "")
    assert instructions["VOLUME"] == "/data"
    assert {int(p) for p in instructions["EXPOSE"].split()} == GATEWAY_PORTS
    assert "http://127.0.0.1:15672/healthz" in instructions["HEALTHCHECK"]
    # The project itself with the [demo] extra (the backend's and devices' clients).
    assert re.search(r'pip install "\.\[demo\]"\s', instructions["RUN"] + " ")
    cmd = json.loads(instructions["CMD"])
    assert cmd[:2] == ["gateway", "run"]
    gateway_parser().parse_args(cmd[1:])


def test_dockerfile_copies_what_exists_and_is_not_ignored(
    dockerfile: list[tuple[str, str]],
) -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [args.split() for instruction, args in dockerfile if instruction == "COPY"]
    assert copies
    sources = [src for words in copies for src in words[:-1]]
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert src.rstrip("/") not in ignored, f"COPY {src} is excluded by .dockerignore"
    # pyproject's readme must be in the build context for `pip install .`.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources
    assert "gateway" in sources


def test_gateway_may_open_a_file_per_client(compose: dict[str, Any]) -> None:
    # Each client connection is one open file; many hosts start containers at 1,024.
    ulimits = service(compose, "gateway")["ulimits"]
    nofile = ulimits["nofile"]
    soft = nofile["soft"] if isinstance(nofile, dict) else nofile
    assert int(soft) >= 65536
