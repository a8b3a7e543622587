"""What a test reads back from the gateway: message logs and read-only views of its state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from workbench.testing.orders import WorkingOrder


@dataclass(frozen=True, slots=True)
class Received:
    """One message the gateway read from a socket, decoded into named fields.

    ``dropped`` says why the gateway did not act on it (``"pacing"``), else None. ``problem``
    is set when the message did not decode cleanly (a layout the gateway does not expect).
    """

    seq: int
    at: datetime
    conn_id: int
    client_id: int | None
    msg_id: int
    name: str
    fields: Mapping[str, str]
    raw: tuple[str, ...]
    problem: str | None = None
    dropped: str | None = None

    def __getitem__(self, name: str) -> str:
        return self.fields[name]


@dataclass(frozen=True, slots=True)
class Sent:
    """One message the gateway wrote to a client."""

    seq: int
    at: datetime
    conn_id: int
    client_id: int | None
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as the gateway holds it (a copy: changing it changes nothing)."""

    perm_id: int
    client_id: int
    order_id: int
    symbol: str
    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    tif: str
    status: str
    filled: Decimal
    avg_fill_price: Decimal
    parent_id: int
    oca_group: str
    order_ref: str
    account: str
    manual: bool
    completed_status: str

    @classmethod
    def of(cls, o: WorkingOrder) -> OrderView:
        return cls(
            perm_id=o.perm_id,
            client_id=o.client_id,
            order_id=o.order_id,
            symbol=o.instrument.symbol,
            action=o.action,
            quantity=o.quantity,
            order_type=o.order_type,
            limit_price=o.limit_price,
            stop_price=o.stop_price,
            tif=o.tif,
            status=o.status,
            filled=o.filled,
            avg_fill_price=o.avg_fill_price,
            parent_id=o.parent_id,
            oca_group=o.oca_group,
            order_ref=o.order_ref,
            account=o.account,
            manual=o.manual,
            completed_status=o.completed_status,
        )


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    realized_pnl: Decimal
