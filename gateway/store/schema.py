"""The on-disk format: one SQLite file in WAL mode, a versioned schema and its migrations.

``meta.schema_version`` names the layout. Migrations are an ordered list of functions: entry
``i`` turns version ``i`` into ``i + 1`` (entry 0 creates version 1 in an empty file). A file
from a newer version, a file that is not a SQLite database, or one that fails SQLite's own
integrity check is refused with :class:`StoreError`; the gateway never starts empty over data
it could not read.

Message rows are keyed ``queue_id << 40 | seq``: one ordered scan of the primary key gives every
queue's messages in queue order, and a queue's rows are one contiguous key range. Retained MQTT
messages are stored as the MQTT 5 PUBLISH packet that re-creates them, expiry in wall time.

Version 2 adds ``mqtt_inflight``: the packet id (and QoS) under which a stored message of a
persistent MQTT session's queue was sent to the client and not yet PUBACK'd/PUBREC'd, keyed by
the message row, so a restarted gateway resends it under that id [MQTT-4.4.0-1].
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

DB_NAME: Final = "gateway.db"
SEQ_BITS: Final = 40
SEQ_MASK: Final = (1 << SEQ_BITS) - 1


class StoreError(Exception):
    """The data directory cannot be used; the text says which file and why."""


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # Not executescript: it would commit the migration's transaction halfway.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _create_v1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE exchanges (
            vhost TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
            auto_delete INTEGER NOT NULL, internal INTEGER NOT NULL, arguments BLOB NOT NULL,
            PRIMARY KEY (vhost, name));
        CREATE TABLE queues (
            id INTEGER PRIMARY KEY, vhost TEXT NOT NULL, name TEXT NOT NULL,
            auto_delete INTEGER NOT NULL, arguments BLOB NOT NULL, UNIQUE (vhost, name));
        CREATE TABLE bindings (
            vhost TEXT NOT NULL, source TEXT NOT NULL, destination TEXT NOT NULL,
            destination_is_queue INTEGER NOT NULL, routing_key TEXT NOT NULL,
            arguments BLOB NOT NULL,
            UNIQUE (vhost, source, destination, destination_is_queue, routing_key, arguments));
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY, exchange TEXT NOT NULL, routing_key TEXT NOT NULL,
            properties BLOB NOT NULL, body BLOB NOT NULL);
        CREATE TABLE retained (
            topic TEXT PRIMARY KEY, packet BLOB NOT NULL, expires_at REAL);
        CREATE TABLE mqtt_sessions (
            client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, expires_at REAL,
            state BLOB NOT NULL);
        CREATE TABLE mqtt_wills (
            client_id TEXT PRIMARY KEY, packet BLOB NOT NULL, due REAL NOT NULL);
        """,
    )


def _v1_to_v2(db: sqlite3.Connection) -> None:
    # No foreign key: a row goes with its message in the writer (``SqliteSink``), and with
    # its queue's range delete.
    db.execute(
        "CREATE TABLE mqtt_inflight (message_id INTEGER PRIMARY KEY, client_id TEXT NOT NULL,"
        " packet_id INTEGER NOT NULL, qos INTEGER NOT NULL)"
    )


# MIGRATIONS[i] upgrades schema version i to i + 1.
MIGRATIONS: Final[list[Callable[[sqlite3.Connection], None]]] = [_create_v1, _v1_to_v2]
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit BEGIN/COMMIT pairs (group commit).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when COMMIT returns; confirms are sent after it.
    db.execute("PRAGMA synchronous=FULL")
    return db


def _version(db: sqlite3.Connection, path: Path) -> int:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return 0
    if "meta" not in tables:
        raise StoreError(f"{path}: not a gateway store (no meta table)")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise StoreError(f"{path}: meta.schema_version is missing or not a number")
    return int(row[0])


def open_database(path: Path, *, check: bool = True, create: bool = True) -> sqlite3.Connection:
    """Open (or create) the store file, migrate it to :data:`SCHEMA_VERSION` and return it.

    ``check`` runs ``PRAGMA quick_check`` first (a torn or overwritten page is found here, not
    halfway through recovery). Raises :class:`StoreError` with the reason.
    """
    if not create and not path.exists():
        raise StoreError(f"{path}: no store file")
    try:
        db = _connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        if check:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreError(f"{path}: corrupt: {'; '.join(problems[:5])}")
        version = _version(db, path)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {version} is newer than this gateway knows"
                f" ({SCHEMA_VERSION}); run the newer gateway or restore a backup"
            )
        if version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            for migrate in MIGRATIONS[version:]:
                migrate(db)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            db.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path}: unreadable: {exc}") from None
    except StoreError:
        db.close()
        raise
    return db
