"""One SQLite connection per process, WAL, fsync on commit, and registered schema migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import AuditError

BUSY_TIMEOUT_MS = 30_000

# (name, statements): applied once per database, in order, inside one transaction each.
Migration = tuple[str, Sequence[str]]


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open an existing database for reading only; it works on a read-only copy (an archive, a
    read-only mount) too. A copy whose write-ahead log cannot be read is refused, never read
    without its newest events."""
    if not path.is_file():
        raise AuditError(f"no workbench database at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        pass  # a read-only folder: SQLite cannot make the WAL index it reads through
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise AuditError(
            f"{path} is read-only and its write-ahead log {wal.name} holds events not yet merged:"
            " copy the home somewhere writable to read it"
        )
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"  # nobody can write a read-only copy
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot read the workbench database {path}: {exc}") from exc
    return conn


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), WAL, synchronous=FULL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot open the workbench database {path}: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> None:
    """Apply the component's migrations that this database has not seen, each atomically."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (component, name))"
    )
    for name, statements in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE component = ? AND name = ?",
                (component, name),
            ).fetchone()
            if not done:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (component, name) VALUES (?, ?)",
                    (component, name),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
