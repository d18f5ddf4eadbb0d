"""Retained messages through the store: every set and clear is recorded; expiry deadlines move
from the hub's monotonic clock to wall time and back, minus the time the gateway was down."""

from __future__ import annotations

from pathlib import Path

from gateway.bridge.convert import MqttView
from gateway.mqtt.packets import EMPTY_PROPERTIES, Properties
from gateway.mqtt.retained import RetainedStore
from gateway.mqtt.session_hub import RetainedValue
from gateway.store import SqliteSink, Store, StoreWriter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def put(retained: RetainedStore[RetainedValue], topic: str, expires_at: float | None,
        payload: bytes = b"v") -> None:  # fmt: skip
    props = EMPTY_PROPERTIES if expires_at is None else Properties(message_expiry_interval=60)
    view = MqttView(topic, 1, True, props, props.message_expiry_interval)
    retained.set(topic, RetainedValue(view, payload), len(payload), expires_at)


def test_retained_changes_survive_and_expiry_counts_the_downtime(tmp_path: Path) -> None:
    mono, wall = Clock(100.0), Clock(1_000_000.0)
    store = Store.open(tmp_path)
    retained: RetainedStore[RetainedValue] = RetainedStore(max_count=10, max_bytes=100)
    retained.listener = store.retained_listener(mono, wall)
    put(retained, "a/short", expires_at=110.0)  # 10 s left
    put(retained, "a/long", expires_at=160.0)  # 60 s left
    put(retained, "a/forever", expires_at=None, payload=b"old")
    put(retained, "a/forever", expires_at=None, payload=b"new")  # replaced
    put(retained, "a/cleared", expires_at=None)
    retained.clear("a/cleared")
    put(retained, "a/empty", expires_at=None)
    put(retained, "a/empty", expires_at=None, payload=b"")  # an empty payload clears it
    assert store.writer is None  # not attached: recorded, committed by close
    StoreWriter(store.log, SqliteSink(store.db), lambda _: None).drain()
    store.close()
    # 30 s later, on a monotonic clock that restarted at 5.
    again = Store.open(tmp_path)
    loaded = again.load_retained(Clock(5.0), Clock(1_000_030.0))
    again.close()
    got = {p.topic: (p.payload, expires_at) for p, expires_at in loaded}
    assert got == {"a/long": (b"v", 5.0 + 30.0), "a/forever": (b"new", None)}
