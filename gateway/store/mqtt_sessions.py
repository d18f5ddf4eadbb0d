"""Persistent MQTT sessions in the store: one row per client id, rewritten on every change.

A row is a snapshot: the session expiry interval, when a detached session ends (wall time), its
subscriptions with their options and identifiers, the QoS 2 packet ids PUBREC'd and awaiting
PUBREL (inbound), and the outbound QoS 2 packet ids whose PUBREL is due (the client PUBREC'd
them: a restarted gateway sends their PUBREL before it may reuse the ids). The hub calls
:class:`SessionRecorder` when one of these changes (subscribe, unsubscribe, connect,
disconnect, a QoS 2 PUBLISH or its PUBREL, a PUBREC or PUBCOMP from the client) and when a
session ends. The session's queued messages live in its durable queue, stored like any other.

The QoS 1/2 messages of that queue in flight to the client (sent, not yet PUBACK'd/PUBREC'd)
keep their packet ids in ``mqtt_inflight`` (schema version 2): one row per message, written when
it is sent (:meth:`SessionRecorder.sent`) and deleted by the writer with the message itself, so
a restarted gateway resends them under the same ids [MQTT-4.4.0-1].
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec

from gateway.mqtt.packets import SubscriptionOptions
from gateway.store.schema import SEQ_BITS, SEQ_MASK
from gateway.store.writer import INFLIGHT, SQL, RecordLog

if TYPE_CHECKING:
    from gateway.core.queues import Queue


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
    # (queue sequence number, packet id, QoS) of the session queue's messages in flight to
    # the client, in the order they were sent.
    outbound: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)


NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5: a Session Expiry Interval that never ends

_SAVE = (
    "INSERT OR REPLACE INTO mqtt_sessions (client_id, expiry_interval, expires_at, state)"
    " VALUES (?, ?, ?, ?)"
)
_DELETE = "DELETE FROM mqtt_sessions WHERE client_id = ?"
_DELETE_INFLIGHT = "DELETE FROM mqtt_inflight WHERE client_id = ?"
_NO_QUEUES: dict[Queue, int] = {}
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Row).decode


class SessionRecorder:
    def __init__(
        self,
        log: RecordLog,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        queue_ids: Mapping[Queue, int] = _NO_QUEUES,
    ) -> None:
        self._append = log.append
        self._clock = clock
        self._wall_clock = wall_clock
        # The store observer's queue ids (the same dict: it follows declarations).
        self._qids = queue_ids

    def sent(self, client_id: str, queue: Queue, seq: int, packet_id: int, qos: int) -> None:
        """A persistent message of ``queue`` went to the client under ``packet_id`` (call for
        persistent sessions only). Nothing is written unless the message row is stored."""
        qid = self._qids.get(queue)
        if qid is not None:
            self._append((INFLIGHT, (qid << SEQ_BITS) | seq, (client_id, packet_id, qos)))

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
        self._append((SQL, _DELETE_INFLIGHT, (client_id,)))


def load_sessions(
    db: sqlite3.Connection, clock: Callable[[], float], wall_clock: Callable[[], float]
) -> tuple[list[StoredSession], list[str]]:
    """(sessions still alive, client ids of stored sessions that expired while down).

    A session that was connected when the gateway stopped counts as disconnected then: it
    expires ``expiry_interval`` seconds after the restart.
    """
    now, wall_now = clock(), wall_clock()
    outbound: dict[str, list[tuple[int, int, int]]] = {}
    # Message order is send order: a session queue hands its messages out head first.
    for message_id, owner, packet_id, qos in db.execute(
        "SELECT message_id, client_id, packet_id, qos FROM mqtt_inflight ORDER BY message_id"
    ):
        outbound.setdefault(owner, []).append((message_id & SEQ_MASK, packet_id, qos))
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
                outbound.get(client_id, []),
            )
        )
    return alive, ended
