"""The rings of DESIGN.md section 2, enforced by scanning imports.

Every module under gateway/ gets a ring; imports may only point to the same or a lower ring,
ring 0 (codecs, protocol machines, core) may not touch I/O, clocks or logging, the core names no
protocol, and MQTT code never imports AMQP code (nor the reverse): the two meet only in bridge/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gateway"

# Ring-0 protocol modules by file name (anything else in mqtt/ and amqp/ must be classified).
RING0_PROTOCOL = re.compile(
    r"^(packets|codec\w*|properties|reason_codes|topics|connection\w*|spec|frames?\w*|fastpath\w*|"
    r"errors|methods|constants)$"
)
RING2_PROTOCOL = re.compile(r"^(session\w*|channel\w*|retained\w*|will\w*|delivery\w*|adapter\w*)$")
RING3_PROTOCOL = re.compile(r"^(listener\w*|websocket\w*|server\w*)$")

IO_MODULES = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "threading",
    "logging",
    "structlog",
    "time",
    "uvloop",
    "aiohttp",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def ring_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # gateway/__init__: the version string only
    area = parts[1]
    leaf = parts[-1]
    if area == "core":
        return 0
    if area in ("mqtt", "amqp"):
        if len(parts) == 2:
            return 0
        if RING0_PROTOCOL.match(leaf):
            return 0
        if RING2_PROTOCOL.match(leaf):
            return 2
        if RING3_PROTOCOL.match(leaf):
            return 3
        raise AssertionError(
            f"{module}: classify this module's ring in tests/unit/test_layering.py"
        )
    if area in ("bridge", "store", "tomlschema"):  # tomlschema: error wording for TOML files
        return 1
    if area in ("http", "upstream", "config", "log", "net", "net_login"):
        return 3
    if area in ("app", "cli", "__main__", "demo"):  # demo/: a client of the gateway, a leaf
        return 4
    raise AssertionError(f"{module}: classify this module's ring in tests/unit/test_layering.py")


def protocol_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("mqtt", "amqp") else None


def imports_of(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from gateway.mqtt import codec` imports gateway.mqtt.codec.
            found.extend(
                (f"{target}.{alias.name}", node.lineno)
                for alias in node.names
                if target.startswith("gateway")
            )
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    me = module_name(path)
    my_ring = ring_of(me)
    my_protocol = protocol_of(me)
    for target, line in imports_of(path):
        top = target.split(".")[0]
        if my_ring == 0 and (me.startswith("gateway.core") or my_protocol is not None):
            assert top not in IO_MODULES, f"{me}:{line} ring 0 imports {target}"
        if not target.startswith("gateway.") or not _is_module(target):
            continue
        assert ring_of(target) <= my_ring, f"{me}:{line} (ring {my_ring}) imports {target}"
        other = protocol_of(target)
        if me.startswith("gateway.core"):
            assert other is None, f"{me}:{line} core imports protocol code {target}"
            assert not target.startswith(("gateway.bridge", "gateway.store")), (
                f"{me}:{line} core imports {target}"
            )
        if my_protocol and other and other != my_protocol:
            raise AssertionError(f"{me}:{line} {my_protocol} code imports {other} code {target}")


def test_every_module_is_classified() -> None:
    for path in MODULES:
        ring_of(module_name(path))
