"""The broker contract: one ``Broker`` protocol and the data it speaks, for every broker.

The protocol is synchronous. The embedded paper broker is synchronous by nature; the IBKR adapter
runs ib_async on its own thread and loop and records the order updates IB sends in its tables of
the home, so both offer the same pull-based stream: ``updates(after=cursor)`` returns every update
with a cursor greater than ``after``, oldest first (a caller keeps the last cursor it saw).

``submit`` takes only a :class:`~workbench.models.SubmitPermit`. Every broker proves the permit
from the audit log with the shared :class:`~workbench.permits.PermitCheck` (spent token, MAC'd
grant, gate decision, verified trading state) before anything is sent, refuses a second order for
a proposal it already holds, and is called only after the permit's transaction has committed. A
broker opened without the approval key (read-only) refuses every submit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from workbench.marketdata import Bar
from workbench.models import Instrument, MarketSnapshot, PortfolioSnapshot, SubmitPermit
from workbench.orders import (
    ACTIVE_STATES,
    DONE_STATES,
    WORKING_STATES,
    BrokerOrder,
    Fill,
    OrderId,
    OrderRef,
    OrderRole,
    OrderStatus,
    OrderUpdate,
    ProposalId,
    SubmitAck,
)

__all__ = [
    "ACTIVE_STATES",
    "DONE_STATES",
    "PAPER_LABEL",
    "WORKING_STATES",
    "Broker",
    "BrokerLink",
    "BrokerOrder",
    "Fill",
    "OrderId",
    "OrderRef",
    "OrderRole",
    "OrderStatus",
    "OrderUpdate",
    "ProposalId",
    "SubmitAck",
    "realized_pnl",
    "unrealized_pnl",
]

PAPER_LABEL = "paper broker (simulated)"


@dataclass(frozen=True, slots=True)
class BrokerLink:
    """The connection to a broker, as ``workbench status`` shows it: its state ("ready",
    "reconnecting", …), since when it is ready, how many times it connected, why it is not ready,
    and the last reconciliation with the broker (when, and what it found, in words)."""

    state: str
    connected_since: datetime | None
    connections: int
    problem: str
    last_reconcile_at: datetime | None
    last_reconcile: str


@runtime_checkable
class Broker(Protocol):
    """What every broker offers the workbench. Methods raise typed ``BrokerError``s on faults."""

    @property
    def label(self) -> str:
        """Who trades: "paper broker (simulated)" or "IBKR paper account DU… via host:port" —
        shown on every output."""
        ...

    def accounts(self) -> tuple[str, ...]: ...

    def portfolio(self, account: str) -> PortfolioSnapshot: ...

    def instrument(self, symbol: str) -> Instrument:
        """The broker's (qualified) instrument for ``symbol``; unknown: UnknownSymbolError."""
        ...

    def market_snapshot(self, instrument: Instrument) -> MarketSnapshot: ...

    def bars(self, symbol: str, end: date, n: int) -> tuple[Bar, ...]:
        """The ``n`` completed daily bars ending on ``end`` or before, oldest first."""
        ...

    def orders(self) -> tuple[BrokerOrder, ...]:
        """Every order the broker knows (working and done), oldest first."""
        ...

    def open_orders(self) -> tuple[BrokerOrder, ...]:
        """Orders still active (pre-submitted, working or partially filled)."""
        ...

    def executions(self) -> tuple[Fill, ...]: ...

    def submit(self, permit: SubmitPermit) -> SubmitAck:
        """Send the permit's order (with its protective stop as a bracket child)."""
        ...

    def cancel(
        self, *, order_id: str | None = None, proposal_id: str | None = None
    ) -> tuple[BrokerOrder, ...]:
        """Cancel one order, or every active order of a proposal; returns what was cancelled."""
        ...

    def updates(self, after: int = 0) -> tuple[OrderUpdate, ...]:
        """Order updates with a cursor greater than ``after``, oldest first."""
        ...

    def link(self) -> BrokerLink | None:
        """The connection to the broker (None for the embedded paper broker: it has none)."""
        ...

    def close(self) -> None: ...


def realized_pnl(fills: tuple[Fill, ...]) -> Decimal:
    """Realised P&L (net of commissions) over ``fills``."""
    return sum((f.realized_pnl for f in fills), Decimal(0))


def unrealized_pnl(snapshot: PortfolioSnapshot) -> Decimal:
    """Unrealised P&L of every position at its mark, against its average cost."""
    return sum((p.quantity * (p.market_price - p.avg_cost) for p in snapshot.positions), Decimal(0))
