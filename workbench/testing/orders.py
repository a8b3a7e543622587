"""Orders and executions as the gateway keeps them, and the deterministic matching rules.

Matching (prices come only from the book a test sets):
- MKT fills at the touch (BUY at the ask, SELL at the bid; the last price when that side is empty).
- LMT that is marketable on arrival fills at the touch; a resting LMT fills at its limit when the
  touch (or, without one, the last price) reaches it.
- STP triggers when the last price (without one, the touch) reaches the stop; it then fills at the
  worse of the touch and the last price. STP LMT becomes a LMT at its limit once triggered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from workbench.testing.book import Instrument, Quote

SUPPORTED_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})
ACTIVE = frozenset({"PreSubmitted", "Submitted"})
DONE = frozenset({"Filled", "Cancelled", "Inactive"})
ZERO = Decimal(0)


@dataclass(slots=True)
class WorkingOrder:
    """One order at the gateway (mutable: the exchange updates it as it works)."""

    seq: int
    client_id: int
    order_id: int
    instrument: Instrument
    exchange: str
    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    what_if: bool = False
    perm_id: int = 0
    status: str = "New"
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    last_fill_price: Decimal = ZERO
    commission_charged: Decimal = ZERO
    triggered: bool = False
    rested: bool = False
    live: bool = False
    fill_chunk: Decimal | None = None
    fill_interval: float = 0.0
    not_before: datetime | None = None
    completed_time: str = ""
    completed_status: str = ""
    manual: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.client_id, self.order_id)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_done(self) -> bool:
        return self.status in DONE

    @property
    def is_child(self) -> bool:
        return self.parent_id != 0

    @property
    def sign(self) -> int:
        return 1 if self.action == "BUY" else -1


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill: what execDetails and commissionReport describe."""

    exec_id: str
    time: datetime
    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    exchange: str
    account: str
    side: str
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    order_ref: str
    commission: Decimal
    realized_pnl: Decimal | None
    liquidity: int

    @property
    def action(self) -> str:
        return "BUY" if self.side == "BOT" else "SELL"


def touch(order: WorkingOrder, quote: Quote) -> Decimal | None:
    """The price a marketable order meets: the far side of the quote, else the last price."""
    far = quote.ask if order.action == "BUY" else quote.bid
    return far if far is not None and far > 0 else quote.last


def stop_reached(order: WorkingOrder, quote: Quote) -> bool:
    """Has the market reached the stop? By the last price, else by the near side of the touch."""
    if order.stop_price is None:
        return False
    near = quote.last if quote.last is not None else touch(order, quote)
    if near is None:
        return False
    return near >= order.stop_price if order.action == "BUY" else near <= order.stop_price


def _worse(order: WorkingOrder, a: Decimal | None, b: Decimal | None) -> Decimal | None:
    prices = [p for p in (a, b) if p is not None and p > 0]
    if not prices:
        return None
    return max(prices) if order.action == "BUY" else min(prices)


def _limit_fill(order: WorkingOrder, quote: Quote, limit: Decimal) -> Decimal | None:
    price = touch(order, quote)
    if price is None:
        return None
    crosses = price <= limit if order.action == "BUY" else price >= limit
    if not crosses:
        return None
    return limit if order.rested else price


def fill_price(order: WorkingOrder, quote: Quote) -> Decimal | None:
    """The price ``order`` fills at against ``quote`` now, or None while it cannot fill.

    Sets ``order.triggered`` when a stop is reached (a stop stays triggered).
    """
    kind = order.order_type
    if kind in ("STP", "STP LMT") and not order.triggered:
        if not stop_reached(order, quote):
            return None
        order.triggered = True
        if kind == "STP":
            return _worse(order, touch(order, quote), quote.last)
    if kind == "STP":
        return _worse(order, touch(order, quote), quote.last)
    if kind == "MKT":
        return touch(order, quote)
    if order.limit_price is None:
        return None
    return _limit_fill(order, quote, order.limit_price)
