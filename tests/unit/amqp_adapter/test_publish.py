"""Publishing: routing errors, mandatory returns, confirms, transactions, direct reply-to."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands

from gateway.amqp.spec import NOT_FOUND, NOT_IMPLEMENTED, PRECONDITION_FAILED
from gateway.core.message import Message

from .helpers import Client, connected, consume, declare, make_context


def confirm_mode(client: Client, channel: int = 1) -> None:
    client.call(channel, commands.Confirm.Select())
    client.one(commands.Confirm.SelectOk)


def test_publish_to_a_missing_exchange_closes_the_channel_only() -> None:
    client = connected(make_context())
    client.publish(1, b"x", exchange="nope", routing_key="k")
    close = client.one(commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_FOUND,
        "NOT_FOUND - no exchange 'nope' in vhost '/'",
    )
    assert (close.class_id, close.method_id) == (60, 40)
    assert not client.conn.closed


def test_publish_to_an_internal_exchange_is_refused() -> None:
    client = connected(make_context())
    client.call(
        1, commands.Exchange.Declare(exchange="inner", exchange_type="fanout", internal=True)
    )
    client.one(commands.Exchange.DeclareOk)
    client.publish(1, b"x", exchange="inner")
    close = client.one(commands.Channel.Close)
    assert (
        close.reply_text
        == "ACCESS_REFUSED - cannot publish to internal exchange 'inner' in vhost '/'"
    )


def test_immediate_is_not_implemented() -> None:
    client = connected(make_context())
    client.publish(1, b"x", routing_key="q", immediate=True)
    close = client.one(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED - immediate=true",
    )


def test_mandatory_unroutable_is_returned_before_its_confirm() -> None:
    client = connected(make_context())
    confirm_mode(client)
    props = commands.Basic.Properties(message_id="m1", headers={"h": 1})
    client.publish(1, b"lost", exchange="amq.direct", routing_key="none", properties=props,
                   mandatory=True)  # fmt: skip
    returned, ack = client.frames()
    assert isinstance(returned.method, commands.Basic.Return)
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("amq.direct", "none")
    assert returned.body == b"lost"
    assert returned.properties.message_id == "m1"
    assert isinstance(ack.method, commands.Basic.Ack)
    assert (ack.method.delivery_tag, ack.method.multiple) == (1, False)


def test_unroutable_without_mandatory_is_dropped_silently() -> None:
    client = connected(make_context())
    client.publish(1, b"lost", exchange="amq.direct", routing_key="none")
    assert client.frames() == []


def test_confirms_of_one_read_are_coalesced() -> None:
    client = connected(make_context())
    declare(client, "q")
    confirm_mode(client)
    client.send(b"".join(Client.publish_bytes(1, b"m", routing_key="q") for _ in range(5)))
    ack = client.one(commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (5, True)
    client.publish(1, b"m", routing_key="q")
    ack = client.one(commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (6, False)


def test_reject_publish_overflow_is_nacked() -> None:
    client = connected(make_context())
    declare(client, "small", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    confirm_mode(client)
    client.send(b"".join(Client.publish_bytes(1, b"m", routing_key="small") for _ in range(3)))
    frames = [f.method for f in client.frames()]
    assert [(type(m).__name__, m.delivery_tag, m.multiple) for m in frames] == [
        ("Ack", 1, False),
        ("Nack", 2, False),
        ("Nack", 3, False),
    ]
    assert frames[1].requeue is False


def test_invalid_expiration_is_a_channel_error() -> None:
    client = connected(make_context())
    props = commands.Basic.Properties(expiration="soon")
    client.publish(1, b"x", routing_key="q", properties=props)
    close = client.one(commands.Channel.Close)
    assert close.reply_code == PRECONDITION_FAILED
    assert close.reply_text == "PRECONDITION_FAILED - invalid expiration 'soon': no_integer"


def test_expiration_is_honoured() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "q")
    client.publish(1, b"x", routing_key="q", properties=commands.Basic.Properties(expiration="500"))
    client.publish(1, b"y", routing_key="q")
    context.clock.now += 1  # type: ignore[attr-defined]
    context.broker.handle_timer()
    client.call(1, commands.Basic.Get(queue="q", no_ack=True))
    assert client.frames()[0].body == b"y"


def test_user_id_must_match_the_login() -> None:
    client = connected(make_context())
    declare(client, "q")
    client.publish(1, b"ok", routing_key="q", properties=commands.Basic.Properties(user_id="guest"))
    assert client.frames() == []
    client.publish(1, b"no", routing_key="q", properties=commands.Basic.Properties(user_id="eve"))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'eve' but authenticated user was 'guest'"
    )


def test_publish_hook_sees_only_hooked_exchanges() -> None:
    seen: list[tuple[str, bytes, Any]] = []

    def hook(exchange: str, message: Message) -> None:
        seen.append(
            (exchange, message.body, (message.properties.headers or {}).get("x-mqtt-retain"))
        )

    client = connected(make_context(on_publish=hook, hooked_exchanges=frozenset({"amq.topic"})))
    retain = commands.Basic.Properties(headers={"x-mqtt-retain": True})
    client.publish(1, b"kept", exchange="amq.topic", routing_key="a.b", properties=retain)
    client.publish(1, b"other", exchange="amq.fanout", routing_key="a.b")
    assert seen == [("amq.topic", b"kept", True)]


# -- transactions ------------------------------------------------------------------------------


def test_tx_holds_publishes_and_acks_until_commit() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "q")
    client.publish(1, b"old", routing_key="q")
    client.call(1, commands.Tx.Select())
    client.one(commands.Tx.SelectOk)
    client.call(1, commands.Basic.Get(queue="q"))
    tag = client.frames()[0].method.delivery_tag
    client.call(1, commands.Basic.Ack(delivery_tag=tag))
    client.publish(1, b"new", routing_key="q")
    queue = context.broker.vhost("/").queue("q")
    assert (queue.message_count, queue.unacked_count) == (0, 1)
    client.call(1, commands.Tx.Commit())
    client.one(commands.Tx.CommitOk)
    assert (queue.message_count, queue.unacked_count) == (1, 0)


def test_tx_rollback_discards_publishes_and_restores_acks() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "q")
    client.publish(1, b"a", routing_key="q")
    client.publish(1, b"b", routing_key="q")
    client.call(1, commands.Tx.Select())
    client.frames()
    client.call(1, commands.Basic.Get(queue="q"))
    client.call(1, commands.Basic.Get(queue="q"))
    client.frames()
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    client.publish(1, b"never", routing_key="q")
    client.call(1, commands.Tx.Rollback())
    client.one(commands.Tx.RollbackOk)
    queue = context.broker.vhost("/").queue("q")
    assert (queue.message_count, queue.unacked_count) == (0, 2)
    assert list(client.handler.channels[1].unacked) == [1, 2]
    client.call(1, commands.Basic.Ack(delivery_tag=2, multiple=True))
    client.call(1, commands.Tx.Commit())
    client.one(commands.Tx.CommitOk)
    assert (queue.message_count, queue.unacked_count) == (0, 0)


def test_mandatory_return_in_a_transaction_comes_at_commit() -> None:
    client = connected(make_context())
    client.call(1, commands.Tx.Select())
    client.frames()
    client.publish(1, b"x", exchange="amq.direct", routing_key="none", mandatory=True)
    assert client.frames() == []
    client.call(1, commands.Tx.Commit())
    assert [type(m).__name__ for m in client.methods()] == ["Return", "CommitOk"]


@pytest.mark.parametrize(
    ("first", "second", "text"),
    [
        (commands.Confirm.Select(), commands.Tx.Select(), "cannot switch from confirm to tx mode"),
        (commands.Tx.Select(), commands.Confirm.Select(), "cannot switch from tx to confirm mode"),
        (None, commands.Tx.Commit(), "channel is not transactional"),
        (None, commands.Tx.Rollback(), "channel is not transactional"),
    ],
)
def test_tx_and_confirm_preconditions(first: Any, second: Any, text: str) -> None:
    client = connected(make_context())
    if first is not None:
        client.call(1, first)
        client.frames()
    client.call(1, second)
    close = client.one(commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (406, f"PRECONDITION_FAILED - {text}")


# -- direct reply-to ---------------------------------------------------------------------------


def test_direct_reply_to_round_trip() -> None:
    context = make_context()
    requester = connected(context)
    server = connected(context)
    declare(server, "rpc")
    consume(server, "rpc", no_ack=True)
    tag = consume(requester, "amq.rabbitmq.reply-to", no_ack=True)
    props = commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to", correlation_id="42")
    requester.publish(1, b"ping", routing_key="rpc", properties=props)
    [request] = server.frames()
    reply_to = request.properties.reply_to
    assert reply_to.startswith("amq.rabbitmq.reply-to.")
    assert request.properties.correlation_id == "42"
    # The address is a passive-declarable pseudo-queue while its consumer lives.
    server.call(1, commands.Queue.Declare(queue=reply_to, passive=True))
    assert server.one(commands.Queue.DeclareOk).consumer_count == 1
    reply = commands.Basic.Properties(correlation_id="42")
    server.publish(1, b"pong", routing_key=reply_to, properties=reply, mandatory=True)
    assert server.frames() == []  # routed: no basic.return
    [frame] = requester.frames()
    assert isinstance(frame.method, commands.Basic.Deliver)
    assert (frame.method.consumer_tag, frame.body) == (tag, b"pong")
    assert frame.method.routing_key == reply_to
    # Once the requester's channel is gone, replies are unroutable.
    requester.call(1, commands.Channel.Close(200, "bye", 0, 0))
    requester.frames()
    server.publish(1, b"late", routing_key=reply_to, mandatory=True)
    assert isinstance(server.frames()[0].method, commands.Basic.Return)


def test_direct_reply_to_rules() -> None:
    client = connected(make_context())
    props = commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to")
    client.publish(1, b"x", routing_key="q", properties=props)
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)
    client.call(1, commands.Basic.Consume(queue="amq.rabbitmq.reply-to", no_ack=False))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)
    consume(client, "amq.rabbitmq.reply-to", no_ack=True)
    client.call(1, commands.Basic.Consume(queue="amq.rabbitmq.reply-to", no_ack=True))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "PRECONDITION_FAILED - reply consumer already set"


def test_closing_a_channel_requeues_acks_held_by_its_transaction() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "q")
    client.publish(1, b"a", routing_key="q")
    client.call(1, commands.Tx.Select())
    client.call(1, commands.Basic.Get(queue="q"))
    client.frames()
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    client.call(1, commands.Channel.Close(200, "", 0, 0))
    client.one(commands.Channel.CloseOk)
    queue = context.broker.vhost("/").queue("q")
    assert (queue.message_count, queue.unacked_count) == (1, 0)


def test_commit_after_the_exchange_went_away_returns_mandatory_publishes() -> None:
    client = connected(make_context())
    client.call(1, commands.Exchange.Declare(exchange="brief", exchange_type="fanout"))
    client.call(1, commands.Tx.Select())
    client.frames()
    client.publish(1, b"x", exchange="brief", mandatory=True)
    client.call(1, commands.Exchange.Delete(exchange="brief"))
    client.one(commands.Exchange.DeleteOk)
    client.call(1, commands.Tx.Commit())
    assert [type(m).__name__ for m in client.methods()] == ["Return", "CommitOk"]


# -- publishes of one read (one ContentReceived event) ------------------------------------------


def test_an_error_in_a_burst_drops_the_rest_of_that_channel_only() -> None:
    client = connected(make_context())
    client.open_channel(2)
    declare(client, "q")
    confirm_mode(client)
    burst = b"".join(
        (
            Client.publish_bytes(1, b"1", routing_key="q"),
            Client.publish_bytes(1, b"2", exchange="nope", routing_key="q"),  # 404
            Client.publish_bytes(1, b"3", routing_key="q"),  # after the channel.close: dropped
            Client.publish_bytes(2, b"4", routing_key="q"),
        )
    )
    client.send(burst)
    frames = client.frames()
    # The confirm of the publish before the error goes out before the channel.close.
    assert [(f.channel, type(f.method).__name__) for f in frames] == [
        (1, "Ack"),
        (1, "Close"),
    ]
    assert frames[1].method.reply_code == NOT_FOUND
    queue = client.context.broker.vhost("/").queue("q")
    assert [e.message.body for e in queue.ready_entries()] == [b"1", b"4"]


def test_a_burst_mixes_plain_and_checked_publishes_in_order() -> None:
    client = connected(make_context())
    declare(client, "q")
    confirm_mode(client)
    ttl = commands.Basic.Properties(expiration="60000")
    persistent = commands.Basic.Properties(delivery_mode=2)
    client.send(
        b"".join(
            (
                Client.publish_bytes(1, b"plain", routing_key="q"),
                Client.publish_bytes(1, b"ttl", routing_key="q", properties=ttl),
                Client.publish_bytes(1, b"persistent", routing_key="q", properties=persistent),
                Client.publish_bytes(1, b"lost", routing_key="none", mandatory=True),
            )
        )
    )
    frames = client.frames()
    assert [type(f.method).__name__ for f in frames] == ["Return", "Ack"]
    assert (frames[1].method.delivery_tag, frames[1].method.multiple) == (4, True)
    entries = client.context.broker.vhost("/").queue("q").ready_entries()
    assert [e.message.body for e in entries] == [b"plain", b"ttl", b"persistent"]
    assert [e.message.persistent for e in entries] == [False, False, True]
    assert entries[1].expires_at is not None
    assert entries[0].expires_at is None
