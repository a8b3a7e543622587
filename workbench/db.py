"""SQLite connections (one per thread), WAL, fsync on commit, and registered schema migrations.

sqlite3 objects may only be used by the thread that created them, and a notebook's widget callbacks
run on another thread than its cells (ipykernel 7 subshells). :class:`ThreadConnections` gives each
thread its own connection to the same file; SQLite's write lock (``BEGIN IMMEDIATE``) still lets
one writer at a time commit, across threads and processes alike.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from workbench import privacy
from workbench.errors import AuditError

BUSY_TIMEOUT_MS = 30_000

# (name, statements): applied once per database, in order, inside one transaction each.
Migration = tuple[str, Sequence[str]]


def connect_read_only(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open an existing database for reading only; it works on a read-only copy (an archive, a
    read-only mount) too. A copy whose write-ahead log cannot be read is refused, never read
    without its newest events."""
    if not path.is_file():
        raise AuditError(f"no workbench database at {path}")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=check_same_thread,
        )
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
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=check_same_thread
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot read the workbench database {path}: {exc}") from exc
    return conn


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), WAL, synchronous=FULL.

    A new database is created 0600 in a 0700 folder whatever the umask (SQLite gives its -wal
    and -shm files the database's mode)."""
    try:
        privacy.create_file(path)
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=check_same_thread,
        )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except (sqlite3.DatabaseError, OSError) as exc:
        raise AuditError(f"cannot open the workbench database {path}: {exc}") from exc
    return conn


class ThreadConnections:
    """One connection per thread to one database file, opened on the thread's first use.

    A connection is used only by the thread that opened it (so no statement or transaction is
    ever shared between threads); :meth:`close` closes them all from whichever thread owns the
    store, and connections of threads that have ended are closed when another thread opens one.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._guard = threading.Lock()
        self._open: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        self.get()  # open the creating thread's connection now: a bad file fails here

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened now if the thread has none yet)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn if conn is not None else self._open_for_this_thread()

    def _open_for_this_thread(self) -> sqlite3.Connection:
        with self._guard:
            if self._closed:
                raise AuditError(f"the workbench database {self.path} is closed")
            ended = [(t, c) for t, c in self._open if not t.is_alive()]
            for _, old in ended:
                old.close()
            self._open = [(t, c) for t, c in self._open if t.is_alive()]
            # Only this thread uses it; check_same_thread=False lets close() reach it.
            opener = connect_read_only if self.read_only else connect
            conn = opener(self.path, check_same_thread=False)
            self._open.append((threading.current_thread(), conn))
        self._local.conn = conn
        return conn

    def count(self) -> int:
        """How many connections are open (one per thread that used the store)."""
        with self._guard:
            return len(self._open)

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._guard:
            self._closed = True
            for _, conn in self._open:
                conn.close()
            self._open = []
        self._local = threading.local()


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
