"""Retained MQTT messages in the store: each one as the MQTT 5 PUBLISH that re-creates it.

The retained store tells :class:`RetainedRecorder` of every change (set or clear); the record
goes into the same group-commit stream as everything else, so a retained QoS 1 PUBLISH's PUBACK
also waits for its commit. Expiry deadlines are kept as wall-clock time and turned back into
the hub's monotonic clock at recovery (what is left of them; expired ones are not loaded).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import MQTT_5, Properties, Publish
from gateway.store.writer import SQL, RecordLog


class _View(Protocol):
    @property
    def qos(self) -> int: ...

    @property
    def properties(self) -> Properties: ...


class _Value(Protocol):
    @property
    def view(self) -> _View: ...

    @property
    def payload(self) -> bytes: ...


class RetainedItem(Protocol):
    """The retained store's entry, as far as the store reads it."""

    @property
    def value(self) -> _Value: ...

    @property
    def expires_at(self) -> float | None: ...


def encode_publish(publish: Publish) -> bytes:
    return encode(publish, MQTT_5)


def decode_publish(packet: bytes) -> Publish:
    decoded = PacketDecoder(protocol_level=MQTT_5).feed(packet)
    if len(decoded) != 1 or not isinstance(decoded[0], Publish):
        raise sqlite3.DatabaseError(f"stored packet is not one PUBLISH: {packet[:16]!r}")
    return decoded[0]


_SET = "INSERT OR REPLACE INTO retained (topic, packet, expires_at) VALUES (?, ?, ?)"
_CLEAR = "DELETE FROM retained WHERE topic = ?"


class RetainedRecorder:
    """The retained store's listener: ``(topic, item or None)`` becomes a store record."""

    def __init__(
        self, log: RecordLog, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        self._append = log.append
        self._clock = clock
        self._wall_clock = wall_clock

    def __call__(self, topic: str, item: RetainedItem | None) -> None:
        if item is None:
            self._append((SQL, _CLEAR, (topic,)))
            return
        value = item.value
        view = value.view
        publish = Publish(topic, value.payload, view.qos, True, False,
                          1 if view.qos else None, view.properties)  # fmt: skip
        expires_at = item.expires_at
        wall = None if expires_at is None else self._wall_clock() + (expires_at - self._clock())
        self._append((SQL, _SET, (topic, encode_publish(publish), wall)))


def load_retained(
    db: sqlite3.Connection, clock: Callable[[], float], wall_clock: Callable[[], float]
) -> list[tuple[Publish, float | None]]:
    """The stored retained messages still live: (PUBLISH, expiry on ``clock`` or None)."""
    now, wall_now = clock(), wall_clock()
    out: list[tuple[Publish, float | None]] = []
    for packet, wall in db.execute("SELECT packet, expires_at FROM retained ORDER BY topic"):
        if wall is not None and wall <= wall_now:
            continue
        out.append((decode_publish(packet), None if wall is None else now + (wall - wall_now)))
    return out
