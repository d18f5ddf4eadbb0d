"""Writes the golden store files of tests/unit/store/golden/ (run once per schema version).

    .venv/bin/python -m tests.unit.store.golden_maker

A golden file is written by the real store code (Store.open, attach, the core's observer calls,
close), then copied into the damaged variants: corrupt (b-tree pages overwritten), truncated
(the second half cut off), newer (schema_version 99) and not-a-database.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gateway.amqp.codec import encode_properties
from gateway.bridge.convert import MqttView
from gateway.core.broker import Broker
from gateway.core.message import Message, Properties
from gateway.mqtt.packets import EMPTY_PROPERTIES as EMPTY_PROPERTIES5
from gateway.mqtt.packets import Properties as Properties5
from gateway.mqtt.packets import SubscriptionOptions, Will
from gateway.mqtt.retained import RetainedStore
from gateway.mqtt.session_hub import RetainedValue
from gateway.store import DB_NAME, SCHEMA_VERSION, Store

GOLDEN = Path(__file__).parent / "golden"

# What every golden file of every version holds (the tests assert exactly this).
PROPS = Properties(
    content_type="text/plain",
    headers={"h": "v", "n": 7, "nested": {"a": [1, "b"]}},
    delivery_mode=2,
    priority=3,
    correlation_id="c-1",
    message_id="m-1",
    timestamp=1700000000,
)
BODIES = [b"first", b"second", b"\x00\xffbinary"]


def populate(broker: Broker) -> None:
    vhost = broker.vhost("/")
    vhost.declare_exchange("gx", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    vhost.declare_exchange("ae", "fanout", durable=True)
    vhost.declare_exchange("transient-x", "direct")
    vhost.declare_queue("gq", durable=True, arguments={"x-max-length": 100})
    vhost.declare_queue("acked", durable=True)
    vhost.bind_queue("gq", "gx", "a.*")
    vhost.bind_exchange("ae", "gx", "#")
    vhost.bind_queue("gq", "amq.direct", "k", {"x-match": "all"})
    raw = encode_properties(PROPS)
    for body in BODIES:
        vhost.publish(
            "gx",
            Message(
                "gx",
                "a.b",
                body,
                raw_properties=raw,
                decode_properties=lambda _: PROPS,
                persistent=True,
            ),
        )
    vhost.publish("gx", Message("gx", "a.b", b"transient", properties=Properties()))
    vhost.publish("", Message("", "acked", b"gone", properties=Properties(delivery_mode=2)))
    got = vhost.get("acked", no_ack=False)
    assert got is not None
    got[0].queue.ack(got[0])


# Retained MQTT messages: (topic, payload, qos, properties). Expiry is ~126 years away so the
# golden file's retained message is still live whenever the tests run.
RETAINED_PROPS = Properties5(
    content_type="application/json",
    user_properties=(("unit", "C"),),
    message_expiry_interval=4_000_000_000,
)
RETAINED = [
    ("plant/1/temp", b'{"t": 21.5}', 1, RETAINED_PROPS),
    ("plant/2/state", b"on", 0, EMPTY_PROPERTIES5),
]


def populate_retained(retained: RetainedStore[RetainedValue], clock: float) -> None:
    for topic, payload, qos, props in [*RETAINED, ("plant/3/gone", b"x", 1, EMPTY_PROPERTIES5)]:
        expiry = props.message_expiry_interval
        view = MqttView(topic, qos, True, props, expiry)
        expires_at = None if expiry is None else clock + expiry
        retained.set(topic, RetainedValue(view, payload), len(payload), expires_at)
    retained.clear("plant/3/gone")


@dataclass
class FakeSubscription:
    topic_filter: str
    options: SubscriptionOptions
    identifier: int | None
    binding_key: str
    share_group: str | None = None
    match_filter: str = ""
    bindings: tuple[tuple[str, str], ...] = ()


@dataclass
class FakeSession:
    client_id: str
    expiry_interval: int
    expires_at: float | None
    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)
    inbound_qos2: set[int] = field(default_factory=set)
    inflight: dict[int, FakeOutbound] = field(default_factory=dict)


@dataclass
class FakeOutbound:
    awaiting_pubcomp: bool


GOLDEN_WILL = Will(
    "plant/1/status", b"offline", 1, True, Properties5(will_delay_interval=30, content_type="t")
)


def golden_session() -> FakeSession:
    """A persistent session detached at clock 0 with ~126 years left (live whenever tested)."""
    return FakeSession(
        "dev-1",
        4_000_000_000,
        4_000_000_000.0,
        {
            "plant/+/temp": FakeSubscription(
                "plant/+/temp", SubscriptionOptions(1, True, False, 2), 7, "plant.*.temp",
                match_filter="plant/+/temp", bindings=(("amq.topic", "plant.*.temp"),),
            ),
            "$share/g/x": FakeSubscription("x", SubscriptionOptions(1), None, "x", "g"),
        },
        {3, 9},
    )  # fmt: skip


# (packet id, QoS) of gq's first two messages, in flight to dev-1 (schema version 2 on).
GOLDEN_INFLIGHT = [(4, 1), (2, 2)]


def write_golden(directory: Path) -> Path:
    loop = asyncio.new_event_loop()
    try:
        store = Store.open(directory)
        broker = Broker(lambda: 0.0)
        store.attach(broker, loop)
        populate(broker)
        retained: RetainedStore[RetainedValue] = RetainedStore(max_count=10, max_bytes=1000)
        retained.listener = store.retained_listener(lambda: 0.0)
        populate_retained(retained, 0.0)
        sessions = store.session_recorder(lambda: 0.0)
        sessions.saved(golden_session())
        sessions.saved(FakeSession("gone", 60, None))
        sessions.discarded("gone")
        # Version 2: two of gq's messages in flight to dev-1 (packet id, QoS), as
        # GOLDEN_INFLIGHT says; a third was sent and PUBACK'd.
        gq = broker.vhost("/").queue("gq")
        seqs = [entry.seq for entry in gq.ready_entries()]
        for seq, (packet_id, qos) in zip(seqs, GOLDEN_INFLIGHT, strict=False):
            sessions.sent("dev-1", gq, seq, packet_id, qos)
        acked = broker.vhost("/").queue("acked")
        acked.offer(Message("", "acked", b"sent", properties=Properties(delivery_mode=2)))
        got = broker.vhost("/").get("acked", no_ack=False)
        assert got is not None
        sessions.sent("dev-1", acked, got[0].entry.seq, 11, 1)
        got[0].queue.ack(got[0])
        wills = store.will_recorder(lambda: 0.0)
        wills.saved("dev-1", GOLDEN_WILL, 4_000_000_000.0)
        wills.saved("dev-2", Will("w/2", b"bye"), 10.0)
        wills.discarded("dev-2")
        store.close()
    finally:
        loop.close()
    return directory / DB_NAME


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = write_golden(Path(tmp))
        good = GOLDEN / f"v{SCHEMA_VERSION}.db"
        shutil.copyfile(source, good)
    data = good.read_bytes()
    page = 4096
    corrupt = bytearray(data)
    for start in range(page, len(corrupt), page):
        corrupt[start : start + 64] = b"\xa5" * 64
    (GOLDEN / f"v{SCHEMA_VERSION}-corrupt.db").write_bytes(bytes(corrupt))
    (GOLDEN / f"v{SCHEMA_VERSION}-truncated.db").write_bytes(data[: len(data) // 2])
    newer = GOLDEN / "v99-newer.db"
    shutil.copyfile(good, newer)
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    (GOLDEN / "not-a-database.db").write_bytes(b"this is a text file, not a store\n" * 200)


if __name__ == "__main__":
    main()
