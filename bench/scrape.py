"""The gateway's Prometheus text metrics (its HTTP API), for the bounded-memory check."""

from __future__ import annotations

import urllib.request


def gateway_metrics(port: int | None, timeout: float = 1.0) -> dict[str, float]:
    """`name{labels}` -> value from GET /metrics; empty if there is no endpoint or no answer."""
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out
