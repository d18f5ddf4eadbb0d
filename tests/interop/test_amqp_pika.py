"""pika (BlockingConnection) against the gateway: the RabbitMQ tutorial patterns and the
features clients lean on (confirms, returns, get, DLX, TTL, limits, lifetimes, tx, direct
reply-to, heartbeats, cancel notification, connection.blocked)."""

from __future__ import annotations

import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import trustme
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tests.gateway_runner import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

TIMEOUT = 5.0


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


Connect = Callable[..., BlockingConnection]


@pytest.fixture
def connect(gateway: RunningGateway) -> Iterator[Connect]:
    opened: list[BlockingConnection] = []

    def factory(**params: Any) -> BlockingConnection:
        params.setdefault("blocked_connection_timeout", None)
        connection = BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", gateway.amqp_port, **params)
        )
        opened.append(connection)
        return connection

    yield factory
    for connection in opened:
        if connection.is_open:
            connection.close()


def receive(channel: BlockingChannel, queue: str, count: int, **kwargs: Any) -> list[Any]:
    """``count`` deliveries from ``queue`` as (method, properties, body); acks unless no-ack."""
    got: list[Any] = []
    auto_ack = kwargs.get("auto_ack", False)
    for method, props, body in channel.consume(queue, inactivity_timeout=TIMEOUT, **kwargs):
        assert method is not None, f"only {len(got)} of {count} messages arrived"
        got.append((method, props, body))
        if not auto_ack:
            channel.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    channel.cancel()
    return got


# -- the tutorials -----------------------------------------------------------------------------


def test_tutorial_1_hello_world(connect: Connect) -> None:
    channel = connect().channel()
    queue = uid("hello")
    channel.queue_declare(queue, auto_delete=True)
    channel.basic_publish("", queue, b"Hello World!")
    [(_, _, body)] = receive(channel, queue, 1, auto_ack=True)
    assert body == b"Hello World!"


def test_tutorial_2_work_queue_with_acks_and_prefetch(connect: Connect) -> None:
    queue = uid("task_queue")
    producer = connect().channel()
    producer.queue_declare(queue, durable=True)
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    for i in range(6):
        producer.basic_publish("", queue, f"task {i}".encode(), properties)

    # A worker that takes one task (prefetch 1) and dies without acking it...
    crashed = connect()
    crashing = crashed.channel()
    crashing.basic_qos(prefetch_count=1)
    _, _, body = next(crashing.consume(queue, inactivity_timeout=TIMEOUT))
    assert body == b"task 0"
    assert producer.queue_declare(queue, passive=True).method.message_count == 5
    crashed.close()
    # ...and a healthy worker gets everything, the lost task redelivered first.
    worker = connect().channel()
    worker.basic_qos(prefetch_count=1)
    got = receive(worker, queue, 6)
    assert [b for _, _, b in got] == [f"task {i}".encode() for i in range(6)]
    assert got[0][0].redelivered
    assert not got[1][0].redelivered
    assert all(p.delivery_mode == 2 for _, p, _ in got)
    producer.queue_delete(queue)


def test_tutorial_3_fanout_with_exclusive_server_named_queues(connect: Connect) -> None:
    exchange = uid("logs")
    publisher = connect().channel()
    publisher.exchange_declare(exchange, "fanout")
    subscribers = []
    for _ in range(2):
        connection = connect()
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        assert queue.startswith("amq.gen-")
        channel.queue_bind(queue, exchange)
        subscribers.append((connection, channel, queue))
    publisher.basic_publish(exchange, "", b"log line")
    for _, channel, queue in subscribers:
        [(_, _, body)] = receive(channel, queue, 1, auto_ack=True)
        assert body == b"log line"
    # Exclusive queues go with their connection.
    connection, _, queue = subscribers[0]
    connection.close()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        publisher.queue_declare(queue, passive=True)
    assert err.value.reply_code == 404


def test_tutorial_4_direct_routing(connect: Connect) -> None:
    exchange = uid("direct_logs")
    channel = connect().channel()
    channel.exchange_declare(exchange, "direct")
    errors = channel.queue_declare("", exclusive=True).method.queue
    everything = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(errors, exchange, "error")
    for severity in ("info", "warning", "error"):
        channel.queue_bind(everything, exchange, severity)
    for severity in ("info", "warning", "error", "debug"):
        channel.basic_publish(exchange, severity, severity.encode())
    assert [b for _, _, b in receive(channel, errors, 1)] == [b"error"]
    assert [b for _, _, b in receive(channel, everything, 3)] == [b"info", b"warning", b"error"]
    assert channel.queue_declare(errors, passive=True).method.message_count == 0


def test_tutorial_5_topic_routing(connect: Connect) -> None:
    exchange = uid("topic_logs")
    channel = connect().channel()
    channel.exchange_declare(exchange, "topic")
    users = channel.queue_declare("", exclusive=True).method.queue
    errors = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(users, exchange, "user.*")
    channel.queue_bind(errors, exchange, "*.error")
    for key in ("user.login", "user.error", "kern.error", "user.login.failed"):
        channel.basic_publish(exchange, key, key.encode())
    assert [b for _, _, b in receive(channel, users, 2)] == [b"user.login", b"user.error"]
    assert [m.routing_key for m, _, _ in receive(channel, errors, 2)] == [
        "user.error",
        "kern.error",
    ]
    assert channel.queue_declare(users, passive=True).method.message_count == 0


def test_tutorial_6_rpc_with_reply_to_and_correlation_id(connect: Connect) -> None:
    rpc_queue = uid("rpc_queue")
    server = connect().channel()
    server.queue_declare(rpc_queue, auto_delete=True)
    server.basic_qos(prefetch_count=1)

    def on_request(ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        n = int(body)
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        reply = pika.BasicProperties(correlation_id=props.correlation_id)
        ch.basic_publish("", props.reply_to, str(a).encode(), reply)
        ch.basic_ack(method.delivery_tag)

    server.basic_consume(rpc_queue, on_request)
    client_connection = connect()
    client = client_connection.channel()
    callback_queue = client.queue_declare("", exclusive=True).method.queue
    correlation_id = uid("corr")
    client.basic_publish(
        "",
        rpc_queue,
        b"30",
        pika.BasicProperties(reply_to=callback_queue, correlation_id=correlation_id),
    )
    server.connection.process_data_events(time_limit=0.2)
    [(_, props, body)] = receive(client, callback_queue, 1)
    assert (props.correlation_id, body) == (correlation_id, b"832040")


# -- publishing --------------------------------------------------------------------------------


def test_confirms_and_mandatory_returns(connect: Connect) -> None:
    channel = connect().channel()
    channel.confirm_delivery()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for i in range(20):
        channel.basic_publish("", queue, str(i).encode())  # each waits for its confirm
    assert channel.queue_declare(queue, passive=True).method.message_count == 20
    with pytest.raises(pika.exceptions.UnroutableError) as err:
        channel.basic_publish("amq.direct", uid("nobody"), b"lost", mandatory=True)
    [returned] = err.value.messages
    assert returned.method.reply_code == 312
    assert returned.body == b"lost"


def test_reject_publish_overflow_is_nacked(connect: Connect) -> None:
    channel = connect().channel()
    channel.confirm_delivery()
    queue = channel.queue_declare(
        "", exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    ).method.queue
    channel.basic_publish("", queue, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"overflows")


def test_basic_get(connect: Connect) -> None:
    channel = connect().channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert channel.basic_get(queue) == (None, None, None)
    channel.basic_publish("", queue, b"a", pika.BasicProperties(headers={"n": 1}))
    channel.basic_publish("", queue, b"b")
    method, props, body = channel.basic_get(queue)
    assert (body, method.message_count, props.headers) == (b"a", 1, {"n": 1})
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"a", True)


def test_reject_and_nack_go_to_the_dead_letter_exchange(connect: Connect) -> None:
    channel = connect().channel()
    dead = channel.queue_declare("", exclusive=True).method.queue
    work = channel.queue_declare(
        "",
        exclusive=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    ).method.queue
    channel.basic_publish("", work, b"rejected")
    channel.basic_publish("", work, b"nacked")
    first, _, _ = channel.basic_get(work)
    second, _, _ = channel.basic_get(work)
    channel.basic_reject(first.delivery_tag, requeue=False)
    channel.basic_nack(second.delivery_tag, requeue=False)
    got = receive(channel, dead, 2)
    assert [b for _, _, b in got] == [b"rejected", b"nacked"]
    death = got[0][1].headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", work, 1)


def test_ttl_per_queue_and_per_message(connect: Connect) -> None:
    channel = connect().channel()
    expired = channel.queue_declare("", exclusive=True).method.queue
    queue = channel.queue_declare(
        "",
        exclusive=True,
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": expired,
        },
    ).method.queue
    channel.basic_publish("", queue, b"short", pika.BasicProperties(expiration="0"))
    channel.basic_publish("", queue, b"queue-ttl")
    got = receive(channel, expired, 2)
    assert sorted(b for _, _, b in got) == [b"queue-ttl", b"short"]
    assert all(p.headers["x-death"][0]["reason"] == "expired" for _, p, _ in got)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_max_length_drops_the_head(connect: Connect) -> None:
    channel = connect().channel()
    queue = channel.queue_declare("", exclusive=True, arguments={"x-max-length": 2}).method.queue
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)
    assert [b for _, _, b in receive(channel, queue, 2)] == [b"2", b"3"]


def test_message_larger_than_frame_max(connect: Connect) -> None:
    channel = connect(frame_max=8192).channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    body = bytes(range(256)) * 4096  # 1 MiB
    channel.basic_publish("", queue, body)
    [(_, _, received)] = receive(channel, queue, 1)
    assert received == body


def test_transactions(connect: Connect) -> None:
    channel = connect().channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.tx_select()
    channel.basic_publish("", queue, b"rolled back")
    channel.tx_rollback()
    channel.basic_publish("", queue, b"committed")
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    channel.tx_commit()
    assert channel.queue_declare(queue, passive=True).method.message_count == 1
    method, _, body = channel.basic_get(queue)
    assert body == b"committed"
    channel.basic_ack(method.delivery_tag)
    channel.tx_rollback()  # the ack is undone: the message is unacked again
    channel.tx_commit()
    channel.basic_recover(requeue=True)
    assert channel.queue_declare(queue, passive=True).method.message_count == 1


def test_direct_reply_to_rpc(connect: Connect) -> None:
    rpc_queue = uid("rpc")
    server = connect().channel()
    server.queue_declare(rpc_queue, auto_delete=True)

    def on_request(ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
        reply = pika.BasicProperties(correlation_id=props.correlation_id)
        ch.basic_publish("", props.reply_to, body.upper(), reply)

    server.basic_consume(rpc_queue, on_request, auto_ack=True)
    client = connect().channel()
    replies: list[tuple[str, bytes]] = []
    client.basic_consume(
        "amq.rabbitmq.reply-to",
        lambda _ch, _m, props, body: replies.append((props.correlation_id, body)),
        auto_ack=True,
    )
    client.basic_publish(
        "",
        rpc_queue,
        b"ping",
        pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c1"),
    )
    for _ in range(50):
        server.connection.process_data_events(time_limit=0.01)
        client.connection.process_data_events(time_limit=0.05)
        if replies:
            break
    assert replies == [("c1", b"PING")]


# -- errors and lifetimes ----------------------------------------------------------------------


def test_passive_declare_404_closes_the_channel_not_the_connection(connect: Connect) -> None:
    connection = connect()
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_declare(uid("missing"), passive=True)
    assert err.value.reply_code == 404
    assert "NOT_FOUND - no queue" in err.value.reply_text
    assert connection.is_open
    other = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        other.exchange_declare(uid("missing-x"), passive=True)
    assert err.value.reply_code == 404
    assert connection.channel().queue_declare("", exclusive=True).method.queue


def test_exclusive_queue_is_locked_to_its_connection(connect: Connect) -> None:
    owner = connect().channel()
    queue = owner.queue_declare("", exclusive=True).method.queue
    other = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        other.basic_consume(queue, lambda *_: None)
    assert err.value.reply_code == 405


def test_auto_delete_queue_goes_with_its_last_consumer(connect: Connect) -> None:
    channel = connect().channel()
    queue = uid("auto")
    channel.queue_declare(queue, auto_delete=True)
    tag = channel.basic_consume(queue, lambda *_: None)
    channel.basic_cancel(tag)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        channel.queue_declare(queue, passive=True)
    assert err.value.reply_code == 404


def test_consumer_cancel_notification(connect: Connect) -> None:
    queue = uid("doomed")
    consumer = connect()
    channel = consumer.channel()
    channel.queue_declare(queue)
    cancelled: list[Any] = []
    channel.add_on_cancel_callback(cancelled.append)
    channel.basic_consume(queue, lambda *_: None)
    connect().channel().queue_delete(queue)
    for _ in range(50):
        consumer.process_data_events(time_limit=0.05)
        if cancelled:
            break
    assert len(cancelled) == 1
    assert consumer.is_open


def test_short_heartbeat_keeps_the_connection_up(connect: Connect) -> None:
    connection = connect(heartbeat=1)
    channel = connection.channel()
    # Idle for three heartbeat intervals: both sides keep beating, nobody drops.
    connection.process_data_events(time_limit=3)
    assert connection.is_open
    assert channel.queue_declare("", exclusive=True).method.queue


def test_connection_blocked_by_the_memory_limit() -> None:
    with running_gateway(memory_limit=64 * 1024) as gateway:
        params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port)
        admin = BlockingConnection(params)
        publisher = BlockingConnection(params)
        try:
            events: list[str] = []
            publisher.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
            publisher.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
            admin_channel = admin.channel()
            queue = admin_channel.queue_declare("", exclusive=True).method.queue
            channel = publisher.channel()
            for _ in range(4):
                channel.basic_publish("", queue, b"x" * 32 * 1024)
            for _ in range(100):
                publisher.process_data_events(time_limit=0.02)
                if events:
                    break
            assert events == ["blocked"]
            # The admin connection never published: it is not blocked and can drain.
            admin_channel.queue_purge(queue)
            for _ in range(100):
                publisher.process_data_events(time_limit=0.02)
                if len(events) == 2:
                    break
            assert events == ["blocked", "unblocked"]
            channel.queue_declare("", exclusive=True)  # reading resumed
        finally:
            for connection in (publisher, admin):
                if connection.is_open:
                    connection.close()


def test_many_consumers_share_a_queue_round_robin(connect: Connect) -> None:
    queue = uid("shared")
    producer = connect().channel()
    producer.queue_declare(queue, auto_delete=True)
    received: dict[int, list[bytes]] = {0: [], 1: []}
    lock = threading.Lock()
    consumers = []
    for index in (0, 1):
        channel = connect().channel()
        channel.basic_qos(prefetch_count=1)

        def on_message(
            ch: BlockingChannel, method: Any, _p: Any, body: bytes, i: int = index
        ) -> None:
            with lock:
                received[i].append(body)
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(queue, on_message)
        consumers.append(channel)
    for i in range(10):
        producer.basic_publish("", queue, str(i).encode())
    for _ in range(100):
        for channel in consumers:
            channel.connection.process_data_events(time_limit=0.01)
        if len(received[0]) + len(received[1]) == 10:
            break
    assert sorted(received[0] + received[1], key=int) == [str(i).encode() for i in range(10)]
    assert received[0]
    assert received[1]


def test_amqps_listener_with_tls(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    tls = {"certfile": str(cert), "keyfile": str(key)}
    with running_gateway(tls=tls) as gateway:
        context = ssl.create_default_context()
        authority.configure_trust(context)
        params = pika.ConnectionParameters(
            "127.0.0.1", gateway.ports["amqps"], ssl_options=pika.SSLOptions(context)
        )
        connection = BlockingConnection(params)
        try:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("", queue, b"over tls")
            method, _, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None
            assert body == b"over tls"
        finally:
            connection.close()
