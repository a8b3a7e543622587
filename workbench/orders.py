"""Broker orders, fills and updates: the data every broker speaks and the audit log records. No I/O.

``workbench.brokers.base`` re-exports these names beside the ``Broker`` protocol.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from workbench.models import (
    AccountId,
    Amount,
    Currency,
    Frozen,
    Instrument,
    NonNegativeAmount,
    OrderType,
    Price,
    Quantity,
    Side,
    TimeInForce,
)

OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OrderRef = Annotated[str, StringConstraints(min_length=1, max_length=128)]
PROPOSAL_ID_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # a proposal id, wherever one is taken
ProposalId = Annotated[str, StringConstraints(pattern=f"^{PROPOSAL_ID_RE.pattern}$")]


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

    broker: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    parent: BrokerOrder
    children: tuple[BrokerOrder, ...] = ()

    @property
    def orders(self) -> tuple[BrokerOrder, ...]:
        return (self.parent, *self.children)
