"""Declarations and lifetimes: exclusive and auto-delete queues, channel close, server cancel."""

from __future__ import annotations

from pamqp import commands

from gateway.amqp.spec import NOT_FOUND, RESOURCE_LOCKED

from .helpers import Client, connected, consume, declare, make_context, unchecked


def bodies(client: Client) -> list[bytes]:
    return [frame.body for frame in client.frames()]


def test_channel_close_requeues_unacked_in_original_order() -> None:
    context = make_context()
    first = connected(context)
    declare(first, "q")
    for i in range(4):
        first.publish(1, str(i).encode(), routing_key="q")
    first.open_channel(2)
    consume(first, "q", channel=2)
    assert bodies(first) == [b"0", b"1", b"2", b"3"]
    first.call(2, commands.Basic.Ack(delivery_tag=2))
    first.call(2, commands.Channel.Close(200, "", 0, 0))
    first.one(commands.Channel.CloseOk)
    second = connected(context)
    consume(second, "q")
    frames = second.frames()
    assert [(f.body, f.method.redelivered) for f in frames] == [
        (b"0", True),
        (b"2", True),
        (b"3", True),
    ]


def test_exclusive_queue_belongs_to_its_connection() -> None:
    context = make_context()
    owner = connected(context)
    name = declare(owner, "", exclusive=True)
    assert name.startswith("amq.gen-")
    other = connected(context)
    other.call(1, commands.Queue.Declare(queue=name, passive=True))
    close = other.one(commands.Channel.Close)
    assert close.reply_code == RESOURCE_LOCKED
    assert close.reply_text.startswith(
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}'"
    )
    owner.call(0, commands.Connection.Close(200, "bye", 0, 0))
    owner.one(commands.Connection.CloseOk)
    assert name not in {q.name for q in context.broker.vhost("/").queues()}


def test_connection_lost_deletes_exclusive_queues_and_requeues() -> None:
    context = make_context()
    owner = connected(context)
    exclusive = declare(owner, "", exclusive=True)
    declare(owner, "shared")
    owner.publish(1, b"m", routing_key="shared")
    consume(owner, "shared")
    owner.frames()
    owner.handler.connection_lost()
    vhost = context.broker.vhost("/")
    assert exclusive not in {q.name for q in vhost.queues()}
    shared = vhost.queue("shared")
    assert (shared.message_count, shared.unacked_count, shared.consumer_count) == (1, 0, 0)


def test_auto_delete_queue_goes_with_its_last_consumer() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "temp", auto_delete=True)
    tag = consume(client, "temp")
    client.call(1, commands.Basic.Cancel(consumer_tag=tag))
    client.one(commands.Basic.CancelOk)
    assert "temp" not in {q.name for q in context.broker.vhost("/").queues()}


def test_queue_deleted_elsewhere_cancels_consumers_that_asked_to_know() -> None:
    context = make_context()
    notified = connected(context)
    silent = connected(context, capabilities={})
    declare(notified, "q")
    tag = consume(notified, "q")
    consume(silent, "q")
    admin = connected(context)
    admin.call(1, commands.Queue.Delete(queue="q"))
    assert admin.one(commands.Queue.DeleteOk).message_count == 0
    cancel = notified.one(commands.Basic.Cancel)
    assert (cancel.consumer_tag, cancel.nowait) == (tag, True)
    assert silent.frames() == []
    assert notified.handler.channels[1].consumers == {}
    # The consumer is gone: cancelling it now is an unknown tag, answered all the same.
    notified.call(1, commands.Basic.Cancel(consumer_tag=tag))
    notified.one(commands.Basic.CancelOk)


def test_passive_declare_of_a_missing_queue_closes_only_the_channel() -> None:
    client = connected(make_context())
    client.open_channel(2)
    client.call(1, commands.Queue.Declare(queue="ghost", passive=True))
    close = client.one(commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_FOUND,
        "NOT_FOUND - no queue 'ghost' in vhost '/'",
    )
    assert (close.class_id, close.method_id) == (50, 10)
    # Frames for the closing channel are dropped until close-ok; channel 2 still works.
    client.call(1, commands.Queue.Declare(queue="x"))
    client.call(2, commands.Queue.Declare(queue="x"))
    frames = client.frames()
    assert [(f.channel, type(f.method).__name__) for f in frames] == [(2, "DeclareOk")]
    client.call(2, commands.Exchange.Declare(exchange="ghost-x", passive=True))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "NOT_FOUND - no exchange 'ghost-x' in vhost '/'"


def test_empty_queue_name_means_the_last_declared_queue() -> None:
    client = connected(make_context())
    client.call(1, commands.Basic.Get(queue=""))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "NOT_FOUND - no previously declared queue"
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)
    name = declare(client, "")
    # Empty queue and routing key: bind the last queue with its own name as the key.
    client.call(1, commands.Queue.Bind(queue="", exchange="amq.direct", routing_key=""))
    client.one(commands.Queue.BindOk)
    client.publish(1, b"x", exchange="amq.direct", routing_key=name)
    client.call(1, commands.Basic.Get(queue="", no_ack=True))
    assert bodies(client) == [b"x"]


def test_exchange_to_exchange_binding_and_unbinding() -> None:
    client = connected(make_context())
    client.call(1, commands.Exchange.Declare(exchange="src", exchange_type="topic"))
    client.call(1, commands.Exchange.Declare(exchange="dst", exchange_type="fanout", nowait=True))
    client.call(1, commands.Exchange.Bind(destination="dst", source="src", routing_key="a.#"))
    declare_frames = client.methods()
    assert [type(m).__name__ for m in declare_frames] == ["DeclareOk", "BindOk"]
    declare(client, "q")
    client.call(1, commands.Queue.Bind(queue="q", exchange="dst", nowait=True))
    client.publish(1, b"in", exchange="src", routing_key="a.b")
    client.publish(1, b"out", exchange="src", routing_key="b.a")
    client.call(1, commands.Exchange.Unbind(destination="dst", source="src", routing_key="a.#"))
    client.one(commands.Exchange.UnbindOk)
    client.publish(1, b"after", exchange="src", routing_key="a.b")
    client.call(1, commands.Queue.Purge(queue="q"))
    assert client.one(commands.Queue.PurgeOk).message_count == 1
    client.call(1, commands.Exchange.Delete(exchange="src"))
    client.one(commands.Exchange.DeleteOk)
    client.call(1, commands.Queue.Unbind(queue="q", exchange="dst"))
    client.one(commands.Queue.UnbindOk)


def test_queue_delete_conditions() -> None:
    client = connected(make_context())
    declare(client, "q")
    client.publish(1, b"x", routing_key="q")
    client.call(1, commands.Queue.Delete(queue="q", if_empty=True))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty"
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)
    client.call(1, commands.Queue.Delete(queue="q"))
    assert client.one(commands.Queue.DeleteOk).message_count == 1
    client.call(1, commands.Queue.Delete(queue="q"))
    assert client.one(commands.Queue.DeleteOk).message_count == 0


def test_queue_names_outside_pamqp_pattern_are_fine() -> None:
    client = connected(make_context())
    name = "queue with ü and |pipes|"
    client.call(1, unchecked(commands.Queue.Declare, queue=name))
    assert client.one(commands.Queue.DeclareOk).queue == name
    client.publish(1, b"x", routing_key=name)
    client.call(1, unchecked(commands.Basic.Get, queue=name, no_ack=True))
    assert bodies(client) == [b"x"]


def test_declare_equivalence_error_text() -> None:
    client = connected(make_context())
    declare(client, "q", durable=True)
    client.call(1, commands.Queue.Declare(queue="q", durable=False))
    close = client.one(commands.Channel.Close)
    assert close.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
        "received 'false' but current is 'true'"
    )


def test_unbinding_what_is_gone_succeeds() -> None:
    # RabbitMQ since 3.2: exchange.unbind and queue.unbind never fail with not-found.
    client = connected(make_context())
    declare(client, "q")
    client.call(1, commands.Queue.Unbind(queue="q", exchange="no-such-exchange", routing_key="k"))
    client.one(commands.Queue.UnbindOk)
    client.call(1, commands.Queue.Unbind(queue="no-such-queue", exchange="amq.direct"))
    client.one(commands.Queue.UnbindOk)
    client.call(1, commands.Exchange.Unbind(destination="gone", source="amq.topic"))
    client.one(commands.Exchange.UnbindOk)
