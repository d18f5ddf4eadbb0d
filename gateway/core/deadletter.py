"""Dead-letter copies with RabbitMQ's ``x-death`` bookkeeping, and its cycle rule."""

from __future__ import annotations

import dataclasses
import datetime

from gateway.core.message import Message

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"


def _deaths(headers: dict[str, object]) -> list[dict[str, object]]:
    current = headers.get("x-death")
    if not isinstance(current, list):
        return []
    return [dict(entry) for entry in current if isinstance(entry, dict)]


def dead_letter_copy(
    message: Message,
    *,
    queue: str,
    reason: str,
    exchange: str,
    routing_key: str | None,
    wall_time: float,
) -> tuple[Message, list[dict[str, object]]]:
    """The message as republished to ``exchange``, and its updated ``x-death`` list.

    One ``x-death`` entry per (queue, reason): a repeat death increments its count and moves it
    to the front. The first death also sets ``x-first-death-*``; every death sets
    ``x-last-death-*``. The per-message expiration is dropped (recorded as
    ``original-expiration``) so the copy does not expire again for the same reason.
    """
    props = message.properties
    headers: dict[str, object] = dict(props.headers) if props.headers else {}
    deaths = _deaths(headers)
    existing = next(
        (i for i, d in enumerate(deaths) if d.get("queue") == queue and d.get("reason") == reason),
        None,
    )
    if existing is not None:
        death = deaths.pop(existing)
        count = death.get("count")
        death["count"] = (count if isinstance(count, int) else 0) + 1
    else:
        death = {
            "count": 1,
            "reason": reason,
            "queue": queue,
            "time": datetime.datetime.fromtimestamp(int(wall_time), tz=datetime.UTC),
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        if props.expiration is not None:
            death["original-expiration"] = props.expiration
    if "x-death" not in headers:
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue
        headers["x-first-death-exchange"] = message.exchange
    headers["x-last-death-reason"] = reason
    headers["x-last-death-queue"] = queue
    headers["x-last-death-exchange"] = message.exchange
    deaths.insert(0, death)
    headers["x-death"] = deaths
    copy = message.with_properties(
        dataclasses.replace(props, headers=headers, expiration=None),
        exchange=exchange,
        routing_key=message.routing_key if routing_key is None else routing_key,
    )
    return copy, deaths


def is_cycle(queue: str, deaths: list[dict[str, object]]) -> bool:
    """RabbitMQ's rule: dropping into ``queue`` again closes a cycle when the message already
    died there and no death since then (that one included) was a client rejection."""
    for index, death in enumerate(deaths):
        if death.get("queue") == queue:
            return all(d.get("reason") != REJECTED for d in deaths[: index + 1])
    return False
