"""Audit log throughput beside a raw sqlite3 baseline with the same durability settings.

Prints appends/s with one event per transaction (each fsync'd) and in batches of 500, and verify
rate, each with the raw figure and the ratio. Run: `.venv/bin/python bench/audit.py [--events N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from workbench import db
from workbench.audit import SCHEMA_MIGRATIONS as audit_schema
from workbench.audit import AuditLog, EventType

TS = "2026-11-18T15:30:00.000000Z"


def payload(i: int) -> dict[str, object]:
    """A ToolCalled payload (a generic event; ours is validated into its model on write)."""
    origin = {"client": "bench", "client_version": None, "session": "s1", "transport": "stdio"}
    return {
        "tool": "propose_order", "arguments_digest": f"{i:064x}", "arguments_chars": 180,
        "outcome": "ok", "detail": f"proposal_id=p{i}; state=PROPOSED", "proposal_id": f"p{i}",
        "origin": origin, "limits_hash": "cd" * 32,
    }  # fmt: skip


def raw_conn(path: Path) -> sqlite3.Connection:
    """Same pragmas (WAL, synchronous=FULL) and the same events table, indexes and triggers."""
    conn = db.connect(path)
    db.migrate(conn, "audit", audit_schema)
    return conn


def raw_append(conn: sqlite3.Connection, start: int, n: int, batch: int) -> None:
    sql = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    for first in range(start, start + n, batch):
        conn.execute("BEGIN IMMEDIATE")
        for i in range(first, min(first + batch, start + n)):
            body = json.dumps(payload(i), sort_keys=True, separators=(",", ":"))
            conn.execute(sql, (i + 1, TS, "ToolCalled", f"p{i}", None, "bench", body, "0", "0"))
        conn.execute("COMMIT")


def ours_append(log: AuditLog, start: int, n: int, batch: int) -> None:
    for first in range(start, start + n, batch):
        with log.transaction() as tx:
            for i in range(first, min(first + batch, start + n)):
                tx.append(EventType.TOOL_CALLED, payload(i), actor="bench", proposal_id=f"p{i}")


def raw_verify(conn: sqlite3.Connection) -> int:
    count, prev = 0, "0"
    sql = "SELECT seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash, hash"
    for row in conn.execute(sql + " FROM events ORDER BY seq"):
        text = "|".join(str(v) for v in row[:7])
        prev = hashlib.sha256((prev + text).encode()).hexdigest()
        count += 1
    return count


def rate(n: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def row(label: str, ours: float, raw: float, unit: str) -> None:
    print(
        f"{label:<34} {ours:>12,.0f} {unit:<9} raw {raw:>12,.0f} {unit:<9} ratio {ours / raw:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement")
    parser.add_argument("--single", type=int, default=None, help="events for batch-of-1 runs")
    args = parser.parse_args()
    n, single = args.events, args.single or args.events
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        raw1, ours1 = raw_conn(base / "raw1.sqlite"), AuditLog(base / "ours1.sqlite")
        r_raw = rate(single, lambda: raw_append(raw1, 0, single, 1))
        r_ours = rate(single, lambda: ours_append(ours1, 0, single, 1))
        row(f"append, 1 per txn ({single:,})", r_ours, r_raw, "events/s")
        raw500, ours500 = raw_conn(base / "raw500.sqlite"), AuditLog(base / "ours500.sqlite")
        r_raw = rate(n, lambda: raw_append(raw500, 0, n, 500))
        r_ours = rate(n, lambda: ours_append(ours500, 0, n, 500))
        row(f"append, 500 per txn ({n:,})", r_ours, r_raw, "events/s")
        v_raw = rate(n, lambda: raw_verify(raw500))
        result = ours500.verify()
        assert result.ok and result.checked == n, result
        v_ours = rate(n, ours500.verify)
        row(f"verify ({n:,})", v_ours, v_raw, "events/s")
        print(f"verify of 1,000,000 events at this rate: {1_000_000 / v_ours:.1f} s")


if __name__ == "__main__":
    main()
