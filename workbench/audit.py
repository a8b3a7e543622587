"""The audit log: append-only, hash-chained events in one SQLite file, and the one write path.

``hash = sha256(prev_hash + canonical(event))`` where ``canonical(event)`` is the canonical JSON of
``{actor, correlation_id, payload, proposal_id, seq, ts, type}``. Triggers refuse UPDATE and DELETE.
Every component writes its own state and its event through :meth:`AuditLog.transaction`, so both
land together or neither does.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pandas as pd
import sqlite_utils
from pydantic import BaseModel

from workbench import canonical, db, events
from workbench.clock import Clock, SystemClock
from workbench.errors import AuditError, ChainBrokenError, GuardedEventError
from workbench.events import EventType
from workbench.models import Frozen

__all__ = ["GENESIS_HASH", "AuditLog", "Event", "EventType", "Transaction", "VerifyResult"]

GENESIS_HASH = "0" * 64
COLUMNS = ("seq", "ts", "type", "proposal_id", "correlation_id", "actor", "payload")


P = TypeVar("P", bound=Frozen)


class Event(NamedTuple):
    """One row of the log. ``data`` parses ``payload_json`` into the payload model of its type on
    each access (keep the result); ``payload`` is the plain JSON, for display only."""

    seq: int
    ts: str
    type: str
    proposal_id: str | None
    correlation_id: str | None
    actor: str
    payload_json: str
    prev_hash: str
    hash: str

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as plain JSON, for display (code reads :attr:`data`)."""
        parsed: dict[str, Any] = json.loads(self.payload_json)
        return parsed

    @property
    def data(self) -> Frozen:
        """The payload parsed and validated into the model of this event's type."""
        return events.parse(self.type, self.payload_json, seq=self.seq)

    def data_as(self, model: builtins.type[P]) -> P:
        """:attr:`data` as ``model``; an AuditError if this event's type holds another model."""
        data = self.data
        if not isinstance(data, model):
            raise AuditError(f"event {self.seq} is {self.type}, not a {model.__name__}")
        return data


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`: ``first_bad_seq`` is None when the chain holds."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


SCHEMA_MIGRATIONS: list[db.Migration] = [
    (
        "001_events",
        [
            "CREATE TABLE events ("
            " seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, type TEXT NOT NULL,"
            " proposal_id TEXT, correlation_id TEXT, actor TEXT NOT NULL,"
            " payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
            "CREATE INDEX events_proposal ON events (proposal_id) WHERE proposal_id IS NOT NULL",
            "CREATE INDEX events_type ON events (type, seq)",
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
            " BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END",
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
            " BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END",
        ],
    )
]

_INSERT = (
    "INSERT INTO events (seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash,"
    " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_CHAIN = (
    "SELECT seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash, hash"
    " FROM events ORDER BY seq"
)


def _quote(value: str | None) -> str:
    return "null" if value is None else canonical.quote(value)


def event_text(
    seq: int,
    ts: str,
    type_: str,
    proposal_id: str | None,
    correlation_id: str | None,
    actor: str,
    payload_json: str,
) -> str:
    """Canonical JSON of one event, given its payload already in canonical JSON."""
    return (
        f'{{"actor":{_quote(actor)},"correlation_id":{_quote(correlation_id)},'
        f'"payload":{payload_json},"proposal_id":{_quote(proposal_id)},"seq":{seq},'
        f'"ts":{_quote(ts)},"type":{_quote(type_)}}}'
    )


def _event(row: tuple[Any, ...]) -> Event:
    seq, ts, type_, pid, cid, actor, payload, prev_hash, digest = row
    return Event(seq, ts, type_, pid, cid, actor, payload, prev_hash, digest)


def chain_hash(prev_hash: str, text: str) -> str:
    """The hash of an event: sha256 of the previous hash followed by its canonical text."""
    return hashlib.sha256((prev_hash + text).encode("ascii")).hexdigest()


class Transaction:
    """An open write transaction: component state via :meth:`execute`, events via :meth:`append`."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._head: tuple[int, str] | None = None
        self.appended: list[Event] = []
        # Values derived from events read or written in this transaction (it holds the write
        # lock, so nobody else appends meanwhile); dropped with it.
        self.derived: dict[tuple[str, str], object] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        return self.log.conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run one statement on the transaction's connection (component state)."""
        if sql.lstrip()[:6].upper() in ("UPDATE", "DELETE", "INSERT") and " events" in sql:
            raise AuditError("the events table is written only through Transaction.append")
        return self.conn.execute(sql, params)

    def head(self) -> tuple[int, str]:
        if self._head is None:
            self._head = self.log._read_head()
        return self._head

    def append(
        self,
        type_: EventType,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        actor: str,
        proposal_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Event:
        """Chain one event that carries no authority or state (the generic write path).

        The payload is the model of ``type_`` or a mapping validated into it. Event types in
        ``events.GUARDED`` (grants, submissions, fills, trading state, enrolment, NAV) are refused
        here: they are written only through their transition table in ``workbench.lifecycle``.
        """
        if not isinstance(type_, EventType):
            raise AuditError(f"unknown event type {type_!r}")
        path = events.GUARDED.get(type_)
        if path is not None:
            raise GuardedEventError(type_.value, path.value)
        return self._chain(type_, events.coerce(type_, payload), actor, proposal_id, correlation_id)

    def _chain(
        self,
        type_: EventType,
        payload: Frozen,
        actor: str,
        proposal_id: str | None,
        correlation_id: str | None,
    ) -> Event:
        """The one writer of the events table, stamped by the log's clock. Only ``append`` above
        and the transition tables in ``workbench.lifecycle`` call it (a test pins that)."""
        if not isinstance(type_, EventType):
            raise AuditError(f"unknown event type {type_!r}")
        if not actor:
            raise AuditError("every event needs an actor")
        if type(payload) is not events.PAYLOADS[type_]:
            raise AuditError(f"{type_.value} needs a {events.PAYLOADS[type_].__name__} payload")
        payload_json = canonical.dumps(payload)
        stamp = canonical.utc_iso(self.log.clock.now())
        kind = type_.value
        seq, prev = self.head()
        seq += 1
        text = event_text(seq, stamp, kind, proposal_id, correlation_id, actor, payload_json)
        digest = chain_hash(prev, text)
        self.conn.execute(
            _INSERT,
            (seq, stamp, kind, proposal_id, correlation_id, actor, payload_json, prev, digest),
        )
        self._head = (seq, digest)
        event = Event(
            seq, stamp, kind, proposal_id, correlation_id, actor, payload_json, prev, digest
        )
        self.appended.append(event)
        return event


class AuditLog:
    """The hash-chained event log of one workbench home."""

    def __init__(self, path: Path, clock: Clock | None = None, *, read_only: bool = False) -> None:
        """The log in ``path`` (created if missing), or, ``read_only``, an existing one opened
        for reading only (a read-only copy included): every write then fails."""
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self._connections = db.ThreadConnections(self.path, read_only=read_only)
        self._local = threading.local()  # each thread's open transaction, if any
        if not read_only:
            db.migrate(self.conn, "audit", SCHEMA_MIGRATIONS)

    # -- connections: one per thread (a widget callback's thread is not the kernel's) ---------

    @property
    def conn(self) -> sqlite3.Connection:
        """The calling thread's connection to the log's file."""
        return self._connections.get()

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the calling thread's connection."""
        return sqlite_utils.Database(self.conn)

    @property
    def _tx(self) -> Transaction | None:
        """The calling thread's open transaction: another thread never joins it."""
        tx: Transaction | None = getattr(self._local, "tx", None)
        return tx

    @_tx.setter
    def _tx(self, value: Transaction | None) -> None:
        self._local.tx = value

    @property
    def _depth(self) -> int:
        depth: int = getattr(self._local, "depth", 0)
        return depth

    @_depth.setter
    def _depth(self, value: int) -> None:
        self._local.depth = value

    def close(self) -> None:
        self._connections.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write: everything inside commits together or rolls back on any exception.

        Nested use joins the outer transaction. ``BEGIN IMMEDIATE`` takes the write lock first, so
        two processes never read the same head and the chain cannot fork.
        """
        if self._tx is not None:
            self._depth += 1
            try:
                yield self._tx
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise AuditError(f"cannot start an audit transaction: {exc}") from exc
        tx = self._tx = Transaction(self)
        try:
            yield tx
        except BaseException:
            self._tx = None
            self.conn.execute("ROLLBACK")
            raise
        self._tx = None
        try:
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise AuditError(f"audit commit failed: {exc}") from exc

    def append(
        self,
        type_: EventType,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        actor: str,
        proposal_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Event:
        """:meth:`Transaction.append` in its own transaction (or the caller's, if one is open)."""
        with self.transaction() as tx:
            return tx.append(
                type_, payload, actor=actor, proposal_id=proposal_id, correlation_id=correlation_id
            )

    # -- reading -----------------------------------------------------------------------------

    def _read_head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event; (0, genesis) for an empty log."""
        return self._tx.head() if self._tx is not None else self._read_head()

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; report the first event whose seq, link or hash is wrong."""
        prev, expected, checked = GENESIS_HASH, 1, 0
        cursor = self.conn.execute(_SELECT_CHAIN)
        for seq, ts, type_, pid, cid, actor, payload, prev_hash, digest in cursor:
            problem = None
            if seq != expected:
                problem = f"expected seq {expected}, found {seq}"
            elif prev_hash != prev:
                problem = "prev_hash does not match the previous event's hash"
            elif chain_hash(prev, event_text(seq, ts, type_, pid, cid, actor, payload)) != digest:
                problem = "hash does not match the event's content"
            if problem is not None:
                cursor.close()
                return VerifyResult(False, checked, seq - 1, prev, seq, problem)
            prev, expected, checked = digest, expected + 1, checked + 1
        return VerifyResult(True, checked, expected - 1, prev)

    def verify_or_raise(self) -> VerifyResult:
        result = self.verify()
        if not result.ok:
            assert result.first_bad_seq is not None and result.reason is not None
            raise ChainBrokenError(result.first_bad_seq, result.reason)
        return result

    def events(
        self,
        *,
        proposal_id: str | None = None,
        correlation_id: str | None = None,
        types: tuple[EventType, ...] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events matching every given filter, oldest first unless ``newest_first``."""
        clauses: list[str] = ["seq > ?"]
        params: list[object] = [after_seq]
        if proposal_id is not None:
            clauses.append("proposal_id = ?")
            params.append(proposal_id)
        if correlation_id is not None:
            clauses.append("correlation_id = ?")
            params.append(correlation_id)
        if types:
            clauses.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(t.value for t in types)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(canonical.utc_iso(since))
        if until is not None:
            clauses.append("ts < ?")
            params.append(canonical.utc_iso(until))
        sql = (
            f"SELECT seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash, hash"
            f" FROM events WHERE {' AND '.join(clauses)}"
            f" ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.conn.execute(sql, params).fetchall()
        return [_event(r) for r in rows]

    def tail(self, n: int = 20) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        return list(reversed(self.events(limit=n, newest_first=True)))

    def frame(self, **filters: Any) -> pd.DataFrame:
        """Events as a DataFrame (same filters as :meth:`events`), ts parsed as UTC."""
        rows = self.events(**filters)
        df = pd.DataFrame(
            [{c: getattr(e, c) for c in (*COLUMNS, "prev_hash", "hash")} for e in rows],
            columns=[*COLUMNS, "prev_hash", "hash"],
        )
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
        return df

    def by_proposal(self, proposal_id: str) -> pd.DataFrame:
        return self.frame(proposal_id=proposal_id)

    def by_type(self, *types: EventType) -> pd.DataFrame:
        return self.frame(types=types)

    def between(self, since: datetime, until: datetime) -> pd.DataFrame:
        return self.frame(since=since, until=until)

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
