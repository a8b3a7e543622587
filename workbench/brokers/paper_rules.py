"""The paper broker's pure rules: its config, commissions, fill prices, matching, book-keeping.

No I/O here. Matching sees a price *window* — the reference price where the evaluation starts and
the low and high the price reached until it ends — so the same rules serve a live quote (a window
of one price) and a whole day's bar (open, low, high).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import Field

from workbench.models import (
    AccountId,
    Currency,
    Frozen,
    NonNegativeAmount,
    OrderType,
    Side,
)

CENT = Decimal("0.01")
Bps = Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)]
Fraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


class PaperConfig(Frozen):
    """How the paper broker trades. IBKR-like fixed commissions; a Reg T margin account."""

    account: AccountId = "PAPER1"
    currency: Currency = "USD"
    starting_cash: NonNegativeAmount = Decimal(1_000_000)
    commission_per_share: NonNegativeAmount = Decimal("0.005")
    commission_min: NonNegativeAmount = Decimal("1.00")
    commission_max_pct: Fraction = Decimal("0.01")  # of the fill's notional
    slippage_bps: Bps = Decimal(1)  # beyond the half spread, against the taker
    max_volume_fraction: Fraction = Decimal("0.10")  # of the day's volume, per order per day
    initial_margin: Fraction = Decimal("0.5")  # of gross position value
    maintenance_margin: Fraction = Decimal("0.25")


@dataclass(frozen=True, slots=True)
class Window:
    """Prices an order is matched against: where it starts, and the range until it ends."""

    open: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of matching: a fill price (or None) and whether a stop has triggered."""

    price: Decimal | None
    triggered: bool


def commission(config: PaperConfig, quantity: Decimal, price: Decimal) -> Decimal:
    """Per-share commission, at least the minimum, at most ``commission_max_pct`` of notional."""
    per_share = max(config.commission_per_share * quantity, config.commission_min)
    capped = min(per_share, config.commission_max_pct * quantity * price)
    return capped.quantize(Decimal("0.0001"), ROUND_HALF_UP)


def market_price(side: Side, mid: Decimal, spread_bps: Decimal, slippage_bps: Decimal) -> Decimal:
    """What a marketable order pays: the far side of the spread plus slippage, to the cent."""
    move = mid * (spread_bps / 2 + slippage_bps) / 10000
    if side is Side.BUY:
        return (mid + move).quantize(CENT, ROUND_CEILING)
    return max(CENT, (mid - move).quantize(CENT, ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class Terms:
    """What matching needs to know about one order."""

    side: Side
    order_type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool


def match(terms: Terms, window: Window, spread_bps: Decimal, slip: Decimal) -> Match:
    """Match ``terms`` against ``window``: stops trigger on the range, limits fill when touched."""
    start, triggered = window.open, terms.triggered
    if terms.order_type in (OrderType.STP, OrderType.STP_LMT) and not triggered:
        assert terms.stop_price is not None
        start_or_none = _trigger(terms.side, terms.stop_price, window)
        if start_or_none is None:
            return Match(None, False)
        start, triggered = start_or_none, True
    taken = market_price(terms.side, start, spread_bps, slip)
    if terms.order_type in (OrderType.MKT, OrderType.STP):
        return Match(taken, triggered)
    assert terms.limit_price is not None
    limit = terms.limit_price
    if terms.side is Side.BUY:
        return Match(min(limit, taken) if window.low <= limit else None, triggered)
    return Match(max(limit, taken) if window.high >= limit else None, triggered)


def _trigger(side: Side, stop: Decimal, window: Window) -> Decimal | None:
    """Where a stop fires within ``window`` (the stop, or the open if it gapped through)."""
    if side is Side.SELL:
        return min(window.open, stop) if window.low <= stop else None
    return max(window.open, stop) if window.high >= stop else None


@dataclass(frozen=True, slots=True)
class Book:
    """One position's book: signed quantity and average cost (commissions included, as IB does)."""

    quantity: Decimal
    avg_cost: Decimal


def apply_fill(
    book: Book, side: Side, quantity: Decimal, price: Decimal, fee: Decimal
) -> tuple[Book, Decimal]:
    """The book after a fill and the realised P&L (net of the closing part's commission)."""
    sign = side.sign
    if book.quantity == 0 or (book.quantity > 0) == (sign > 0):
        return _open(book, sign, quantity, price, fee), Decimal(0)
    closing = min(quantity, abs(book.quantity))
    close_fee = fee * closing / quantity
    direction = 1 if book.quantity > 0 else -1
    realized = closing * (price - book.avg_cost) * direction - close_fee
    rest = Book(book.quantity + sign * closing, book.avg_cost)
    if rest.quantity == 0:
        rest = Book(Decimal(0), Decimal(0))
    opening = quantity - closing
    if opening > 0:
        rest = _open(rest, sign, opening, price, fee - close_fee)
    return rest, realized


def _open(book: Book, sign: int, quantity: Decimal, price: Decimal, fee: Decimal) -> Book:
    held = abs(book.quantity)
    new_qty = book.quantity + sign * quantity
    avg = (held * book.avg_cost + quantity * price + sign * fee) / abs(new_qty)
    return Book(new_qty, avg)
