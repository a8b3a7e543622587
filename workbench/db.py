"""One SQLite connection per process, WAL, fsync on commit, and registered schema migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from workbench import privacy
from workbench.errors import AuditError

BUSY_TIMEOUT_MS = 30_000

# (name, statements): applied once per database, in order, inside one transaction each.
Migration = tuple[str, Sequence[str]]


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), WAL, synchronous=FULL.

    A new database is created 0600 in a 0700 folder whatever the umask (SQLite gives its -wal
    and -shm files the database's mode)."""
    try:
        privacy.create_file(path)
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except (sqlite3.DatabaseError, OSError) as exc:
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
