"""Start-up recovery: topology, then messages, from the store file into a fresh broker.

Runs before the store's observer is attached, so nothing recovered is written back. Messages
come from one ordered scan of the ``messages`` primary key, which is queue by queue in queue
order; every recovered message is marked redelivered (RabbitMQ's rule for messages that *may*
have been delivered: the store does not spend a write per delivery to know which were).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from gateway.amqp.codec import decode_properties, decode_table, peek_delivery_mode_expiration
from gateway.core.broker import Broker
from gateway.core.errors import CoreError
from gateway.core.message import Message, parse_expiration
from gateway.core.queues import Queue
from gateway.store.schema import SEQ_BITS, SEQ_MASK

_FETCH: int = 10_000


@dataclass
class Recovered:
    exchanges: int = 0
    queues: int = 0
    bindings: int = 0
    messages: int = 0
    # Rows whose queue row is gone (never expected; counted, not loaded).
    orphans: int = 0
    # Stored topology the broker refused (say, an exchange the mapping rules now declare
    # with another type): skipped, each with the reason.
    skipped: list[str] = field(default_factory=list)


def recover_topology(
    db: sqlite3.Connection, broker: Broker, counts: Recovered
) -> tuple[dict[Queue, int], dict[int, Queue]]:
    """Declare the stored exchanges, queues and bindings; returns the queue id maps."""
    for vhost, name, type_, auto_delete, internal, args in db.execute(
        "SELECT vhost, name, type, auto_delete, internal, arguments FROM exchanges ORDER BY rowid"
    ):
        try:
            broker.add_vhost(vhost).declare_exchange(
                name,
                type_,
                durable=True,
                auto_delete=bool(auto_delete),
                internal=bool(internal),
                arguments=decode_table(args),
            )
        except CoreError as exc:
            counts.skipped.append(f"exchange {name!r} in vhost {vhost!r}: {exc.text}")
            continue
        counts.exchanges += 1
    by_queue: dict[Queue, int] = {}
    by_id: dict[int, Queue] = {}
    for qid, vhost, name, auto_delete, args in db.execute(
        "SELECT id, vhost, name, auto_delete, arguments FROM queues ORDER BY id"
    ):
        vh = broker.add_vhost(vhost)
        try:
            vh.declare_queue(
                name, durable=True, auto_delete=bool(auto_delete), arguments=decode_table(args)
            )
        except CoreError as exc:
            # Its messages are not loaded (counted as orphans) and stay on disk.
            counts.skipped.append(f"queue {name!r} in vhost {vhost!r}: {exc.text}")
            continue
        queue = vh.queue(name)
        by_queue[queue] = qid
        by_id[qid] = queue
        counts.queues += 1
    for vhost, source, dest, is_queue, key, args in db.execute(
        "SELECT vhost, source, destination, destination_is_queue, routing_key, arguments"
        " FROM bindings ORDER BY rowid"
    ):
        vh = broker.add_vhost(vhost)
        try:
            if is_queue:
                vh.bind_queue(dest, source, key, decode_table(args))
            else:
                vh.bind_exchange(dest, source, key, decode_table(args))
        except CoreError as exc:
            counts.skipped.append(f"binding {source!r} -> {dest!r} ({key!r}): {exc.text}")
            continue
        counts.bindings += 1
    return by_queue, by_id


class MessageBuilder:
    """Messages from rows; equal property bytes, exchanges and keys share one object (a
    backlog of a million messages from one publisher would otherwise hold a million copies)."""

    def __init__(self) -> None:
        self._props: dict[bytes, tuple[bytes, int | None]] = {}
        self._names: dict[str, str] = {}

    def message(self, exchange: str, routing_key: str, raw: bytes, body: bytes) -> Message:
        found = self._props.get(raw)
        if found is None:
            _, expiration = peek_delivery_mode_expiration(raw)
            ttl = None if expiration is None else parse_expiration(expiration)
            found = (raw, ttl)
            if len(self._props) < 10_000:
                self._props[raw] = found
        names = self._names
        if len(names) < 100_000:
            exchange = names.setdefault(exchange, exchange)
            routing_key = names.setdefault(routing_key, routing_key)
        return Message(
            exchange,
            routing_key,
            body,
            raw_properties=found[0],
            decode_properties=decode_properties,
            persistent=True,
            expiration_ms=found[1],
        )


def recover_messages(db: sqlite3.Connection, by_id: dict[int, Queue], counts: Recovered) -> None:
    cursor = db.execute(
        "SELECT id, exchange, routing_key, properties, body FROM messages ORDER BY id"
    )
    current: int | None = None
    pending: list[tuple[int, Message]] = []
    build = MessageBuilder().message
    while rows := cursor.fetchmany(_FETCH):
        for rowid, exchange, routing_key, raw, body in rows:
            qid = rowid >> SEQ_BITS
            if qid != current:
                if pending and current is not None:
                    by_id[current].restore(pending)
                    pending = []
                current = qid
            if qid not in by_id:
                counts.orphans += 1
                continue
            pending.append((rowid & SEQ_MASK, build(exchange, routing_key, raw, body)))
            counts.messages += 1
        if pending and current is not None:
            # Hand over per fetch: the queue holds them, this list does not grow past _FETCH.
            by_id[current].restore(pending)
            pending = []
