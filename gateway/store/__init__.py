"""The embedded store (DESIGN.md section 7): SQLite in WAL mode under the data directory,
written by one thread with group commit; recovery at start; an offline check."""

from gateway.store.check import CheckReport, check_data_dir
from gateway.store.observer import StoreObserver
from gateway.store.recovery import Recovered
from gateway.store.schema import DB_NAME, SCHEMA_VERSION, StoreError, open_database
from gateway.store.store import Store
from gateway.store.writer import RecordLog, SqliteSink, StoreWriter

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "CheckReport",
    "RecordLog",
    "Recovered",
    "SqliteSink",
    "Store",
    "StoreError",
    "StoreObserver",
    "StoreWriter",
    "check_data_dir",
    "open_database",
]
