"""The paper broker's tables in the workbench home, and the rows they hold.

Reads go through the audit log's connection (the calling thread's); writes take the open audit
``Transaction``, so the state and the event that records it commit together. Orders, fills and
updates are stored as the canonical JSON of their models, beside the columns the broker looks them
up by.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from workbench import canonical, db
from workbench.audit import AuditLog, Transaction
from workbench.brokers.base import (
    WORKING_STATES,
    BrokerOrder,
    Fill,
    OrderRole,
    OrderUpdate,
)
from workbench.brokers.paper_rules import Book
from workbench.models import Instrument

COMPONENT = "paper-broker"
MIGRATIONS: list[db.Migration] = [
    (
        "001_paper_broker",
        [
            "CREATE TABLE paper_accounts (account TEXT PRIMARY KEY, currency TEXT NOT NULL,"
            " starting_cash TEXT NOT NULL, cash TEXT NOT NULL, opened_at TEXT NOT NULL)",
            "CREATE TABLE paper_positions (account TEXT NOT NULL, symbol TEXT NOT NULL,"
            " instrument TEXT NOT NULL, quantity TEXT NOT NULL, avg_cost TEXT NOT NULL,"
            " PRIMARY KEY (account, symbol))",
            "CREATE TABLE paper_orders (seq INTEGER PRIMARY KEY, order_id TEXT NOT NULL UNIQUE,"
            " proposal_id TEXT, order_ref TEXT NOT NULL, role TEXT NOT NULL, parent_id TEXT,"
            " status TEXT NOT NULL, triggered INTEGER NOT NULL, evaluated_until TEXT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE UNIQUE INDEX paper_orders_one_per_proposal ON paper_orders (proposal_id)"
            " WHERE role = 'parent'",
            "CREATE UNIQUE INDEX paper_orders_one_per_ref ON paper_orders (order_ref)"
            " WHERE role = 'parent'",
            "CREATE INDEX paper_orders_status ON paper_orders (status)",
            "CREATE TABLE paper_fills (seq INTEGER PRIMARY KEY, exec_id TEXT NOT NULL UNIQUE,"
            " order_id TEXT NOT NULL REFERENCES paper_orders (order_id), day TEXT NOT NULL,"
            " quantity TEXT NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX paper_fills_order ON paper_fills (order_id, day)",
            "CREATE TABLE paper_updates (cursor INTEGER PRIMARY KEY, order_id TEXT NOT NULL,"
            " body TEXT NOT NULL)",
        ],
    )
]
_ORDER_COLUMNS = "order_id, triggered, evaluated_until, body"
_WORKING = tuple(s.value for s in WORKING_STATES)


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order plus the broker's private matching state."""

    order: BrokerOrder
    triggered: bool
    evaluated_until: datetime


@dataclass(frozen=True, slots=True)
class AccountRow:
    account: str
    currency: str
    starting_cash: Decimal
    cash: Decimal


def _iso(when: datetime) -> str:
    return canonical.utc_iso(when)


def _stored(row: tuple[str, int, str, str]) -> StoredOrder:
    _, triggered, until, body = row
    order = BrokerOrder.model_validate_json(body)
    return StoredOrder(order, bool(triggered), datetime.fromisoformat(until))


class PaperStore:
    """Typed reads and writes of the paper broker's tables."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    @property
    def conn(self) -> sqlite3.Connection:
        """The audit log's connection for the calling thread."""
        return self._log.conn

    # -- reads -----------------------------------------------------------------------------------

    def account(self, account: str) -> AccountRow | None:
        row = self.conn.execute(
            "SELECT account, currency, starting_cash, cash FROM paper_accounts WHERE account = ?",
            (account,),
        ).fetchone()
        return None if row is None else AccountRow(row[0], row[1], Decimal(row[2]), Decimal(row[3]))

    def accounts(self) -> tuple[str, ...]:
        rows = self.conn.execute("SELECT account FROM paper_accounts ORDER BY account")
        return tuple(r[0] for r in rows)

    def positions(self, account: str) -> list[tuple[Instrument, Book]]:
        rows = self.conn.execute(
            "SELECT instrument, quantity, avg_cost FROM paper_positions"
            " WHERE account = ? AND quantity != '0' ORDER BY symbol",
            (account,),
        )
        return [
            (Instrument.model_validate_json(i), Book(Decimal(q), Decimal(a))) for i, q, a in rows
        ]

    def book(self, account: str, symbol: str) -> Book:
        row = self.conn.execute(
            "SELECT quantity, avg_cost FROM paper_positions WHERE account = ? AND symbol = ?",
            (account, symbol),
        ).fetchone()
        return (
            Book(Decimal(0), Decimal(0)) if row is None else Book(Decimal(row[0]), Decimal(row[1]))
        )

    def order(self, order_id: str) -> StoredOrder | None:
        row = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM paper_orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        return None if row is None else _stored(row)

    def orders(self, where: str = "1", params: tuple[object, ...] = ()) -> list[StoredOrder]:
        rows = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM paper_orders WHERE {where} ORDER BY seq", params
        )
        return [_stored(r) for r in rows]

    def working(self) -> list[StoredOrder]:
        return self.orders("status IN (?, ?)", _WORKING)

    def parent_for(self, proposal_id: str, order_ref: str) -> StoredOrder | None:
        found = self.orders("role = ? AND (proposal_id = ? OR order_ref = ?)",
                            (OrderRole.PARENT.value, proposal_id, order_ref))  # fmt: skip
        return found[0] if found else None

    def fills(self) -> list[Fill]:
        rows = self.conn.execute("SELECT body FROM paper_fills ORDER BY seq")
        return [Fill.model_validate_json(r[0]) for r in rows]

    def filled_on(self, order_id: str, day: date) -> Decimal:
        rows = self.conn.execute(
            "SELECT quantity FROM paper_fills WHERE order_id = ? AND day = ?",
            (order_id, day.isoformat()),
        )
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    def fill_count(self, order_id: str) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM paper_fills WHERE order_id = ?", (order_id,))
        return int(row.fetchone()[0])

    def next_order_seq(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM paper_orders").fetchone()
        return int(row[0])

    def last_cursor(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(cursor), 0) FROM paper_updates").fetchone()
        return int(row[0])

    def updates(self, after: int) -> list[OrderUpdate]:
        rows = self.conn.execute(
            "SELECT body FROM paper_updates WHERE cursor > ? ORDER BY cursor", (after,)
        )
        return [OrderUpdate.model_validate_json(r[0]) for r in rows]

    # -- writes (inside the audit transaction) ---------------------------------------------------

    def open_account(self, tx: Transaction, row: AccountRow, when: datetime) -> None:
        tx.execute(
            "INSERT INTO paper_accounts (account, currency, starting_cash, cash, opened_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (row.account, row.currency, str(row.starting_cash), str(row.cash), _iso(when)),
        )

    def set_cash(self, tx: Transaction, account: str, cash: Decimal) -> None:
        tx.execute("UPDATE paper_accounts SET cash = ? WHERE account = ?", (str(cash), account))

    def put_book(self, tx: Transaction, account: str, instrument: Instrument, book: Book) -> None:
        tx.execute(
            "INSERT INTO paper_positions (account, symbol, instrument, quantity, avg_cost)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, symbol) DO UPDATE SET"
            " quantity = excluded.quantity, avg_cost = excluded.avg_cost",
            (
                account,
                instrument.symbol,
                canonical.dumps(instrument),
                canonical.decimal_str(book.quantity),
                str(book.avg_cost),
            ),
        )

    def insert_order(self, tx: Transaction, order: BrokerOrder, evaluated_until: datetime) -> None:
        tx.execute(
            "INSERT INTO paper_orders (order_id, proposal_id, order_ref, role, parent_id, status,"
            " triggered, evaluated_until, body) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                order.order_id,
                order.proposal_id,
                order.order_ref,
                order.role.value,
                order.parent_id,
                order.status.value,
                _iso(evaluated_until),
                canonical.dumps(order),
            ),
        )

    def update_order(self, tx: Transaction, order: BrokerOrder) -> None:
        tx.execute(
            "UPDATE paper_orders SET status = ?, body = ? WHERE order_id = ?",
            (order.status.value, canonical.dumps(order), order.order_id),
        )

    def mark_evaluated(
        self, tx: Transaction, order_id: str, until: datetime, triggered: bool
    ) -> None:
        tx.execute(
            "UPDATE paper_orders SET evaluated_until = ?, triggered = ? WHERE order_id = ?",
            (_iso(until), int(triggered), order_id),
        )

    def insert_fill(self, tx: Transaction, fill: Fill, day: date) -> None:
        tx.execute(
            "INSERT INTO paper_fills (exec_id, order_id, day, quantity, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                fill.exec_id,
                fill.order_id,
                day.isoformat(),
                str(fill.quantity),
                canonical.dumps(fill),
            ),
        )

    def insert_update(self, tx: Transaction, update: OrderUpdate) -> None:
        tx.execute(
            "INSERT INTO paper_updates (cursor, order_id, body) VALUES (?, ?, ?)",
            (update.cursor, update.order.order_id, canonical.dumps(update)),
        )
