"""kombu (py-amqp underneath) and a real Celery worker against the gateway, unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu import Connection, Exchange, Queue

from tests.gateway_runner import RunningGateway

pytestmark = pytest.mark.interop


def broker_url(gateway: RunningGateway) -> str:
    return f"amqp://guest:guest@127.0.0.1:{gateway.amqp_port}//"


def test_kombu_producer_consumer_and_simple_queue(gateway: RunningGateway) -> None:
    exchange = Exchange("kombu-tasks", type="direct", durable=True)
    bound = Queue("kombu-work", exchange, routing_key="run", durable=True)
    received: list[Any] = []
    with Connection(broker_url(gateway)) as conn:
        conn.Producer(serializer="json").publish(
            {"task": "add", "args": [2, 3]}, exchange=exchange, routing_key="run", declare=[bound]
        )
        with conn.Consumer(bound, callbacks=[lambda body, msg: (received.append(body), msg.ack())]):
            conn.drain_events(timeout=5)
        simple = conn.SimpleQueue("kombu-simple")
        simple.put({"hello": "world"})
        message = simple.get(block=True, timeout=5)
        message.ack()
        simple.close()
    assert received == [{"task": "add", "args": [2, 3]}]
    assert message.payload == {"hello": "world"}


def test_celery_worker_runs_a_task_and_returns_the_result(gateway: RunningGateway) -> None:
    app = Celery("gateway-interop", broker=broker_url(gateway), backend="rpc://")
    app.conf.broker_connection_retry_on_startup = False
    # Without remote control and heartbeats the test worker stops in about a second (with
    # them it waits ten, against RabbitMQ too).
    app.conf.worker_enable_remote_control = False
    app.conf.broker_heartbeat = 0

    @app.task  # type: ignore[misc]
    def add(x: int, y: int) -> int:
        return x + y

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        assert add.delay(2, 3).get(timeout=10) == 5
        assert add.apply_async((40, 2), countdown=0).get(timeout=10) == 42
