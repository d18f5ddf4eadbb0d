"""One AMQP channel on the core: method dispatch, errors, confirms and teardown.

The method handlers live by concern in ``channel_declare`` (exchange and queue methods),
``channel_consume`` (qos, consume, get, ack and friends) and ``channel_publish`` (publish,
confirms, transactions); this module routes a method to its handler and turns the errors they
raise into the protocol's answer: a soft error closes the channel, a hard one the connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pamqp.commands import Basic, Confirm, Exchange, Queue, Tx

from gateway.amqp import channel_consume as consume
from gateway.amqp import channel_declare as declare
from gateway.amqp import channel_publish as publish
from gateway.amqp.fastpath import BasicAck, BasicNack, BasicPublish, BasicReject
from gateway.amqp.frames import Method, method_ids
from gateway.amqp.spec import AMQPError, CommandInvalid
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.errors import CoreError

if TYPE_CHECKING:
    from gateway.amqp.channel_connection import AmqpConnectionHandler
    from gateway.amqp.channel_consume import ChannelConsumer
    from gateway.amqp.channel_publish import TxState
    from gateway.amqp.connection_events import Content
    from gateway.core.message import Message

MethodHandler = Callable[["AmqpChannel", Any], None]

_METHODS: Final[dict[int, MethodHandler]] = {
    BasicAck.index: consume.basic_ack,
    BasicNack.index: consume.basic_nack,
    BasicReject.index: consume.basic_reject,
    Basic.Qos.index: consume.basic_qos,
    Basic.Consume.index: consume.basic_consume,
    Basic.Cancel.index: consume.basic_cancel,
    Basic.Get.index: consume.basic_get,
    Basic.Recover.index: consume.basic_recover,
    Basic.RecoverAsync.index: consume.basic_recover_async,
    Exchange.Declare.index: declare.exchange_declare,
    Exchange.Delete.index: declare.exchange_delete,
    Exchange.Bind.index: declare.exchange_bind,
    Exchange.Unbind.index: declare.exchange_unbind,
    Queue.Declare.index: declare.queue_declare,
    Queue.Bind.index: declare.queue_bind,
    Queue.Unbind.index: declare.queue_unbind,
    Queue.Purge.index: declare.queue_purge,
    Queue.Delete.index: declare.queue_delete,
    Confirm.Select.index: publish.confirm_select,
    Tx.Select.index: publish.tx_select,
    Tx.Commit.index: publish.tx_commit,
    Tx.Rollback.index: publish.tx_rollback,
}


class AmqpChannel:
    """Per-channel state: delivery tags, consumers, prefetch, confirms, transaction."""

    # `__weakref__`: tests check that a dropped connection's channels are freed (issue 7).
    __slots__ = (
        "__weakref__",
        "ack_pending",
        "confirmed_upto",
        "confirming",
        "conn",
        "consumers",
        "context",
        "credit",
        "deferred",
        "handler",
        "last_queue",
        "next_tag",
        "number",
        "open",
        "prefetch",
        "publish_seq",
        "reply_tag",
        "reply_token",
        "tx",
        "unacked",
        "vhost",
    )

    def __init__(self, handler: AmqpConnectionHandler, number: int) -> None:
        assert handler.vhost is not None
        self.handler = handler
        self.number = number
        self.conn = handler.conn
        self.context = handler.context
        self.vhost = handler.vhost
        self.open = True
        # Delivery tags are per channel, from 1; the map holds what awaits an ack, in tag order.
        self.next_tag = 1
        self.unacked: dict[int, Delivery] = {}
        self.consumers: dict[str, ChannelConsumer] = {}
        # basic.qos global=true: one limit over every consumer of the channel (0: none).
        self.credit = CreditGroup()
        # basic.qos global=false: the limit given to consumers created from now on.
        self.prefetch = 0
        self.confirming = False
        self.publish_seq = 0
        # Highest publish sequence number acked but not yet told, and the last one told.
        self.ack_pending = 0
        self.confirmed_upto = 0
        # Confirms waiting for the store's commit, in publish order: (seq, rejected, record
        # number to wait for, 0 for a publish queued behind them only to keep the order).
        self.deferred: deque[tuple[int, bool, int]] = deque()
        self.tx: TxState | None = None
        # The queue the last queue.declare named (for the empty-name shortcut).
        self.last_queue: str | None = None
        # Direct reply-to consumer: its tag and the token replies are addressed with.
        self.reply_tag: str | None = None
        self.reply_token: str | None = None

    # -- input -------------------------------------------------------------------------------

    def handle_method(self, method: Method) -> None:
        try:
            handler = _METHODS.get(method.index)
            if handler is None:
                raise CommandInvalid("unimplemented method", *method_ids(method))
            handler(self, method)
        except CoreError as exc:
            self.fail(exc.code, exc.text, exc.hard, method)
        except AMQPError as exc:
            self.fail(exc.code, exc.reply_text, exc.hard, method, exc.class_id, exc.method_id)

    def handle_contents(self, contents: list[Content]) -> None:
        """Publishes in arrival order. The first error closes the channel (or the connection),
        and what follows it on the channel is dropped, as the peer's channel is gone."""
        basic_publish = publish.basic_publish
        method: Method | None = None
        self.handler.published = True  # for the shell's memory check, once per batch
        try:
            for _, method, raw_properties, body in contents:
                if not self.open:
                    return
                if type(method) is not BasicPublish:
                    raise CommandInvalid("unimplemented method", *method_ids(method))
                basic_publish(self, method, raw_properties, body)
        except CoreError as exc:
            assert method is not None
            self.fail(exc.code, exc.text, exc.hard, method)
        except AMQPError as exc:
            assert method is not None
            self.fail(exc.code, exc.reply_text, exc.hard, method, exc.class_id, exc.method_id)

    def fail(
        self,
        code: int,
        text: str,
        hard: bool,
        method: Method,
        class_id: int = 0,
        method_id: int = 0,
    ) -> None:
        """Answer an error: channel.close for a soft one, connection.close for a hard one."""
        if not class_id:
            class_id, method_id = method_ids(method)
        if hard:
            self.handler.close_connection(code, text, class_id, method_id)
            return
        # Confirms for publishes that went through still go out before the close.
        self.flush_confirms()
        self.conn.close_channel(self.number, code, text, class_id, method_id)
        self.teardown()

    # -- output ------------------------------------------------------------------------------

    def send(self, method: Any) -> None:
        self.conn.send_method(self.number, method)

    def take_tag(self) -> int:
        tag = self.next_tag
        self.next_tag = tag + 1
        return tag

    # -- publisher confirms ------------------------------------------------------------------

    def confirm(self, rejected: bool, wait_for: int = 0) -> None:
        """Record the outcome of the next publish; acks are coalesced until the batch ends.

        ``wait_for``: the store record number the publish's confirm waits for (0: none).
        """
        seq = self.publish_seq = self.publish_seq + 1
        if wait_for or self.deferred:
            self._defer(seq, rejected, wait_for)
            return
        if rejected:
            self.flush_confirms()
            self.conn.send_nack(self.number, seq, False, False)
            self.confirmed_upto = seq
            return
        if not self.ack_pending:
            self.handler.confirm_dirty.append(self)
        self.ack_pending = seq

    def _defer(self, seq: int, rejected: bool, wait_for: int) -> None:
        deferred = self.deferred
        deferred.append((seq, rejected, wait_for))
        if len(deferred) == 1:
            barrier = self.vhost.broker.commit_barrier
            assert barrier is not None
            barrier.after_commit(wait_for, self._committed)

    def _committed(self) -> None:
        """The store committed what the head of ``deferred`` waits for: confirm in order."""
        deferred = self.deferred
        if not self.open or not deferred:
            return
        barrier = self.vhost.broker.commit_barrier
        # No barrier any more: the store closed, which commits everything first.
        committed = barrier.committed if barrier is not None else deferred[-1][2]
        while deferred and deferred[0][2] <= committed:
            seq, rejected, _ = deferred.popleft()
            if rejected:
                self.flush_confirms()
                self.conn.send_nack(self.number, seq, False, False)
                self.confirmed_upto = seq
            else:
                self.ack_pending = seq
        self.flush_confirms()
        if deferred and barrier is not None:
            barrier.after_commit(deferred[0][2], self._committed)
        self.handler.output_ready()

    def flush_confirms(self) -> None:
        upto = self.ack_pending
        if upto:
            self.ack_pending = 0
            self.conn.send_ack(self.number, upto, upto - self.confirmed_upto > 1)
            self.confirmed_upto = upto

    # -- consumers ---------------------------------------------------------------------------

    def resume_consumers(self) -> None:
        """The socket drained: let the queues deliver again."""
        for consumer in list(self.consumers.values()):
            sub = consumer.subscription
            if sub is not None:
                sub.resume()

    def consumer_gone(self, consumer: ChannelConsumer) -> None:
        """The queue went away under a consumer: basic.cancel to clients that understand it."""
        if self.consumers.get(consumer.tag) is consumer:
            del self.consumers[consumer.tag]
            if self.open and self.handler.cancel_notify:
                self.send(Basic.Cancel(consumer.tag, nowait=True))
                self.handler.output_ready()

    def deliver_reply(self, message: Message) -> bool:
        """A direct reply-to message for this channel's reply consumer."""
        tag = self.reply_tag
        if tag is None or not self.open:
            return False
        sent = self.conn.send_deliver(
            self.number,
            tag,
            self.take_tag(),
            False,
            message.exchange,
            message.routing_key,
            consume.message_properties(message),
            message.body,
        )
        if sent:
            self.handler.output_ready()
        return sent

    # -- closing -----------------------------------------------------------------------------

    def teardown(self) -> None:
        """The channel is closed or closing: stop consumers, requeue what is unacked."""
        if not self.open:
            return
        self.open = False
        self.ack_pending = 0
        self.deferred.clear()
        token = self.reply_token
        if token is not None:
            self.context.reply_channels.pop(token, None)
            self.reply_token = self.reply_tag = None
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            consumer.stop()
        unacked = list(self.unacked.values())
        self.unacked.clear()
        if self.tx is not None:
            # Acks held by an uncommitted transaction were never applied: requeue them too.
            unacked.extend(self.tx.held_deliveries())
            self.tx = None
        consume.requeue_in_order(unacked)
