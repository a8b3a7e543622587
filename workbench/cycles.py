"""One proposal per cycle, symbol and side, enforced by SQLite.

``Workbench.run_cycle`` (the daily cycle) runs each intent once per correlation id: a symbol and
side already proposed under it is skipped, so the same day run twice — after a restart, or in two
processes at the same moment — proposes once. The key is a row of ``cycle_keys`` whose primary
key is (correlation_id, symbol, side), inserted in the transaction that records the proposal:
under SQLite's write lock a second claim of the same key fails, and the cycle that made it
records nothing for that intent. Proposals recorded with a correlation id by other paths
(``run_many``, ``propose``) claim their key too, without being refused, so a cycle skips them as
it always did; the migration claims the keys of proposals recorded before the table existed.
"""

from __future__ import annotations

from workbench import db
from workbench.audit import AuditLog, Transaction

COMPONENT = "cycles"
MIGRATIONS: list[db.Migration] = [
    (
        "001_cycle_keys",
        [
            "CREATE TABLE cycle_keys ("
            " correlation_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,"
            " proposal_id TEXT NOT NULL, PRIMARY KEY (correlation_id, symbol, side))",
            "INSERT OR IGNORE INTO cycle_keys (correlation_id, symbol, side, proposal_id)"
            " SELECT correlation_id, json_extract(payload, '$.intent.instrument.symbol'),"
            " json_extract(payload, '$.intent.side'), proposal_id FROM events"
            " WHERE type = 'OrderProposed' AND correlation_id IS NOT NULL"
            " AND proposal_id IS NOT NULL ORDER BY seq",
        ],
    )
]


def ensure(log: AuditLog) -> None:
    """Create the key table in the log's database if it is not there yet."""
    db.migrate(log.conn, COMPONENT, MIGRATIONS)


def claimed(log: AuditLog, correlation_id: str) -> set[tuple[str, str]]:
    """The (symbol, side) keys already proposed under ``correlation_id``."""
    rows = log.conn.execute(
        "SELECT symbol, side FROM cycle_keys WHERE correlation_id = ?", (correlation_id,)
    ).fetchall()
    return {(str(symbol), str(side)) for symbol, side in rows}


def claim(tx: Transaction, correlation_id: str, symbol: str, side: str, proposal_id: str) -> bool:
    """Claim the key for ``proposal_id`` in ``tx``; False when it was already claimed (by this
    cycle earlier, or by another process: the row is written under the write lock)."""
    cursor = tx.execute(
        "INSERT OR IGNORE INTO cycle_keys (correlation_id, symbol, side, proposal_id)"
        " VALUES (?, ?, ?, ?)",
        (correlation_id, symbol, side, proposal_id),
    )
    return cursor.rowcount == 1
