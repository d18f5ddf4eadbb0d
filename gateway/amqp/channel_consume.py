"""Consuming on a channel: qos, consume, cancel, get, deliveries and their settlement.

A consumer is a core ``Consumer``: the queue calls ``deliver`` synchronously and the frames go
straight into the connection's output buffer. Each delivery that needs an ack gets the next
delivery tag of the channel and waits in ``channel.unacked`` (a dict, so tag order is insertion
order) until basic.ack / nack / reject settles it with its queue.
"""

from __future__ import annotations

import bisect
import dataclasses
import secrets
from typing import TYPE_CHECKING, Final

from pamqp.commands import Basic

from gateway.amqp.codec import encode_properties
from gateway.amqp.fastpath import (
    CHUNKED_BODY_THRESHOLD,
    BasicAck,
    BasicNack,
    BasicReject,
    deliver_template,
    encode_deliver,
    encode_deliver_chunks,
    pack_delivery_tag,
)
from gateway.amqp.spec import FRAME_END_BYTE, NotImplemented_
from gateway.core.consumers import Delivery, Subscription
from gateway.core.errors import NotAllowed, NotFound, PreconditionFailed
from gateway.core.message import Message, Properties
from gateway.core.settlement import ack_many

if TYPE_CHECKING:
    from gateway.amqp.channel import AmqpChannel
    from gateway.core.queues import Queue

REPLY_TO_QUEUE: Final = "amq.rabbitmq.reply-to"
REPLY_TO_PREFIX: Final = "amq.rabbitmq.reply-to."

# How a settlement treats its deliveries (also what a transaction holds until commit).
ACK: Final = 0
REQUEUE: Final = 1
DISCARD: Final = 2

Tagged = list[tuple[int, Delivery]]


def new_consumer_tag() -> str:
    return "amq.ctag-" + secrets.token_urlsafe(16)


# Encoded properties of messages that arrived without raw bytes (MQTT-origin, dead-lettered),
# by the identity of their Properties object: MQTT publishes share a few such objects, so
# a fan-out encodes each once. The entry keeps the object alive, so its id cannot be reused.
_ENCODED: dict[int, tuple[Properties, bytes]] = {}
_ENCODED_MAX: Final = 1024
_EMPTY_RAW: Final = b"\x00\x00"


def properties_bytes(props: Properties) -> bytes:
    hit = _ENCODED.get(id(props))
    if hit is not None and hit[0] is props:
        return hit[1]
    try:
        raw = encode_properties(props)
    except (ValueError, TypeError):
        # A header value AMQP cannot carry: deliver without headers rather than not at all.
        try:
            raw = encode_properties(dataclasses.replace(props, headers=None))
        except (ValueError, TypeError):
            raw = _EMPTY_RAW
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[id(props)] = (props, raw)
    return raw


def message_properties(message: Message) -> bytes:
    raw = message.raw_properties
    return raw if raw is not None else properties_bytes(message.properties)


class ChannelConsumer:
    """A basic.consume: what the core delivers through."""

    # `__weakref__`: tests check that a dropped connection's consumers are freed (issue 7).
    __slots__ = (
        "__weakref__",
        "_last",
        "_template",
        "channel",
        "handler",
        "no_ack",
        "started",
        "subscription",
        "tag",
    )

    def __init__(self, channel: AmqpChannel, tag: str, no_ack: bool) -> None:
        self.channel = channel
        self.handler = channel.handler
        self.tag = tag
        self.no_ack = no_ack
        # False until consume-ok is out (deliveries must follow it) and after cancellation.
        self.started = False
        self.subscription: Subscription | None = None
        # The last delivery's (exchange, routing key, raw properties, body size) and its
        # encoded frames around the delivery tag (see _template_for).
        self._last: tuple[str, str, bytes, int] | None = None
        self._template: tuple[bytes, bytes] | None = None

    def can_accept(self) -> bool:
        return self.started and self.handler.writable

    def deliver(self, delivery: Delivery) -> None:
        ch = self.channel
        conn = ch.conn
        number = ch.number
        if not conn.is_channel_open(number):
            # The channel vanished without the adapter noticing: never lose the message.
            self.started = False
            if not delivery.settled:
                delivery.queue.requeue((delivery,))
            return
        tag = ch.next_tag
        ch.next_tag = tag + 1
        if not self.no_ack:
            ch.unacked[tag] = delivery
        entry = delivery.entry
        message = entry.message
        raw = message.raw_properties
        if raw is None:
            raw = properties_bytes(message.properties)
        body = message.body
        size = len(body)
        exchange = message.exchange
        routing_key = message.routing_key
        last = self._last
        if (
            last is None
            or raw is not last[2]
            or size != last[3]
            or routing_key != last[1]
            or exchange != last[0]
        ):
            self._last = (exchange, routing_key, raw, size)
            self._template = self._template_for(exchange, routing_key, raw, size)
        template = self._template
        if template is not None:
            conn.send_frame(b"".join((template[0], pack_delivery_tag(tag, entry.redelivered),
                                      template[1], body, FRAME_END_BYTE)))  # fmt: skip
        else:
            self._send_whole(tag, entry.redelivered, exchange, routing_key, raw, body)
        self.handler.output_ready()

    def deliver_many(self, deliveries: list[Delivery]) -> None:
        """A batch from the queue's backlog (core/dispatch.py): one check that the channel is
        open, one joined write and one wake-up of the shell for all of them."""
        ch = self.channel
        conn = ch.conn
        if not conn.is_channel_open(ch.number):
            self.started = False
            requeue_in_order([delivery for delivery in deliveries if not delivery.settled])
            return
        tag = ch.next_tag
        unacked = None if self.no_ack else ch.unacked
        parts: list[bytes] = []
        extend = parts.extend
        last = self._last
        template = self._template
        for delivery in deliveries:
            if unacked is not None:
                unacked[tag] = delivery
            entry = delivery.entry
            message = entry.message
            raw = message.raw_properties
            if raw is None:
                raw = properties_bytes(message.properties)
            body = message.body
            size = len(body)
            exchange = message.exchange
            routing_key = message.routing_key
            if (
                last is None
                or raw is not last[2]
                or size != last[3]
                or routing_key != last[1]
                or exchange != last[0]
            ):
                last = (exchange, routing_key, raw, size)
                template = self._template_for(exchange, routing_key, raw, size)
            if template is not None:
                extend((template[0], pack_delivery_tag(tag, entry.redelivered), template[1],
                        body, FRAME_END_BYTE))  # fmt: skip
            else:
                # What came before goes out first: a large body is sent on its own.
                if parts:
                    conn.send_frame(b"".join(parts))
                    parts.clear()
                self._send_whole(tag, entry.redelivered, exchange, routing_key, raw, body)
            tag += 1
        self._last = last
        self._template = template
        ch.next_tag = tag
        if parts:
            conn.send_frame(b"".join(parts))
        self.handler.output_ready()

    def _template_for(
        self, exchange: str, routing_key: str, raw: bytes, size: int
    ) -> tuple[bytes, bytes] | None:
        """The encoded frames around the delivery tag for such a message (see
        :func:`~gateway.amqp.fastpath.deliver_template`), kept while the messages that follow
        share exchange, routing key, properties and body size (a publisher's stream does).
        None for a body that is empty, takes several frames, or is large enough to be sent by
        reference."""
        if size > CHUNKED_BODY_THRESHOLD:
            return None
        conn = self.channel.conn
        return deliver_template(
            self.channel.number, self.tag, exchange, routing_key, raw, size, conn.frame_max
        )

    def _send_whole(
        self,
        tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        raw: bytes,
        body: bytes,
    ) -> None:
        conn = self.channel.conn
        args = (self.channel.number, self.tag, tag, redelivered, exchange, routing_key)
        if len(body) > CHUNKED_BODY_THRESHOLD:
            # A large body is referenced by the output, not copied.
            conn.send_encoded(encode_deliver_chunks(*args, raw, body, conn.frame_max))
        else:
            conn.send_frame(encode_deliver(*args, raw, body, conn.frame_max))

    def cancelled_by_server(self) -> None:
        self.started = False
        # The subscription holds this consumer: keeping it would be a reference cycle (see
        # stop).
        self.subscription = None
        self.channel.consumer_gone(self)

    def stop(self) -> None:
        """Cancel at the queue; unacked deliveries stay with the channel."""
        self.started = False
        sub = self.subscription
        # The subscription holds this consumer (and its bound deliver_many): dropping it
        # breaks the only cycle between a cancelled consumer and the core, so the consumer,
        # its channel and its connection go by reference counting (issue 7).
        self.subscription = None
        if sub is not None and sub.active:
            sub.cancel(requeue_unacked=False)


# -- basic.qos / consume / cancel --------------------------------------------------------------


def basic_qos(ch: AmqpChannel, method: Basic.Qos) -> None:
    if method.prefetch_size:
        raise NotImplemented_(f"prefetch_size!=0 ({method.prefetch_size})")
    if method.global_:
        ch.credit.set_limit(method.prefetch_count)
    else:
        ch.prefetch = method.prefetch_count
    ch.send(Basic.QosOk())


def expand_queue_name(ch: AmqpChannel, name: str) -> str:
    """The empty name means the queue the channel declared last."""
    if name:
        return name
    if ch.last_queue is None:
        raise NotFound("no previously declared queue")
    return ch.last_queue


def basic_consume(ch: AmqpChannel, method: Basic.Consume) -> None:
    tag = method.consumer_tag or new_consumer_tag()
    if tag in ch.consumers or tag == ch.reply_tag:
        raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
    queue = expand_queue_name(ch, method.queue)
    if queue == REPLY_TO_QUEUE:
        _consume_reply_to(ch, method, tag)
        return
    consumer = ChannelConsumer(ch, tag, method.no_ack)
    sub = ch.vhost.consume(
        queue,
        consumer,
        tag=tag,
        no_ack=method.no_ack,
        exclusive=method.exclusive,
        prefetch=ch.prefetch,
        credit_group=ch.credit,
        owner=ch.handler,
        arguments=method.arguments or {},
    )
    consumer.subscription = sub
    ch.consumers[tag] = consumer
    if not method.nowait:
        ch.send(Basic.ConsumeOk(tag))
    consumer.started = True
    sub.resume()


def _consume_reply_to(ch: AmqpChannel, method: Basic.Consume, tag: str) -> None:
    if not method.no_ack:
        raise PreconditionFailed("reply consumer cannot acknowledge")
    if ch.reply_tag is not None:
        raise PreconditionFailed("reply consumer already set")
    token = secrets.token_urlsafe(18)
    ch.reply_tag = tag
    ch.reply_token = token
    ch.context.reply_channels[token] = ch
    if not method.nowait:
        ch.send(Basic.ConsumeOk(tag))


def basic_cancel(ch: AmqpChannel, method: Basic.Cancel) -> None:
    tag = method.consumer_tag or ""
    if tag == ch.reply_tag:
        if ch.reply_token is not None:
            ch.context.reply_channels.pop(ch.reply_token, None)
        ch.reply_tag = ch.reply_token = None
    else:
        consumer = ch.consumers.pop(tag, None)
        if consumer is not None:
            consumer.stop()
    # An unknown tag is answered all the same (the spec says to ignore it).
    if not method.nowait:
        ch.send(Basic.CancelOk(tag))


# -- basic.get ---------------------------------------------------------------------------------


class _GetOk(Basic.GetOk):
    # pamqp checks exchange names against a narrower pattern than the core accepts.
    def validate(self) -> None:
        pass


def basic_get(ch: AmqpChannel, method: Basic.Get) -> None:
    queue = expand_queue_name(ch, method.queue)
    got = ch.vhost.get(queue, method.no_ack, owner=ch.handler)
    if got is None:
        ch.send(Basic.GetEmpty())
        return
    delivery, remaining = got
    tag = ch.take_tag()
    if not method.no_ack:
        ch.unacked[tag] = delivery
    message = delivery.message
    ok = _GetOk(tag, delivery.redelivered, message.exchange, message.routing_key, remaining)
    ch.conn.send_content(ch.number, ok, message_properties(message), message.body)


# -- settlement --------------------------------------------------------------------------------


def _unknown_tag(tag: int) -> PreconditionFailed:
    return PreconditionFailed(f"unknown delivery tag {tag}")


def take_unacked(ch: AmqpChannel, tag: int, multiple: bool) -> Tagged:
    """Remove and return what an ack/nack of ``tag`` covers; 406 for an unknown tag."""
    unacked = ch.unacked
    if not multiple:
        delivery = unacked.pop(tag, None)
        if delivery is None:
            raise _unknown_tag(tag)
        return [(tag, delivery)]
    if tag == 0:
        taken = list(unacked.items())
        unacked.clear()
        return taken
    if tag not in unacked:
        raise _unknown_tag(tag)
    # Tags are kept in ascending order: the covered ones are a prefix (a C-level search).
    tags = list(unacked)
    covered = tags[: bisect.bisect_right(tags, tag)]
    pop = unacked.pop
    return [(current, pop(current)) for current in covered]


def settle(kind: int, deliveries: list[Delivery]) -> None:
    if kind == ACK:
        # A batch: each queue refills its consumers once, after the last ack.
        ack_many(deliveries)
    elif kind == REQUEUE:
        requeue_in_order(deliveries)
    else:
        for delivery in deliveries:
            delivery.queue.reject(delivery, False)


def requeue_in_order(deliveries: list[Delivery]) -> None:
    """Back to their queues, each at its original position."""
    if not deliveries:
        return
    if len(deliveries) == 1:
        deliveries[0].queue.requeue(deliveries)
        return
    by_queue: dict[Queue, list[Delivery]] = {}
    for delivery in deliveries:
        by_queue.setdefault(delivery.queue, []).append(delivery)
    for queue, items in by_queue.items():
        queue.requeue(items)


def _settle_or_hold(ch: AmqpChannel, kind: int, taken: Tagged) -> None:
    tx = ch.tx
    if tx is not None:
        tx.acks.append((kind, taken))
        return
    settle(kind, [delivery for _, delivery in taken])


def basic_ack(ch: AmqpChannel, method: BasicAck) -> None:
    if ch.tx is None:
        # The common cases, kept short.
        tag = method.delivery_tag
        if not method.multiple:
            delivery = ch.unacked.pop(tag, None)
            if delivery is None:
                raise _unknown_tag(tag)
            delivery.queue.ack(delivery)
        else:
            ack_many(take_covered(ch.unacked, tag))
        return
    _settle_or_hold(ch, ACK, take_unacked(ch, method.delivery_tag, method.multiple))


def take_covered(unacked: dict[int, Delivery], tag: int) -> list[Delivery]:
    """Remove and return the deliveries a multiple ack of ``tag`` covers (0: all of them), in
    tag order; 406 for an unknown tag. :func:`take_unacked` without the tags."""
    if tag == 0 or (unacked and next(reversed(unacked)) == tag):
        # Everything (a client acking all it has seen): no search, no pops.
        covered = list(unacked.values())
        unacked.clear()
        return covered
    if tag not in unacked:
        raise _unknown_tag(tag)
    tags = list(unacked)
    return list(map(unacked.pop, tags[: bisect.bisect_right(tags, tag)]))


def basic_nack(ch: AmqpChannel, method: BasicNack) -> None:
    taken = take_unacked(ch, method.delivery_tag, method.multiple)
    _settle_or_hold(ch, REQUEUE if method.requeue else DISCARD, taken)


def basic_reject(ch: AmqpChannel, method: BasicReject) -> None:
    taken = take_unacked(ch, method.delivery_tag, False)
    _settle_or_hold(ch, REQUEUE if method.requeue else DISCARD, taken)


def _recover(ch: AmqpChannel, requeue: bool) -> None:
    if not requeue:
        raise NotImplemented_("requeue=false")
    deliveries = list(ch.unacked.values())
    ch.unacked.clear()
    requeue_in_order(deliveries)


def basic_recover(ch: AmqpChannel, method: Basic.Recover) -> None:
    _recover(ch, method.requeue)
    ch.send(Basic.RecoverOk())


def basic_recover_async(ch: AmqpChannel, method: Basic.RecoverAsync) -> None:
    _recover(ch, method.requeue)
