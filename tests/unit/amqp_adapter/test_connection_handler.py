"""The connection-level adapter: login, virtual hosts, limits, blocking, shutdown, hard errors."""

from __future__ import annotations

from pamqp import commands

from gateway.amqp.channel_context import PRODUCT
from gateway.amqp.spec import CONNECTION_FORCED, NOT_ALLOWED
from gateway.core.users import User, hash_password

from .helpers import FAST_HASH, Client, connected, declare, make_context


def test_server_properties_announce_product_and_capabilities() -> None:
    client = Client(make_context())
    client.send(b"AMQP\x00\x00\x09\x01")
    start = client.one(commands.Connection.Start)
    props = start.server_properties
    assert props["product"] == PRODUCT
    caps = props["capabilities"]
    for name in (
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ):
        assert caps[name] is True, name
    # Not implemented by the core, so not announced.
    assert "consumer_priorities" not in caps


def test_wrong_password_is_refused_with_403_and_the_reason_is_kept() -> None:
    client = Client(make_context())
    client.login(password="nope")
    close = client.one(commands.Connection.Close)
    assert close.reply_code == 403
    assert close.reply_text.startswith("ACCESS_REFUSED - Login was refused")
    assert client.conn.closed
    assert client.handler.refusal is not None
    assert "invalid credentials" in client.handler.refusal


def test_guest_is_refused_from_a_remote_address() -> None:
    client = Client(make_context(), peer_host="10.1.2.3")
    client.login()
    assert client.one(commands.Connection.Close).reply_code == 403
    assert client.handler.refusal is not None
    assert "localhost" in client.handler.refusal


def test_unknown_vhost_and_vhost_without_access_are_refused_with_530() -> None:
    context = make_context(
        users=[User("bob", hash_password("pw", **FAST_HASH), vhosts=frozenset({"/"}))]
    )
    context.broker.add_vhost("other")
    client = Client(context)
    client.login()
    client.one(commands.Connection.Tune)
    client.call(0, commands.Connection.TuneOk(2047, 131072, 0))
    client.call(0, commands.Connection.Open(virtual_host="missing"))
    close = client.one(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_ALLOWED,
        "NOT_ALLOWED - vhost missing not found",
    )

    bob = Client(context)
    bob.login("bob", "pw")
    bob.one(commands.Connection.Tune)
    bob.call(0, commands.Connection.TuneOk(2047, 131072, 0))
    bob.call(0, commands.Connection.Open(virtual_host="other"))
    close = bob.one(commands.Connection.Close)
    assert close.reply_code == NOT_ALLOWED
    assert close.reply_text == "NOT_ALLOWED - access to vhost 'other' refused for user 'bob'"
    assert context.connections == 0


def test_connection_limit() -> None:
    context = make_context(max_connections=1)
    first = connected(context)
    second = Client(context)
    second.login()
    second.one(commands.Connection.Tune)
    second.call(0, commands.Connection.TuneOk(2047, 131072, 0))
    second.call(0, commands.Connection.Open(virtual_host="/"))
    close = second.one(commands.Connection.Close)
    assert close.reply_code == NOT_ALLOWED
    assert "connection limit (1)" in close.reply_text
    first.handler.connection_lost()
    assert context.connections == 0
    connected(context)  # a slot is free again
    assert context.connections == 1


def test_shutdown_sends_320_and_deletes_exclusive_queues() -> None:
    context = make_context()
    client = connected(context)
    name = declare(client, exclusive=True)
    client.handler.shutdown()
    close = client.one(commands.Connection.Close)
    assert close.reply_code == CONNECTION_FORCED
    assert close.reply_text == (
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    )
    assert name not in {q.name for q in context.broker.vhost("/").queues()}
    client.call(0, commands.Connection.CloseOk())
    assert client.conn.closed


def test_hard_error_closes_the_connection_and_releases_its_resources() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "work")
    client.publish(1, b"m", routing_key="work")
    client.call(1, commands.Basic.Get(queue="work"))
    assert client.frames()[0].body == b"m"
    # A second consume with the same tag is a hard (connection) error in RabbitMQ.
    client.call(1, commands.Basic.Consume(queue="work", consumer_tag="t"))
    client.frames()
    client.call(1, commands.Basic.Consume(queue="work", consumer_tag="t"))
    close = client.one(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_ALLOWED,
        "NOT_ALLOWED - attempt to reuse consumer tag 't'",
    )
    assert (close.class_id, close.method_id) == (60, 20)
    queue = context.broker.vhost("/").queue("work")
    assert queue.consumer_count == 0
    assert queue.message_count == 1  # the basic.get delivery went back
    assert context.connections == 0


def test_server_only_method_from_the_client_is_command_invalid() -> None:
    client = connected(make_context())
    client.call(1, commands.Queue.DeclareOk(queue="x", message_count=0, consumer_count=0))
    close = client.one(commands.Connection.Close)
    assert close.reply_code == 503
    assert close.reply_text == "COMMAND_INVALID - unimplemented method"


def test_block_and_unblock_only_for_clients_with_the_capability() -> None:
    context = make_context()
    capable = connected(context)
    capable.handler.block()
    capable.handler.block()  # once only
    capable.one(commands.Connection.Blocked)
    capable.handler.unblock()
    capable.one(commands.Connection.Unblocked)

    plain = connected(context, capabilities={})
    plain.handler.block()
    assert plain.frames() == []
    assert plain.handler.blocked


def test_publishing_marks_the_connection_for_the_memory_check() -> None:
    client = connected(make_context())
    assert not client.handler.published
    client.publish(1, b"x", routing_key="nowhere")
    assert client.handler.published


def test_internal_error_closes_with_541() -> None:
    client = connected(make_context())
    client.handler.internal_error()
    close = client.one(commands.Connection.Close)
    assert close.reply_code == 541


def test_heartbeat_monitor_can_be_held_while_reading_is_paused() -> None:
    context = make_context()
    client = Client(context)
    client.open(heartbeat=1)
    conn = client.conn
    now = context.clock()
    # Blocked: the shell stops reading, so the client's heartbeats wait in the socket.
    for step in range(1, 6):
        conn.reset_heartbeat_monitor(now + step)
        assert conn.handle_timer(now + step) == []
    assert not conn.closed
    # Without the reset, two silent intervals end the connection.
    events = conn.handle_timer(now + 8)
    assert [type(e).__name__ for e in events] == ["HeartbeatTimedOut"]
    client.handler.handle_events(events)
    assert client.handler.torn_down
