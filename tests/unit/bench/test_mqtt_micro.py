"""bench/mqtt_micro.py's cases run on the real hub and check their own outcome (every message
delivered, every client answered), so a change that breaks a path fails here, not only in a
benchmark run."""

from __future__ import annotations

import pytest

from bench import mqtt_micro


@pytest.mark.parametrize("case", ["s1", "s2", "s6", "s7"])
def test_each_case_runs_and_reports_a_time(case: str) -> None:
    ns = getattr(mqtt_micro, f"run_{case}")(4000)
    assert ns > 0


def test_an_idle_connection_costs_some_python_heap_and_not_much() -> None:
    # A protocol, a machine, a decoder, a handler and a session at least; a few KiB would
    # mean something is kept per connection that should not be.
    assert 400 < mqtt_micro.idle_connection_bytes(200) < 4000
