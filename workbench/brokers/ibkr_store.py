"""The IBKR adapter's tables in the workbench home: what it sent, what IB said, fills and updates.

``ibkr_orders`` is written *before* an order reaches the socket (the IB order id, the orderRef and
the order as sent, not yet acknowledged) and updated as IB answers, so an answer is always matched
to a row, after a restart too; the permId is kept once IB gives it. ``ibkr_fills`` holds each
execution once (its execId is unique: duplicate or replayed reports are dropped). ``ibkr_updates``
is the ``Broker.updates`` stream. Rows change only inside an audit transaction, together with the
event that records the change. No ib_async here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from workbench import canonical
from workbench.audit import AuditLog, Transaction
from workbench.db import Migration
from workbench.orders import BrokerOrder, Fill, OrderRole, OrderUpdate

COMPONENT = "ibkr-broker"
MIGRATIONS: list[Migration] = [
    (
        "001_ibkr_broker",
        [
            "CREATE TABLE ibkr_orders (seq INTEGER PRIMARY KEY, order_id TEXT NOT NULL UNIQUE,"
            " client_id INTEGER NOT NULL, ib_order_id INTEGER NOT NULL, perm_id INTEGER,"
            " proposal_id TEXT NOT NULL, order_ref TEXT NOT NULL, role TEXT NOT NULL,"
            " acked INTEGER NOT NULL, status TEXT NOT NULL, sent_at TEXT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE UNIQUE INDEX ibkr_orders_ib_key ON ibkr_orders (client_id, ib_order_id)",
            "CREATE UNIQUE INDEX ibkr_orders_one_per_proposal ON ibkr_orders (proposal_id)"
            " WHERE role = 'parent'",
            "CREATE UNIQUE INDEX ibkr_orders_one_per_ref ON ibkr_orders (order_ref)"
            " WHERE role = 'parent'",
            "CREATE INDEX ibkr_orders_perm ON ibkr_orders (perm_id)",
            "CREATE TABLE ibkr_fills (seq INTEGER PRIMARY KEY, exec_id TEXT NOT NULL UNIQUE,"
            " order_id TEXT NOT NULL REFERENCES ibkr_orders (order_id), body TEXT NOT NULL)",
            "CREATE TABLE ibkr_updates (cursor INTEGER PRIMARY KEY, order_id TEXT NOT NULL,"
            " body TEXT NOT NULL)",
        ],
    )
]
_COLUMNS = "client_id, ib_order_id, perm_id, acked, sent_at, body"


@dataclass(frozen=True, slots=True)
class SentOrder:
    """One order the adapter sent: IB's ids for it, whether IB acknowledged it, and the order
    (as sent until acknowledged, then as IB last reported it)."""

    client_id: int
    ib_order_id: int
    perm_id: int | None
    acked: bool
    sent_at: datetime
    order: BrokerOrder


def _sent(row: tuple[int, int, int | None, int, str, str]) -> SentOrder:
    client_id, ib_order_id, perm_id, acked, sent_at, body = row
    order = BrokerOrder.model_validate_json(body)
    return SentOrder(client_id, ib_order_id, perm_id, bool(acked), datetime.fromisoformat(sent_at),
                     order)  # fmt: skip


class IbkrStore:
    """Typed reads and writes of the adapter's tables (reads on the calling thread's connection,
    writes inside the caller's audit transaction)."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    @property
    def conn(self) -> sqlite3.Connection:
        return self._log.conn

    # -- reads -----------------------------------------------------------------------------------

    def sent(self, where: str = "1", params: tuple[object, ...] = ()) -> list[SentOrder]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM ibkr_orders WHERE {where} ORDER BY seq", params
        )
        return [_sent(r) for r in rows]

    def by_ib_key(self, client_id: int, ib_order_id: int) -> SentOrder | None:
        found = self.sent("client_id = ? AND ib_order_id = ?", (client_id, ib_order_id))
        return found[0] if found else None

    def by_order_id(self, order_id: str) -> SentOrder | None:
        found = self.sent("order_id = ?", (order_id,))
        return found[0] if found else None

    def for_proposal(self, proposal_id: str) -> list[SentOrder]:
        return self.sent("proposal_id = ?", (proposal_id,))

    def parent_for(self, proposal_id: str, order_ref: str) -> SentOrder | None:
        found = self.sent("role = ? AND (proposal_id = ? OR order_ref = ?)",
                          (OrderRole.PARENT.value, proposal_id, order_ref))  # fmt: skip
        return found[0] if found else None

    def orders(self) -> list[BrokerOrder]:
        """Orders IB acknowledged (or rejected), oldest first."""
        return [s.order for s in self.sent("acked = 1")]

    def has_fill(self, exec_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM ibkr_fills WHERE exec_id = ?", (exec_id,))
        return row.fetchone() is not None

    def last_fill_seq(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ibkr_fills").fetchone()
        return int(row[0])

    def exec_ids_since(self, seq: int) -> list[str]:
        """The exec ids recorded after fill ``seq``, in the order they were recorded."""
        sql = "SELECT exec_id FROM ibkr_fills WHERE seq > ? ORDER BY seq"
        rows = self.conn.execute(sql, (seq,))
        return [r[0] for r in rows]

    def highest_order_id(self, client_id: int) -> int:
        """The highest IB order id this home used for ``client_id`` (0 when none)."""
        row = self.conn.execute(
            "SELECT COALESCE(MAX(ib_order_id), 0) FROM ibkr_orders WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        return int(row[0])

    def fills(self, order_id: str | None = None) -> list[Fill]:
        where, params = ("order_id = ?", (order_id,)) if order_id else ("1", ())
        rows = self.conn.execute(f"SELECT body FROM ibkr_fills WHERE {where} ORDER BY seq", params)
        return [Fill.model_validate_json(r[0]) for r in rows]

    def last_cursor(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(cursor), 0) FROM ibkr_updates").fetchone()
        return int(row[0])

    def updates(self, after: int) -> list[OrderUpdate]:
        rows = self.conn.execute(
            "SELECT body FROM ibkr_updates WHERE cursor > ? ORDER BY cursor", (after,)
        )
        return [OrderUpdate.model_validate_json(r[0]) for r in rows]

    # -- writes (inside the audit transaction) ---------------------------------------------------

    def insert_sent(self, tx: Transaction, sent: SentOrder) -> None:
        order = sent.order
        tx.execute(
            "INSERT INTO ibkr_orders (order_id, client_id, ib_order_id, perm_id, proposal_id,"
            " order_ref, role, acked, status, sent_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (
                order.order_id,
                sent.client_id,
                sent.ib_order_id,
                sent.perm_id,
                order.proposal_id,
                order.order_ref,
                order.role.value,
                int(sent.acked),
                order.status.value,
                canonical.utc_iso(sent.sent_at),
                canonical.dumps(order),
            ),
        )

    def update_order(self, tx: Transaction, order: BrokerOrder, perm_id: int | None) -> None:
        """The order as IB now reports it (acknowledged), and its permId once known."""
        tx.execute(
            "UPDATE ibkr_orders SET acked = 1, status = ?, body = ?,"
            " perm_id = COALESCE(?, perm_id) WHERE order_id = ?",
            (order.status.value, canonical.dumps(order), perm_id, order.order_id),
        )

    def insert_fill(self, tx: Transaction, fill: Fill) -> None:
        tx.execute(
            "INSERT INTO ibkr_fills (exec_id, order_id, body) VALUES (?, ?, ?)",
            (fill.exec_id, fill.order_id, canonical.dumps(fill)),
        )

    def insert_update(self, tx: Transaction, update: OrderUpdate) -> None:
        tx.execute(
            "INSERT INTO ibkr_updates (cursor, order_id, body) VALUES (?, ?, ?)",
            (update.cursor, update.order.order_id, canonical.dumps(update)),
        )
