"""Persistent MQTT sessions in the store: one row per client id, rewritten on every change.

A row is a snapshot: the session expiry interval, when a detached session ends (wall time), its
subscriptions with their options and identifiers, the QoS 2 packet ids PUBREC'd and awaiting
PUBREL (inbound), and the outbound QoS 2 packet ids whose PUBREL is due (the client PUBREC'd
them: a restarted gateway sends their PUBREL before it may reuse the ids). The hub calls
:class:`SessionRecorder` when one of these changes (subscribe, unsubscribe, connect,
disconnect, a QoS 2 PUBLISH or its PUBREL, a PUBREC or PUBCOMP from the client) and when a
session ends. The session's queued messages live in its durable queue, stored like any other.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

from gateway.mqtt.packets import SubscriptionOptions
from gateway.store.writer import SQL, RecordLog


class _Subscription(Protocol):
    @property
    def topic_filter(self) -> str: ...

    @property
    def options(self) -> SubscriptionOptions: ...

    @property
    def identifier(self) -> int | None: ...

    @property
    def binding_key(self) -> str: ...

    @property
    def share_group(self) -> str | None: ...

    @property
    def match_filter(self) -> str: ...

    @property
    def bindings(self) -> tuple[tuple[str, str], ...]: ...


class SessionState(Protocol):
    """What the store reads from an MQTT session."""

    @property
    def client_id(self) -> str: ...

    @property
    def expiry_interval(self) -> int: ...

    @property
    def expires_at(self) -> float | None: ...

    @property
    def subscriptions(self) -> Mapping[str, _Subscription]: ...

    @property
    def inbound_qos2(self) -> Iterable[int]: ...

    @property
    def inflight(self) -> Mapping[int, _Outbound]: ...


class _Outbound(Protocol):
    @property
    def awaiting_pubcomp(self) -> bool: ...


class StoredSubscription(msgspec.Struct, array_like=True, frozen=True):
    full_filter: str
    topic_filter: str
    options: tuple[int, bool, bool, int]  # qos, no local, retain as published, retain handling
    identifier: int | None
    binding_key: str
    match_filter: str
    bindings: tuple[tuple[str, str], ...]

    @property
    def subscription_options(self) -> SubscriptionOptions:
        return SubscriptionOptions(*self.options)


class _Row(msgspec.Struct, array_like=True):
    subscriptions: list[StoredSubscription]
    inbound_qos2: list[int]
    # Added later: rows written before it decode with an empty list.
    outbound_pubrel: list[int] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredSession:
    client_id: str
    expiry_interval: int
    expires_at: float | None  # on the caller's clock; None while it was connected
    subscriptions: list[StoredSubscription]
    inbound_qos2: list[int]
    outbound_pubrel: list[int] = dataclasses.field(default_factory=list)


NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5: a Session Expiry Interval that never ends

_SAVE = (
    "INSERT OR REPLACE INTO mqtt_sessions (client_id, expiry_interval, expires_at, state)"
    " VALUES (?, ?, ?, ?)"
)
_DELETE = "DELETE FROM mqtt_sessions WHERE client_id = ?"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Row).decode


class SessionRecorder:
    def __init__(
        self, log: RecordLog, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        self._append = log.append
        self._clock = clock
        self._wall_clock = wall_clock

    def saved(self, session: SessionState) -> None:
        """The session's durable state changed (call only for persistent sessions)."""
        subs = [
            StoredSubscription(
                full_filter,
                sub.topic_filter,
                (
                    sub.options.qos,
                    sub.options.no_local,
                    sub.options.retain_as_published,
                    sub.options.retain_handling,
                ),
                sub.identifier,
                sub.binding_key,
                sub.match_filter,
                sub.bindings,
            )
            for full_filter, sub in session.subscriptions.items()
            # $share subscriptions consume non-durable shared queues: not kept.
            if sub.share_group is None
        ]
        expires_at = session.expires_at
        wall = None if expires_at is None else self._wall_clock() + (expires_at - self._clock())
        pubrel = sorted(pid for pid, out in session.inflight.items() if out.awaiting_pubcomp)
        state = _encode(_Row(subs, sorted(session.inbound_qos2), pubrel))
        self._append((SQL, _SAVE, (session.client_id, session.expiry_interval, wall, state)))

    def discarded(self, client_id: str) -> None:
        self._append((SQL, _DELETE, (client_id,)))


def load_sessions(
    db: sqlite3.Connection, clock: Callable[[], float], wall_clock: Callable[[], float]
) -> tuple[list[StoredSession], list[str]]:
    """(sessions still alive, client ids of stored sessions that expired while down).

    A session that was connected when the gateway stopped counts as disconnected then: it
    expires ``expiry_interval`` seconds after the restart.
    """
    now, wall_now = clock(), wall_clock()
    alive: list[StoredSession] = []
    ended: list[str] = []
    rows = db.execute(
        "SELECT client_id, expiry_interval, expires_at, state FROM mqtt_sessions ORDER BY rowid"
    )
    for client_id, expiry_interval, wall, state in rows:
        if wall is not None and wall <= wall_now:
            ended.append(client_id)
            continue
        try:
            row = _decode(state)
        except msgspec.DecodeError as exc:
            raise sqlite3.DatabaseError(f"session {client_id!r}: {exc}") from None
        if wall is not None:
            expires_at: float | None = now + (wall - wall_now)
        elif expiry_interval >= NEVER_EXPIRES:
            expires_at = None
        else:
            expires_at = now + expiry_interval
        alive.append(
            StoredSession(
                client_id,
                expiry_interval,
                expires_at,
                row.subscriptions,
                row.inbound_qos2,
                row.outbound_pubrel,
            )
        )
    return alive, ended
