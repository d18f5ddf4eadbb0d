"""Golden store files of every schema version load as written; damaged ones are refused and
left as they were (the gateway never starts empty over data it could not read)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.amqp.codec import decode_properties
from gateway.core.broker import Broker
from gateway.mqtt.packets import SubscriptionOptions
from gateway.store import DB_NAME, SCHEMA_VERSION, Store, StoreError, check_data_dir
from tests.unit.store.golden_maker import (
    BODIES,
    GOLDEN,
    GOLDEN_INFLIGHT,
    GOLDEN_WILL,
    PROPS,
    RETAINED,
)

VERSIONS = range(1, SCHEMA_VERSION + 1)


def install(name: str, tmp_path: Path) -> Path:
    target = tmp_path / DB_NAME
    shutil.copyfile(GOLDEN / name, target)
    return target


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_recovers_topology_and_messages(version: int, tmp_path: Path) -> None:
    install(f"v{version}.db", tmp_path)
    store = Store.open(tmp_path)
    broker = Broker(lambda: 0.0)
    counts = store.recover(broker)
    store.close()
    assert (counts.exchanges, counts.queues, counts.bindings, counts.messages) == (2, 2, 3, 3)
    vhost = broker.vhost("/")
    gx = vhost.exchange("gx")
    assert (gx.type_name, gx.durable, gx.alternate_exchange) == ("topic", True, "ae")
    assert vhost.exchange("ae").type_name == "fanout"
    with pytest.raises(Exception, match="transient-x"):
        vhost.exchange("transient-x")
    gq = vhost.queue("gq")
    assert (gq.durable, gq.max_length) == (True, 100)
    assert vhost.queue("acked").message_count == 0
    bindings = {(b.source, b.destination, b.routing_key) for b in vhost.bindings()}
    assert {("gx", "gq", "a.*"), ("gx", "ae", "#"), ("amq.direct", "gq", "k")} <= bindings
    entries = gq.ready_entries()
    assert [e.message.body for e in entries] == BODIES
    assert all(e.redelivered for e in entries)
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    message = entries[0].message
    assert (message.exchange, message.routing_key, message.persistent) == ("gx", "a.b", True)
    assert message.properties == PROPS
    assert decode_properties(message.raw_properties or b"") == PROPS
    assert broker.queued_bytes == sum(len(b) for b in BODIES)


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_passes_the_offline_check(version: int, tmp_path: Path) -> None:
    install(f"v{version}.db", tmp_path)
    report = check_data_dir(tmp_path)
    assert report.ok, report.problems
    assert report.schema_version == version
    expected = {
        "exchanges": 2,
        "queues": 2,
        "bindings": 3,
        "messages": 3,
        "retained": 2,
        "mqtt_sessions": 1,
        "mqtt_wills": 1,
    }
    if version >= 2:
        expected["mqtt_inflight"] = len(GOLDEN_INFLIGHT)
    assert report.counts == expected


def test_a_v1_file_migrates_to_the_current_version(tmp_path: Path) -> None:
    target = install("v1.db", tmp_path)
    assert check_data_dir(tmp_path).schema_version == 1
    Store.open(tmp_path).close()
    report = check_data_dir(tmp_path)
    assert report.ok, report.problems
    assert report.schema_version == SCHEMA_VERSION == 2
    assert report.counts["mqtt_inflight"] == 0
    assert report.counts["messages"] == 3
    # Migrated once: opening it again changes nothing.
    before = target.read_bytes()
    Store.open(tmp_path).close()
    assert check_data_dir(tmp_path).counts == report.counts
    assert len(target.read_bytes()) == len(before)


def test_check_reports_in_flight_ids_without_their_message(tmp_path: Path) -> None:
    target = install(f"v{SCHEMA_VERSION}.db", tmp_path)
    db = sqlite3.connect(target)
    db.execute("DELETE FROM messages WHERE id = (SELECT MIN(message_id) FROM mqtt_inflight)")
    db.commit()
    db.close()
    report = check_data_dir(tmp_path)
    assert report.problems == ["1 in-flight packet ids belong to no stored message"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (f"v{SCHEMA_VERSION}-corrupt.db", "malformed|corrupt"),
        (f"v{SCHEMA_VERSION}-truncated.db", "malformed|corrupt"),
        ("not-a-database.db", "not a database"),
        ("v99-newer.db", "schema version 99 is newer than this gateway knows"),
    ],
)
def test_damaged_or_newer_files_are_refused_and_kept(
    name: str, reason: str, tmp_path: Path
) -> None:
    target = install(name, tmp_path)
    before = target.read_bytes()
    with pytest.raises(StoreError, match=reason) as info:
        Store.open(tmp_path)
    assert str(target) in str(info.value)
    assert target.read_bytes() == before
    report = check_data_dir(tmp_path)
    assert not report.ok
    assert any(re.search(reason, p) for p in report.problems), report.problems


def test_check_reports_a_missing_store(tmp_path: Path) -> None:
    report = check_data_dir(tmp_path)
    assert report.problems == ["no store file"]
    assert "FAILED" in report.lines()


def test_an_empty_directory_gets_a_fresh_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "new")
    counts = store.recover(Broker(lambda: 0.0))
    store.close()
    assert counts.messages == 0
    assert check_data_dir(tmp_path / "new").schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_recovers_retained_messages(version: int, tmp_path: Path) -> None:
    install(f"v{version}.db", tmp_path)
    store = Store.open(tmp_path)
    loaded = store.load_retained(lambda: 50.0)
    store.close()
    got = {p.topic: (p.payload, p.qos, p.retain, p.properties) for p, _ in loaded}
    assert got == {topic: (payload, qos, True, props) for topic, payload, qos, props in RETAINED}
    expiries = {p.topic: expires_at for p, expires_at in loaded}
    assert expiries["plant/2/state"] is None
    left = expiries["plant/1/temp"]
    assert left is not None
    assert 50.0 + 3_000_000_000 < left < 50.0 + 4_000_000_000


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_recovers_mqtt_sessions(version: int, tmp_path: Path) -> None:
    install(f"v{version}.db", tmp_path)
    store = Store.open(tmp_path)
    sessions, ended = store.load_sessions(lambda: 10.0)
    store.close()
    assert ended == []
    assert [s.client_id for s in sessions] == ["dev-1"]
    session = sessions[0]
    assert session.expiry_interval == 4_000_000_000
    assert session.expires_at is not None
    assert 10.0 + 3_000_000_000 < session.expires_at < 10.0 + 4_000_000_000
    assert session.inbound_qos2 == [3, 9]
    [sub] = session.subscriptions  # the $share one is not kept
    assert (sub.full_filter, sub.topic_filter, sub.identifier) == (
        "plant/+/temp",
        "plant/+/temp",
        7,
    )
    assert sub.subscription_options == SubscriptionOptions(1, True, False, 2)
    assert (sub.binding_key, sub.bindings) == ("plant.*.temp", (("amq.topic", "plant.*.temp"),))
    # Version 2 on: the packet ids of gq's first two messages (seq 1, 2), in send order.
    inflight = GOLDEN_INFLIGHT if version >= 2 else []
    assert session.outbound == [(seq, pid, qos) for seq, (pid, qos) in enumerate(inflight, 1)]


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_recovers_delayed_wills(version: int, tmp_path: Path) -> None:
    install(f"v{version}.db", tmp_path)
    store = Store.open(tmp_path)
    wills = store.load_wills(lambda: 10.0)
    store.close()
    [(client_id, publish, due)] = wills
    assert client_id == "dev-1"
    assert (publish.topic, publish.payload, publish.qos, publish.retain) == (
        "plant/1/status",
        b"offline",
        1,
        True,
    )
    # The delay belongs to the will, not to the message it becomes.
    assert publish.properties == dataclasses.replace(
        GOLDEN_WILL.properties, will_delay_interval=None
    )
    assert 10.0 + 3_000_000_000 < due < 10.0 + 4_000_000_000


def test_a_data_directory_in_use_is_refused(tmp_path: Path) -> None:
    first = Store.open(tmp_path)
    with pytest.raises(StoreError, match="in use by another gateway process"):
        Store.open(tmp_path)
    first.close()
    Store.open(tmp_path).close()  # released with the first store
