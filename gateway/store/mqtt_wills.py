"""Delayed MQTT wills in the store: a will waiting out its Will Delay survives a restart.

Stored as the MQTT 5 PUBLISH the will becomes (without the Will Delay Interval, which belongs to
the will, not to the message) and the wall time it is due. A will that fell due while the
gateway was down is due at once after the restart.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from typing import Protocol

from gateway.mqtt.packets import Properties, Publish
from gateway.store.mqtt_retained import decode_publish, encode_publish
from gateway.store.writer import SQL, RecordLog


class WillMessage(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def qos(self) -> int: ...

    @property
    def retain(self) -> bool: ...

    @property
    def properties(self) -> Properties: ...


_SAVE = "INSERT OR REPLACE INTO mqtt_wills (client_id, packet, due) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM mqtt_wills WHERE client_id = ?"


class WillRecorder:
    def __init__(
        self, log: RecordLog, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        self._append = log.append
        self._clock = clock
        self._wall_clock = wall_clock

    def saved(self, client_id: str, will: WillMessage, due: float) -> None:
        """``will`` is pending for ``client_id`` until ``due`` (on the hub's clock)."""
        props = will.properties
        if props.will_delay_interval is not None:
            props = dataclasses.replace(props, will_delay_interval=None)
        publish = Publish(will.topic, will.payload, will.qos, will.retain, False,
                          1 if will.qos else None, props)  # fmt: skip
        wall = self._wall_clock() + (due - self._clock())
        self._append((SQL, _SAVE, (client_id, encode_publish(publish), wall)))

    def discarded(self, client_id: str) -> None:
        self._append((SQL, _DELETE, (client_id,)))


def load_wills(
    db: sqlite3.Connection, clock: Callable[[], float], wall_clock: Callable[[], float]
) -> list[tuple[str, Publish, float]]:
    """Pending wills as (client id, the PUBLISH, due on ``clock``), earliest first."""
    now, wall_now = clock(), wall_clock()
    return [
        (client_id, decode_publish(packet), now + max(0.0, due - wall_now))
        for client_id, packet, due in db.execute(
            "SELECT client_id, packet, due FROM mqtt_wills ORDER BY due"
        )
    ]
