"""``gateway store check``: verify a data directory offline, without changing it.

Opens the file read-only, so a store from a newer gateway is reported and one from an older
version is checked as it is, not migrated (the gateway migrates it at start). Checks SQLite's
``integrity_check``, the schema version, that every message belongs to a stored queue, that
every binding's ends exist and that every in-flight packet id (version 2) has its message.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.schema import DB_NAME, SCHEMA_VERSION, SEQ_BITS


@dataclass
class CheckReport:
    path: Path
    schema_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"store: {self.path}", f"schema version: {self.schema_version}"]
        out.extend(f"{name}: {count}" for name, count in self.counts.items())
        out.extend(f"problem: {problem}" for problem in self.problems)
        out.append("ok" if self.ok else "FAILED")
        return out


def _count(db: sqlite3.Connection, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


def check_data_dir(data_dir: str | Path) -> CheckReport:
    path = Path(data_dir) / DB_NAME
    report = CheckReport(path)
    if not path.is_file():
        report.problems.append("no store file")
        return report
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open: {exc}")
        return report
    try:
        _check(db, report)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"unreadable: {exc}")
    finally:
        db.close()
    return report


def _check(db: sqlite3.Connection, report: CheckReport) -> None:
    integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        report.problems.extend(f"integrity: {line}" for line in integrity[:20])
        return
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        report.problems.append("not a gateway store (no meta table)")
        return
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        report.problems.append("meta.schema_version is missing or not a number")
        return
    version = report.schema_version = int(row[0])
    if version > SCHEMA_VERSION:
        report.problems.append(
            f"schema version {version} is newer than this gateway knows ({SCHEMA_VERSION})"
        )
        return
    if version < 1:
        report.problems.append(f"schema version {version} is not a gateway store version")
        return
    stored = ["exchanges", "queues", "bindings", "messages", "retained", "mqtt_sessions",
              "mqtt_wills"]  # fmt: skip
    if version >= 2:
        stored.append("mqtt_inflight")
    for table in stored:
        report.counts[table] = _count(db, f"SELECT COUNT(*) FROM {table}")
    orphans = _count(
        db,
        f"SELECT COUNT(*) FROM messages WHERE (id >> {SEQ_BITS}) NOT IN (SELECT id FROM queues)",
    )
    if orphans:
        report.problems.append(f"{orphans} messages belong to no stored queue")
    dangling = _count(
        db,
        "SELECT COUNT(*) FROM bindings b WHERE NOT ("
        " (b.destination_is_queue AND EXISTS (SELECT 1 FROM queues q"
        "   WHERE q.vhost = b.vhost AND q.name = b.destination))"
        " OR (NOT b.destination_is_queue AND EXISTS (SELECT 1 FROM exchanges x"
        "   WHERE x.vhost = b.vhost AND x.name = b.destination))"
        " OR b.destination LIKE 'amq.%')",
    )
    if dangling:
        report.problems.append(f"{dangling} bindings lead to no stored queue or exchange")
    if version >= 2:
        lost = _count(
            db,
            "SELECT COUNT(*) FROM mqtt_inflight WHERE message_id NOT IN (SELECT id FROM messages)",
        )
        if lost:
            report.problems.append(f"{lost} in-flight packet ids belong to no stored message")
