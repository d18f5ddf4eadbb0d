"""Configured users over AMQP with pika: login, refusal (403), vhost access (530)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from gateway.core.users import hash_password
from tests.gateway_runner import RunningGateway, running_gateway

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def with_users() -> Iterator[RunningGateway]:
    users = [
        # A cheap scrypt cost keeps the test fast; the format is what `gateway passwd` prints.
        {"name": "alice", "password_hash": hash_password("wonderland", n=16), "vhosts": ["/"]},
        {"name": "bob", "password_hash": hash_password("builder", n=16), "vhosts": ["site"]},
    ]
    with running_gateway(users=users, vhosts=["/", "site"]) as running:
        yield running


def connect(gateway: RunningGateway, user: str, password: str, vhost: str = "/") -> Any:
    params = pika.ConnectionParameters(
        "127.0.0.1", gateway.amqp_port, vhost, pika.PlainCredentials(user, password)
    )
    return pika.BlockingConnection(params)


def test_configured_user_logs_in_and_works(with_users: RunningGateway) -> None:
    connection = connect(with_users, "alice", "wonderland")
    try:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", name, b"hi")
        method, _, body = channel.basic_get(name, auto_ack=True)
        assert method is not None
        assert body == b"hi"
    finally:
        connection.close()


def test_wrong_password_is_refused(with_users: RunningGateway) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect(with_users, "alice", "looking-glass")
    assert "ACCESS_REFUSED" in str(info.value)


def test_vhost_outside_the_users_list_is_refused(with_users: RunningGateway) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(with_users, "bob", "builder", vhost="/")
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'bob'\"" in str(info.value)
    connection = connect(with_users, "bob", "builder", vhost="site")
    assert connection.is_open
    connection.close()
