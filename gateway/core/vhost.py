"""A virtual host: its exchanges, queues and bindings, routing, consuming and dead-lettering.

Method names and error texts follow AMQP 0-9-1 and RabbitMQ; nothing here names a protocol.
``owner`` is an opaque object (a connection) that exclusive queues belong to. Publishing,
routing and dead-lettering are in core/routing.py, installed here as methods.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.core import routing
from gateway.core.arguments import (
    QUEUE_EQUIVALENCE_KEYS,
    assert_args,
    assert_field,
    check_consume_arguments,
    parse_queue_arguments,
    type_name,
)
from gateway.core.consumers import Consumer, CreditGroup, Delivery, Subscription
from gateway.core.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    exclusive_locked,
    resource,
)
from gateway.core.exchanges import (
    Binding,
    BindingKey,
    DefaultExchange,
    Destination,
    DirectExchange,
    Exchange,
    FanoutExchange,
    HeadersExchange,
    binding_key,
)
from gateway.core.queues import Queue
from gateway.core.routing import RouteResult
from gateway.core.topic_trie import TopicExchange

__all__ = ["DeclareOk", "RouteResult", "VirtualHost", "server_named_queue"]

if TYPE_CHECKING:
    from gateway.core.broker import Broker

EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}

PREDECLARED_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

DEFAULT_EXCHANGE_REFUSED = "operation not permitted on the default exchange"


@dataclass(frozen=True, slots=True)
class DeclareOk:
    queue_name: str
    message_count: int
    consumer_count: int


def server_named_queue() -> str:
    return "amq.gen-" + secrets.token_urlsafe(16)


class VirtualHost:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self._clock = broker.clock
        self._queues: dict[str, Queue] = {}
        self._exchanges: dict[str, Exchange] = {"": DefaultExchange(name, self._queues)}
        for xname, xtype in PREDECLARED_EXCHANGES:
            self._exchanges[xname] = EXCHANGE_TYPES[xtype](xname, name, durable=True)
        self._exclusive: dict[object, dict[Queue, None]] = {}
        self._owner_subs: dict[object, dict[Subscription, None]] = {}
        # Bumped by every binding and exchange change: routes cached outside the exchanges
        # (core/routing.py `route_targets`) are good while it stays the same.
        self.routing_version = 0

    def _rs(self, kind: str, name: str) -> str:
        return resource(kind, name, self.name)

    # -- lookups -----------------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        found = self._exchanges.get(name)
        if found is None:
            raise NotFound(f"no {self._rs('exchange', name)}")
        return found

    def queue(self, name: str) -> Queue:
        found = self._queues.get(name)
        if found is None:
            raise NotFound(f"no {self._rs('queue', name)}")
        return found

    def exchanges(self) -> list[Exchange]:
        return list(self._exchanges.values())

    def queues(self) -> list[Queue]:
        return list(self._queues.values())

    def bindings(self) -> list[Binding]:
        return [b for x in self._exchanges.values() for b in x.bindings.values()]

    def _owned_queue(self, name: str, owner: object) -> Queue:
        queue = self.queue(name)
        if queue.exclusive and queue.owner is not owner:
            raise exclusive_locked(name, self.name)
        return queue

    # -- exchanges ---------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, object] | None = None,
        passive: bool = False,
    ) -> Exchange:
        if passive:
            if name == "":
                raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
            return self.exchange(name)
        cls = EXCHANGE_TYPES.get(type)
        if cls is None:
            raise CommandInvalid(f"unknown exchange type '{type}'")
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        args = dict(arguments or {})
        rs = self._rs("exchange", name)
        existing = self._exchanges.get(name)
        if existing is not None:
            assert_field("type", rs, existing.type_name, type)
            assert_field("durable", rs, existing.durable, durable)
            assert_field("auto_delete", rs, existing.auto_delete, auto_delete)
            assert_field("internal", rs, existing.internal, internal)
            # RabbitMQ compares only the arguments exchanges act on.
            assert_args(("alternate-exchange",), rs, existing.arguments, args)
            return existing
        if name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        ae = args.get("alternate-exchange")
        if ae is not None and not isinstance(ae, str):
            raise PreconditionFailed(
                f"invalid type '{type_name(ae)}' for arg 'alternate-exchange' in {rs}"
            )
        exchange = cls(
            name,
            self.name,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=args,
        )
        self._exchanges[name] = exchange
        self.routing_version += 1
        if durable:
            for observer in self.broker.observers:
                observer.on_exchange_declared(exchange)
        return exchange

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system {self._rs('exchange', name)} not allowed")
        exchange = self._exchanges.get(name)
        if exchange is None:
            return  # deleting what is not there succeeds, as in RabbitMQ
        if if_unused and exchange.bindings:
            raise PreconditionFailed(f"{self._rs('exchange', name)} in use")
        self._delete_exchange(exchange)

    def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str,
        arguments: Mapping[str, object] | None = None,
    ) -> None:
        src, dest = self._binding_ends(source, destination)
        self._add_binding(src, dest, routing_key, arguments)

    def unbind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str,
        arguments: Mapping[str, object] | None = None,
    ) -> None:
        src, dest = self._binding_ends(source, destination)
        self._remove_binding(src, binding_key(dest, routing_key, arguments or {}))

    def _binding_ends(self, source: str, destination: str) -> tuple[Exchange, Exchange]:
        if source == "" or destination == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        return self.exchange(source), self.exchange(destination)

    # -- queues ------------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, object] | None = None,
        passive: bool = False,
        owner: object = None,
    ) -> DeclareOk:
        if passive:
            queue = self._owned_queue(name, owner)
            queue._touch(self._clock())
            return DeclareOk(name, queue.message_count, queue.consumer_count)
        if exclusive and owner is None:
            raise ValueError("an exclusive queue needs an owner")
        if name == "":
            name = server_named_queue()
            while name in self._queues:
                name = server_named_queue()
        elif name.startswith("amq."):
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        durable = durable and not exclusive
        args = dict(arguments or {})
        rs = self._rs("queue", name)
        existing = self._queues.get(name)
        now = self._clock()
        if existing is not None:
            if existing.owner is not (owner if exclusive else None):
                raise exclusive_locked(name, self.name)
            assert_field("durable", rs, existing.durable, durable)
            assert_field("auto_delete", rs, existing.auto_delete, auto_delete)
            assert_args(QUEUE_EQUIVALENCE_KEYS, rs, existing.arguments, args)
            existing._touch(now)
            return DeclareOk(name, existing.message_count, existing.consumer_count)
        settings = parse_queue_arguments(args, rs)
        if args.get("x-queue-type") == "quorum" and (exclusive or not durable):
            raise PreconditionFailed(
                f"invalid property '{'exclusive' if exclusive else 'non-durable'}' for {rs}"
            )
        queue = Queue(
            self,
            name,
            durable=durable,
            exclusive=exclusive,
            owner=owner,
            auto_delete=auto_delete,
            arguments=args,
            settings=settings,
            now=now,
        )
        self._queues[name] = queue
        if exclusive:
            self._exclusive.setdefault(owner, {})[queue] = None
        if durable:
            for observer in self.broker.observers:
                observer.on_queue_declared(queue)
        queue._touch(now)
        return DeclareOk(name, 0, 0)

    def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: Mapping[str, object] | None = None,
        owner: object = None,
    ) -> None:
        source, dest = self._queue_binding_ends(exchange, queue, owner)
        self._add_binding(source, dest, routing_key, arguments)

    def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: Mapping[str, object] | None = None,
        owner: object = None,
    ) -> None:
        source, dest = self._queue_binding_ends(exchange, queue, owner)
        self._remove_binding(source, binding_key(dest, routing_key, arguments or {}))

    def _queue_binding_ends(
        self, exchange: str, queue: str, owner: object
    ) -> tuple[Exchange, Queue]:
        if exchange == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        source = self.exchange(exchange)
        return source, self._owned_queue(queue, owner)

    def purge_queue(self, name: str, owner: object = None) -> int:
        return self._owned_queue(name, owner).purge()

    def delete_queue(
        self,
        name: str,
        *,
        if_unused: bool = False,
        if_empty: bool = False,
        owner: object = None,
    ) -> int:
        """Delete and return how many ready messages went with it (0 if it did not exist)."""
        queue = self._queues.get(name)
        if queue is None:
            return 0
        if queue.exclusive and queue.owner is not owner:
            raise exclusive_locked(name, self.name)
        if if_unused and queue.consumer_count:
            raise PreconditionFailed(f"{self._rs('queue', name)} in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"{self._rs('queue', name)} not empty")
        return self._delete_queue(queue)

    # -- bindings ----------------------------------------------------------------------------

    def _add_binding(
        self,
        source: Exchange,
        dest: Destination,
        routing_key: str,
        arguments: Mapping[str, object] | None,
    ) -> None:
        args = dict(arguments or {})
        source.validate_binding(args)
        key = binding_key(dest, routing_key, args)
        if key in source.bindings:
            return
        binding = Binding(self.name, source.name, dest.name, dest.is_queue, routing_key, args)
        source.add_binding(key, binding, dest)
        self.routing_version += 1
        dest._sources[(source.name, key)] = binding
        if source.durable and dest.durable:
            for observer in self.broker.observers:
                observer.on_binding_added(binding)

    def _remove_binding(self, source: Exchange, key: BindingKey) -> None:
        removed = source.remove_binding(key)
        if removed is None:
            return  # unbinding what is not bound succeeds
        binding, dest = removed
        self.routing_version += 1
        dest._sources.pop((source.name, key), None)
        if source.durable and dest.durable:
            for observer in self.broker.observers:
                observer.on_binding_removed(binding)
        if source.auto_delete and not source.bindings and not source.deleted:
            self._delete_exchange(source)

    def _delete_exchange(self, exchange: Exchange) -> None:
        exchange.deleted = True
        del self._exchanges[exchange.name]
        self.routing_version += 1
        for key in list(exchange.bindings):
            removed = exchange.remove_binding(key)
            if removed is None:
                continue
            binding, dest = removed
            dest._sources.pop((exchange.name, key), None)
            if exchange.durable and dest.durable:
                for observer in self.broker.observers:
                    observer.on_binding_removed(binding)
        for source_name, key in list(exchange._sources):
            source = self._exchanges.get(source_name)
            if source is not None:
                self._remove_binding(source, key)
        if exchange.durable:
            for observer in self.broker.observers:
                observer.on_exchange_deleted(exchange)

    def _delete_queue(self, queue: Queue) -> int:
        if queue.deleted:
            return 0
        del self._queues[queue.name]
        if queue.exclusive:
            owned = self._exclusive.get(queue.owner)
            if owned is not None:
                owned.pop(queue, None)
                if not owned:
                    del self._exclusive[queue.owner]
        for source_name, key in list(queue._sources):
            source = self._exchanges.get(source_name)
            if source is not None:
                self._remove_binding(source, key)
        count, subs, groups = queue._destroy()
        for sub in subs:
            self._forget_subscription(sub)
        if queue.durable:
            for observer in self.broker.observers:
                observer.on_queue_deleted(queue)
        for sub in subs:
            sub.consumer.cancelled_by_server()
        for group in groups:
            group.wake()
        return count

    # -- publishing (core/routing.py) --------------------------------------------------------

    publish = routing.publish
    publish_outcome = routing.publish_outcome
    _route = routing.route_from
    _follow = routing.follow
    _dead_letter = routing.dead_letter

    # -- consuming ---------------------------------------------------------------------------

    def consume(
        self,
        queue_name: str,
        consumer: Consumer,
        *,
        tag: str,
        no_ack: bool,
        exclusive: bool = False,
        prefetch: int = 0,
        credit_group: CreditGroup | None = None,
        owner: object = None,
        arguments: Mapping[str, object] | None = None,
    ) -> Subscription:
        """Attach a consumer. 403 when an exclusive consumer is involved (RabbitMQ's code)."""
        queue = self._owned_queue(queue_name, owner)
        args = dict(arguments or {})
        check_consume_arguments(args, self._rs("queue", queue_name))
        if queue.has_exclusive_consumer or (exclusive and queue.consumer_count):
            raise AccessRefused(f"{self._rs('queue', queue_name)} in exclusive use")
        sub = Subscription(
            queue,
            consumer,
            tag=tag,
            no_ack=no_ack,
            exclusive=exclusive,
            prefetch=prefetch,
            credit_group=credit_group,
            owner=owner,
            arguments=args,
        )
        if owner is not None:
            self._owner_subs.setdefault(owner, {})[sub] = None
        queue._add_subscription(sub)
        return sub

    def get(
        self, queue_name: str, no_ack: bool, owner: object = None
    ) -> tuple[Delivery, int] | None:
        """basic.get: (delivery, messages left) or None when the queue is empty."""
        return self._owned_queue(queue_name, owner).get(no_ack)

    def requeue_all(self, subscription: Subscription) -> None:
        """Return the subscription's unacked deliveries to its queue, in their original order."""
        subscription.requeue_unacked()

    def owner_closed(self, owner: object) -> None:
        """The owner (a connection) went away: cancel its subscriptions, requeueing what they
        had unacked, and delete the exclusive queues it declared."""
        subs = self._owner_subs.pop(owner, None)
        if subs:
            for sub in list(subs):
                sub.cancel(requeue_unacked=True)
        owned = self._exclusive.pop(owner, None)
        if owned:
            for queue in list(owned):
                self._delete_queue(queue)

    def _forget_subscription(self, sub: Subscription) -> None:
        if sub.owner is None:
            return
        subs = self._owner_subs.get(sub.owner)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._owner_subs[sub.owner]
