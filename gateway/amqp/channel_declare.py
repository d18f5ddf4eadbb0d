"""Exchange and queue methods: declare, delete, bind, unbind, purge.

The core does the work and raises RabbitMQ's errors; this module maps arguments, applies the
channel's shortcuts (the empty queue name is the last declared queue) and answers unless the
client asked for nowait. Exclusive queues belong to the connection (its handler object).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pamqp.commands import Exchange, Queue

from gateway.amqp.channel_consume import REPLY_TO_PREFIX, REPLY_TO_QUEUE, expand_queue_name
from gateway.core.errors import NotFound, resource

if TYPE_CHECKING:
    from gateway.amqp.channel import AmqpChannel


class _DeclareOk(Queue.DeclareOk):
    # pamqp checks queue names against a narrower pattern than RabbitMQ (and the core) accept.
    def validate(self) -> None:
        pass


# -- exchanges ---------------------------------------------------------------------------------


def exchange_declare(ch: AmqpChannel, method: Exchange.Declare) -> None:
    ch.vhost.declare_exchange(
        method.exchange,
        method.exchange_type,
        durable=method.durable,
        auto_delete=method.auto_delete,
        internal=method.internal,
        arguments=method.arguments or {},
        passive=method.passive,
    )
    if not method.nowait:
        ch.send(Exchange.DeclareOk())


def exchange_delete(ch: AmqpChannel, method: Exchange.Delete) -> None:
    ch.vhost.delete_exchange(method.exchange, if_unused=method.if_unused)
    if not method.nowait:
        ch.send(Exchange.DeleteOk())


def exchange_bind(ch: AmqpChannel, method: Exchange.Bind) -> None:
    ch.vhost.bind_exchange(
        method.destination, method.source, method.routing_key, method.arguments or {}
    )
    if not method.nowait:
        ch.send(Exchange.BindOk())


def exchange_unbind(ch: AmqpChannel, method: Exchange.Unbind) -> None:
    # As RabbitMQ since 3.2: unbinding from or to something that is gone succeeds.
    with contextlib.suppress(NotFound):
        ch.vhost.unbind_exchange(
            method.destination, method.source, method.routing_key, method.arguments or {}
        )
    if not method.nowait:
        ch.send(Exchange.UnbindOk())


# -- queues ------------------------------------------------------------------------------------


def _declare_reply_to(ch: AmqpChannel, name: str) -> tuple[int, int]:
    """Declaring the direct reply-to pseudo-queue is always a passive check (RabbitMQ)."""
    if name == REPLY_TO_QUEUE:
        return 0, 1
    token = name[len(REPLY_TO_PREFIX) :]
    if name.startswith(REPLY_TO_PREFIX) and token in ch.context.reply_channels:
        return 0, 1
    raise NotFound(f"no {resource('queue', name, ch.vhost.name)}")


def queue_declare(ch: AmqpChannel, method: Queue.Declare) -> None:
    name = method.queue
    if name.startswith(REPLY_TO_QUEUE):
        messages, consumers = _declare_reply_to(ch, name)
    else:
        ok = ch.vhost.declare_queue(
            name,
            durable=method.durable,
            exclusive=method.exclusive,
            auto_delete=method.auto_delete,
            arguments=method.arguments or {},
            passive=method.passive,
            owner=ch.handler,
        )
        name, messages, consumers = ok.queue_name, ok.message_count, ok.consumer_count
    ch.last_queue = name
    if not method.nowait:
        ch.send(_DeclareOk(name, messages, consumers))


def queue_bind(ch: AmqpChannel, method: Queue.Bind) -> None:
    queue = expand_queue_name(ch, method.queue)
    # With the queue shortcut, an empty routing key means the queue's name too.
    routing_key = method.routing_key or ("" if method.queue else queue)
    ch.vhost.bind_queue(
        queue, method.exchange, routing_key, method.arguments or {}, owner=ch.handler
    )
    if not method.nowait:
        ch.send(Queue.BindOk())


def queue_unbind(ch: AmqpChannel, method: Queue.Unbind) -> None:
    queue = expand_queue_name(ch, method.queue)
    routing_key = method.routing_key or ("" if method.queue else queue)
    with contextlib.suppress(NotFound):  # idempotent, as exchange.unbind
        ch.vhost.unbind_queue(
            queue, method.exchange, routing_key, method.arguments or {}, owner=ch.handler
        )
    ch.send(Queue.UnbindOk())


def queue_purge(ch: AmqpChannel, method: Queue.Purge) -> None:
    count = ch.vhost.purge_queue(expand_queue_name(ch, method.queue), owner=ch.handler)
    if not method.nowait:
        ch.send(Queue.PurgeOk(count))


def queue_delete(ch: AmqpChannel, method: Queue.Delete) -> None:
    count = ch.vhost.delete_queue(
        expand_queue_name(ch, method.queue),
        if_unused=method.if_unused,
        if_empty=method.if_empty,
        owner=ch.handler,
    )
    if not method.nowait:
        ch.send(Queue.DeleteOk(count))
