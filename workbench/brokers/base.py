"""The broker contract: one ``Broker`` protocol and the data it speaks, for every broker.

The protocol is synchronous. The embedded paper broker is synchronous by nature; the IBKR adapter
wraps ib_async's blocking calls and keeps the order updates it receives in a list, so both offer
the same pull-based stream: ``updates(after=cursor)`` returns every update with a cursor greater
than ``after``, oldest first (a caller keeps the last cursor it saw).

``submit`` takes only a :class:`~workbench.models.SubmitPermit`. Every broker checks the permit
against the audit log (:func:`permit_problem`) before anything is sent, refuses a second order for
a proposal it already holds, and is called only after the permit's transaction has committed.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Protocol, runtime_checkable

from pydantic import AwareDatetime, Field, StringConstraints

from workbench.audit import AuditLog, EventType
from workbench.errors import CanonicalizationError
from workbench.lifecycle import OrderState, derive_state
from workbench.marketdata import Bar
from workbench.models import (
    AccountId,
    Amount,
    Currency,
    Frozen,
    Instrument,
    MarketSnapshot,
    NonNegativeAmount,
    OrderType,
    PortfolioSnapshot,
    Price,
    Quantity,
    Side,
    SubmitPermit,
    TimeInForce,
)

PAPER_LABEL = "paper broker (simulated)"
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OrderRef = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ProposalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


class OrderStatus(StrEnum):
    """Where a broker order stands (IB's names, plus PartiallyFilled and Rejected)."""

    PRE_SUBMITTED = "PreSubmitted"  # accepted, not yet working (a bracket child before its parent)
    SUBMITTED = "Submitted"  # working at the broker
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"


ACTIVE_STATES = frozenset(
    {OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED}
)
WORKING_STATES = frozenset({OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})
DONE_STATES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


class OrderRole(StrEnum):
    """What an order is within the proposal that sent it."""

    PARENT = "parent"
    PROTECTIVE_STOP = "protective_stop"


class BrokerOrder(Frozen):
    """An order as the broker holds it, with how much has filled so far."""

    order_id: OrderId
    proposal_id: ProposalId | None
    order_ref: OrderRef
    account: AccountId
    instrument: Instrument
    role: OrderRole
    parent_id: OrderId | None = None
    oca_group: Annotated[str, StringConstraints(max_length=128)] | None = None
    side: Side
    quantity: Quantity
    order_type: OrderType
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce
    status: OrderStatus
    filled_quantity: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(0)
    avg_fill_price: Price | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATES


class Fill(Frozen):
    """One execution with its commission; ``realized_pnl`` is net of commission (as IB reports)."""

    exec_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    order_id: OrderId
    proposal_id: ProposalId | None
    order_ref: OrderRef
    account: AccountId
    instrument: Instrument
    side: Side
    quantity: Quantity
    price: Price
    commission: NonNegativeAmount
    currency: Currency
    realized_pnl: Amount
    time: AwareDatetime

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity * self.side.sign


class OrderUpdate(Frozen):
    """One change to one order, in stream order; ``fill`` is set when the change is a fill."""

    cursor: Annotated[int, Field(gt=0)]
    order: BrokerOrder
    fill: Fill | None = None
    message: Annotated[str, StringConstraints(max_length=2000)] = ""
    time: AwareDatetime

    @property
    def status(self) -> OrderStatus:
        return self.order.status


class SubmitAck(Frozen):
    """What ``submit`` returns: the parent order and its bracket children, as accepted."""

    broker: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    parent: BrokerOrder
    children: tuple[BrokerOrder, ...] = ()

    @property
    def orders(self) -> tuple[BrokerOrder, ...]:
        return (self.parent, *self.children)


@runtime_checkable
class Broker(Protocol):
    """What every broker offers the workbench. Methods raise typed ``BrokerError``s on faults."""

    @property
    def label(self) -> str:
        """Who trades: "paper broker (simulated)" or "IBKR paper DU…" — shown on every output."""
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

    def close(self) -> None: ...


def permit_problem(log: AuditLog, permit: SubmitPermit) -> str | None:
    """Why ``permit`` must be refused, or None when its OrderSubmitted event backs it."""
    try:
        actual_hash = permit.intent.intent_hash
    except CanonicalizationError as exc:
        return f"the intent cannot be hashed: {exc}"
    if actual_hash != permit.intent_hash:
        return "the permit's intent_hash does not match its intent"
    found = log.events(after_seq=permit.submitted_seq - 1, limit=1)
    if not found or found[0].seq != permit.submitted_seq:
        return f"no audit event at seq {permit.submitted_seq}"
    event = found[0]
    if event.type != EventType.ORDER_SUBMITTED.value:
        return f"audit event {event.seq} is {event.type}, not OrderSubmitted"
    if event.proposal_id != permit.proposal_id:
        return f"audit event {event.seq} belongs to proposal {event.proposal_id}"
    payload = event.payload
    if payload.get("intent_hash") != permit.intent_hash:
        return f"audit event {event.seq} records a different intent_hash"
    if payload.get("order_ref", permit.order_ref) != permit.order_ref:
        return f"audit event {event.seq} records a different order_ref"
    return None


def submitted_state_problem(log: AuditLog, proposal_id: str) -> str | None:
    """Why the proposal cannot take a new order: it must stand at SUBMITTED in the log."""
    state = derive_state(log.events(proposal_id=proposal_id))
    if state is OrderState.SUBMITTED:
        return None
    return f"proposal is {state.value if state else 'unknown'}, not SUBMITTED"


def realized_pnl(fills: tuple[Fill, ...]) -> Decimal:
    """Realised P&L (net of commissions) over ``fills``."""
    return sum((f.realized_pnl for f in fills), Decimal(0))


def unrealized_pnl(snapshot: PortfolioSnapshot) -> Decimal:
    """Unrealised P&L of every position at its mark, against its average cost."""
    return sum((p.quantity * (p.market_price - p.avg_cost) for p in snapshot.positions), Decimal(0))
