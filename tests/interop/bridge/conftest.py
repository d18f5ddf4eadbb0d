"""Fixtures of the bridge's route-named interop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_runner import RunningGateway
from tests.interop.bridge.helpers import NodeProgram, NodeRunner


@pytest.fixture
def node(gateway: RunningGateway) -> Iterator[NodeRunner]:
    """Start amqplib programs against the shared gateway; all are stopped after the test."""
    started: list[NodeProgram] = []

    def run(*args: str) -> NodeProgram:
        program = NodeProgram(gateway, *args)
        started.append(program)
        return program

    yield run
    for program in started:
        program.close()
