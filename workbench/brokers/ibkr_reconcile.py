"""Reconciliation: what IB holds after a (re)connect, matched to the orders this home sent. Pure.

On every connection the session asks IB for every open order (all clients, hand-typed ones
too), the completed orders and the day's executions, and hands them over as a
:class:`BrokerView`. :func:`plan` matches them to the rows the adapter wrote before sending
(``ibkr_orders``): by permId when both sides know it, else by IB's (clientId, orderId) — completed
orders come back with orderId 0 —, else by orderRef and side (a bracket's parent and its stop
share the orderRef and never the side). What it finds: our orders IB holds (their status is
taken over), their executions (adopted once each, by execId), the active orders of this client
that IB does not hold (sent but never arrived, or gone while away: their outcome is unknown),
and the orders IB holds that this home never sent (reported, never adopted). No I/O, no ib_async.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from workbench.brokers.ibkr_checks import is_active
from workbench.brokers.ibkr_store import SentOrder
from workbench.orders import OrderRole

SIDES = {"BUY": "BUY", "SELL": "SELL", "BOT": "BUY", "SLD": "SELL"}


@dataclass(frozen=True, slots=True)
class SeenOrder:
    """An order as IB listed it: open (``open``) or completed."""

    client_id: int
    order_id: int  # 0 for a completed order, and for one typed into TWS by hand
    perm_id: int | None
    order_ref: str
    symbol: str
    side: str  # BUY or SELL
    quantity: Decimal
    order_type: str
    status: str  # IB's word: Submitted, PreSubmitted, Filled, Cancelled, Inactive, …
    open: bool


@dataclass(frozen=True, slots=True)
class SeenFill:
    """An execution IB listed, with its commission when the report came (else None)."""

    exec_id: str
    client_id: int
    order_id: int
    perm_id: int | None
    order_ref: str
    side: str
    shares: Decimal
    price: Decimal
    time: datetime
    commission: Decimal | None
    currency: str
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class BrokerView:
    """Everything IB listed on one connection."""

    orders: tuple[SeenOrder, ...]
    fills: tuple[SeenFill, ...]

    @property
    def open_orders(self) -> int:
        return sum(1 for o in self.orders if o.open)

    @property
    def completed_orders(self) -> int:
        return sum(1 for o in self.orders if not o.open)


@dataclass
class Plan:
    """What a reconciliation found (see the module's docstring)."""

    found: list[tuple[SentOrder, SeenOrder]] = field(default_factory=list)
    fills: list[tuple[SentOrder, SeenFill]] = field(default_factory=list)
    missing: list[SentOrder] = field(default_factory=list)
    foreign: list[SeenOrder] = field(default_factory=list)


def is_row(row: SentOrder, perm_id: int | None, key: tuple[int, int], ref: str, side: str) -> bool:
    """Whether IB's order (its permId, (clientId, orderId), orderRef and side) is ``row``."""
    if perm_id and row.perm_id:
        return perm_id == row.perm_id
    if key[1] and key == (row.client_id, row.ib_order_id):
        return True
    return bool(ref) and ref == row.order.order_ref and side == row.order.side.value


def row_of_order(seen: SeenOrder, rows: Iterable[SentOrder]) -> SentOrder | None:
    key = (seen.client_id, seen.order_id)
    return next((r for r in rows if is_row(r, seen.perm_id, key, seen.order_ref, seen.side)), None)


def row_of_fill(fill: SeenFill, rows: Iterable[SentOrder]) -> SentOrder | None:
    key = (fill.client_id, fill.order_id)
    return next((r for r in rows if is_row(r, fill.perm_id, key, fill.order_ref, fill.side)), None)


def plan(rows: Sequence[SentOrder], client_id: int, view: BrokerView) -> Plan:
    """Match ``view`` to ``rows`` (every order this home sent). Only this client's active rows
    can be missing: another client's rows are that session's to reconcile (its order may be on
    its way right now)."""
    result = Plan()
    for seen in view.orders:
        row = row_of_order(seen, rows)
        if row is None:
            result.foreign.append(seen)
        else:
            result.found.append((row, seen))
    for fill in view.fills:
        row = row_of_fill(fill, rows)
        if row is not None:
            result.fills.append((row, fill))
    held = {r.order.order_id for r, _ in [*result.found, *result.fills]}
    mine = (r for r in rows if r.client_id == client_id and is_active(r))
    result.missing = [r for r in mine if r.order.order_id not in held]
    return result


def unknown_parents(missing: Iterable[SentOrder]) -> list[SentOrder]:
    """The parents among the missing rows: their proposals' outcome is unknown."""
    return [r for r in missing if r.order.role is OrderRole.PARENT]
