from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_runner import RunningGateway, running_gateway


@pytest.fixture(scope="session")
def gateway() -> Iterator[RunningGateway]:
    """One gateway for the whole run; tests isolate themselves by client ids and topics."""
    with running_gateway() as running:
        yield running
