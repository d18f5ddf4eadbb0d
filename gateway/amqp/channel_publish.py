"""Publishing on a channel: basic.publish, mandatory returns, direct reply-to, publisher
confirms and transactions.

A publish becomes a core ``Message`` that keeps the raw property bytes: only the delivery mode
and expiration are read from them (without decoding the headers), unless a property the
broker must check or rewrite is present (user_id, reply_to).
"""

from __future__ import annotations

import dataclasses
from operator import itemgetter
from typing import TYPE_CHECKING, Final

from pamqp.commands import Basic, Confirm, Tx

from gateway.amqp.channel_consume import (
    REPLY_TO_PREFIX,
    REPLY_TO_QUEUE,
    Tagged,
    message_properties,
    settle,
)
from gateway.amqp.codec import (
    HEADERS,
    PLAIN_PROPERTIES,
    REPLY_TO,
    USER_ID,
    decode_properties,
    peek_delivery_mode_expiration,
)
from gateway.amqp.fastpath import BasicPublish
from gateway.amqp.spec import NO_ROUTE, NotImplemented_
from gateway.core.errors import AccessRefused, NotFound, PreconditionFailed, resource
from gateway.core.message import Message, message_from_raw, parse_expiration
from gateway.core.routing import REFUSED, UNROUTABLE

if TYPE_CHECKING:
    from gateway.amqp.channel import AmqpChannel
    from gateway.core.consumers import Delivery

# Properties that make a publish take the slow path: decode and check them.
_CHECKED_FLAGS: Final = USER_ID | REPLY_TO


class TxState:
    """What a transaction holds until tx.commit: publishes, and settlements by kind."""

    __slots__ = ("acks", "publishes")

    def __init__(self) -> None:
        self.publishes: list[tuple[BasicPublish, Message]] = []
        self.acks: list[tuple[int, Tagged]] = []

    def held_deliveries(self) -> list[Delivery]:
        return [delivery for _, taken in self.acks for _, delivery in taken]


class _Return(Basic.Return):
    # pamqp checks exchange names against a narrower pattern than the core accepts.
    def validate(self) -> None:
        pass


def basic_publish(ch: AmqpChannel, method: BasicPublish, raw: bytes, body: bytes) -> None:
    """One publish; the caller (``AmqpChannel.handle_contents``) has set
    ``handler.published``."""
    persistent = PLAIN_PROPERTIES.get(raw)
    if persistent is None or method.immediate or ch.tx is not None:
        _general_publish(ch, method, raw, body)
        return
    # The common case: no properties but a delivery mode, no transaction. route() inlined.
    exchange = method.exchange
    routing_key = method.routing_key
    message = message_from_raw(
        exchange, routing_key, body, raw, decode_properties, persistent, None
    )
    if (persistent and ch.confirming) or (not exchange and routing_key.startswith(REPLY_TO_PREFIX)):
        route(ch, method, message)  # a confirm after the store's commit; direct reply-to
        return
    # No headers: the publish hook has nothing to read.
    outcome = ch.vhost.publish_outcome(exchange, message)
    if outcome == UNROUTABLE and method.mandatory:
        send_return(ch, method, message)
    if ch.confirming:
        ch.confirm(outcome == REFUSED)


def _general_publish(ch: AmqpChannel, method: BasicPublish, raw: bytes, body: bytes) -> None:
    if method.immediate:
        raise NotImplemented_("immediate=true")
    delivery_mode, expiration = peek_delivery_mode_expiration(raw)
    # peek_delivery_mode_expiration has checked that the two flag octets are there.
    if expiration is not None or ((raw[0] << 8) | raw[1]) & _CHECKED_FLAGS or ch.tx is not None:
        _checked_publish(ch, method, raw, body, delivery_mode, expiration)
        return
    message = message_from_raw(
        method.exchange,
        method.routing_key,
        body,
        raw,
        decode_properties,
        delivery_mode == 2,
        None,
    )
    route(ch, method, message)


def _checked_publish(
    ch: AmqpChannel,
    method: BasicPublish,
    raw: bytes,
    body: bytes,
    delivery_mode: int | None,
    expiration: str | None,
) -> None:
    """A publish with an expiration, a user_id or reply_to to check, or in a transaction."""
    exchange = method.exchange
    # As RabbitMQ: a missing exchange is reported before anything about the message.
    _check_exchange(ch, exchange)
    message = message_from_raw(
        exchange,
        method.routing_key,
        body,
        raw,
        decode_properties,
        delivery_mode == 2,
        None if expiration is None else parse_expiration(expiration),
    )
    if ((raw[0] << 8) | raw[1]) & _CHECKED_FLAGS:
        _check_properties(ch, message)
    tx = ch.tx
    if tx is not None:
        tx.publishes.append((method, message))
        return
    route(ch, method, message)


def _check_exchange(ch: AmqpChannel, name: str) -> None:
    exchange = ch.vhost.exchange(name)
    if exchange.internal:
        raise AccessRefused(
            f"cannot publish to internal {resource('exchange', name, ch.vhost.name)}"
        )


def _check_properties(ch: AmqpChannel, message: Message) -> None:
    props = message.properties
    if props.reply_to == REPLY_TO_QUEUE:
        # Direct reply-to: the reply address names this channel's reply consumer.
        if ch.reply_token is None:
            raise PreconditionFailed("fast reply consumer does not exist")
        message.properties = dataclasses.replace(props, reply_to=REPLY_TO_PREFIX + ch.reply_token)
    user = ch.handler.user
    if props.user_id is not None and user is not None and props.user_id != user.name:
        raise PreconditionFailed(
            f"user_id property set to '{props.user_id}' but authenticated user was '{user.name}'"
        )


def route(ch: AmqpChannel, method: BasicPublish, message: Message) -> None:
    """Route one publish; basic.return when mandatory and unroutable, then the confirm."""
    exchange = method.exchange
    routing_key = method.routing_key
    rejected = False
    # A confirmed persistent publish that the store records is confirmed after its commit.
    barrier = ch.vhost.broker.commit_barrier if message.persistent and ch.confirming else None
    written = 0 if barrier is None else barrier.written
    if not exchange and routing_key.startswith(REPLY_TO_PREFIX):
        routed = ch.context.deliver_reply(routing_key, message)
    else:
        outcome = ch.vhost.publish_outcome(exchange, message)
        routed = outcome != UNROUTABLE
        rejected = outcome == REFUSED
        context = ch.context
        if context.on_publish is not None and exchange in context.hooked_exchanges:
            raw = message.raw_properties
            # The hook reads headers only: without any, skip decoding the properties (it was
            # 18% of the gateway's CPU in bench S5).
            if raw is None or ((raw[0] << 8) | raw[1]) & HEADERS:
                context.on_publish(exchange, message)
    if not routed and method.mandatory:
        send_return(ch, method, message)
    if ch.confirming:
        if barrier is not None and barrier.written != written:
            ch.confirm(rejected, barrier.written)
        else:
            ch.confirm(rejected)


def send_return(ch: AmqpChannel, method: BasicPublish, message: Message) -> None:
    returned = _Return(NO_ROUTE, "NO_ROUTE", method.exchange, method.routing_key)
    ch.conn.send_content(ch.number, returned, message_properties(message), message.body)


# -- confirm.select and tx.* -------------------------------------------------------------------


def confirm_select(ch: AmqpChannel, method: Confirm.Select) -> None:
    if ch.tx is not None:
        raise PreconditionFailed("cannot switch from tx to confirm mode")
    ch.confirming = True
    if not method.nowait:
        ch.send(Confirm.SelectOk())


def tx_select(ch: AmqpChannel, _method: Tx.Select) -> None:
    if ch.confirming:
        raise PreconditionFailed("cannot switch from confirm to tx mode")
    if ch.tx is None:
        ch.tx = TxState()
    ch.send(Tx.SelectOk())


def _transaction(ch: AmqpChannel) -> TxState:
    tx = ch.tx
    if tx is None:
        raise PreconditionFailed("channel is not transactional")
    return tx


def tx_commit(ch: AmqpChannel, _method: Tx.Commit) -> None:
    tx = _transaction(ch)
    ch.tx = TxState()
    # commit-ok says the transaction's persistent messages and acks are on disk: when the
    # store recorded any, it goes after the store's commit (tx.commit is synchronous: the
    # client sends no other synchronous method before it).
    barrier = ch.vhost.broker.commit_barrier
    written = 0 if barrier is None else barrier.written
    for method, message in tx.publishes:
        try:
            route(ch, method, message)
        except NotFound:
            # The exchange went away after the publish was accepted: unroutable now.
            if method.mandatory:
                send_return(ch, method, message)
    for kind, taken in tx.acks:
        settle(kind, [delivery for _, delivery in taken])
    if barrier is not None and barrier.written != written:

        def commit_ok() -> None:
            if ch.open:
                ch.send(Tx.CommitOk())
                ch.handler.output_ready()

        barrier.after_commit(barrier.written, commit_ok)
        return
    ch.send(Tx.CommitOk())


def tx_rollback(ch: AmqpChannel, _method: Tx.Rollback) -> None:
    tx = _transaction(ch)
    ch.tx = TxState()
    held = [item for _, taken in tx.acks for item in taken]
    if held:
        # The acks are undone: those deliveries await an ack again, in tag order.
        ch.unacked = dict(sorted([*ch.unacked.items(), *held], key=itemgetter(0)))
    ch.send(Tx.RollbackOk())
