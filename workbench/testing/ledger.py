"""The paper account behind the gateway: cash, positions, commissions and IB-style account values.

Commissions follow IB's fixed US stock plan: a rate per share, at least a minimum per order, at most
a fraction of the order's value; an order filled in pieces pays the minimum once (each execution
is charged the difference between the order's running total and what it has already paid).
Margin is Reg T-like: initial and maintenance rates on gross position value; buying power is a
multiple of available funds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from workbench.testing.book import Book
from workbench.testing.config import GatewayConfig

CENT = Decimal("0.01")
ZERO = Decimal(0)

SUMMARY_TAGS = (
    "AccountType",
    "NetLiquidation",
    "TotalCashValue",
    "SettledCash",
    "AccruedCash",
    "BuyingPower",
    "EquityWithLoanValue",
    "PreviousDayEquityWithLoanValue",
    "GrossPositionValue",
    "RegTEquity",
    "RegTMargin",
    "SMA",
    "InitMarginReq",
    "MaintMarginReq",
    "AvailableFunds",
    "ExcessLiquidity",
    "Cushion",
    "FullInitMarginReq",
    "FullMaintMarginReq",
    "FullAvailableFunds",
    "FullExcessLiquidity",
    "DayTradesRemaining",
    "Leverage",
)
LEDGER_TAGS = (
    "CashBalance",
    "TotalCashBalance",
    "NetLiquidationByCurrency",
    "UnrealizedPnL",
    "RealizedPnL",
    "ExchangeRate",
)
UNITLESS = frozenset({"AccountType", "Cushion", "DayTradesRemaining", "Leverage"})


@dataclass(slots=True)
class Position:
    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized: Decimal = ZERO


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class Ledger:
    """Cash and positions of the one account; values are marked at the book's prices."""

    def __init__(self, config: GatewayConfig, book: Book) -> None:
        self.config = config
        self.book = book
        self.cash = config.starting_cash
        self.positions: dict[str, Position] = {}
        self.previous_equity = config.starting_cash

    # -- commissions and fills ---------------------------------------------------------------

    def commission_total(self, quantity: Decimal, notional: Decimal) -> Decimal:
        """What an order filled ``quantity`` for ``notional`` in total pays, to the cent."""
        fee = max(quantity * self.config.commission_per_share, self.config.commission_min)
        return money(min(fee, notional * self.config.commission_max_pct))

    def apply_fill(
        self, symbol: str, sign: int, shares: Decimal, price: Decimal, commission: Decimal
    ) -> Decimal | None:
        """Book one fill; returns the realized P&L when it closed some of a position."""
        pos = self.positions.setdefault(symbol, Position())
        self.cash -= sign * shares * price + commission
        held = pos.quantity
        if held == 0 or (held > 0) == (sign > 0):
            total = abs(held) + shares
            pos.avg_cost = (pos.avg_cost * abs(held) + shares * price + sign * commission) / total
            pos.quantity = held + sign * shares
            return None
        closing = min(shares, abs(held))
        direction = 1 if held > 0 else -1
        realized = money((price - pos.avg_cost) * closing * direction - commission)
        pos.realized += realized
        pos.quantity = held + sign * shares
        if pos.quantity == 0:
            pos.avg_cost = ZERO
        elif (pos.quantity > 0) != (held > 0):
            pos.avg_cost = price
        return realized

    # -- values ------------------------------------------------------------------------------

    def mark(self, symbol: str) -> Decimal:
        quote = self.book.quote(symbol)
        price = quote.mark() if quote else None
        if price is None:
            return self.positions[symbol].avg_cost
        return price

    def market_value(self, symbol: str) -> Decimal:
        return self.positions[symbol].quantity * self.mark(symbol)

    def unrealized(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return money((self.mark(symbol) - pos.avg_cost) * pos.quantity)

    def values(self) -> dict[str, Decimal]:
        """The account's figures by IB tag name (money in the account currency)."""
        held = [s for s, p in self.positions.items() if p.quantity != 0]
        stock = sum((self.market_value(s) for s in held), ZERO)
        gross = sum((abs(self.market_value(s)) for s in held), ZERO)
        net_liq = self.cash + stock
        init = gross * self.config.initial_margin_rate
        maint = gross * self.config.maintenance_margin_rate
        available = net_liq - init
        excess = net_liq - maint
        figures = {
            "NetLiquidation": net_liq,
            "TotalCashValue": self.cash,
            "SettledCash": self.cash,
            "AccruedCash": ZERO,
            "BuyingPower": max(available, ZERO) * self.config.buying_power_multiplier,
            "EquityWithLoanValue": net_liq,
            "PreviousDayEquityWithLoanValue": self.previous_equity,
            "GrossPositionValue": gross,
            "RegTEquity": net_liq,
            "RegTMargin": init,
            "SMA": max(available, ZERO),
            "InitMarginReq": init,
            "MaintMarginReq": maint,
            "AvailableFunds": available,
            "ExcessLiquidity": excess,
            "FullInitMarginReq": init,
            "FullMaintMarginReq": maint,
            "FullAvailableFunds": available,
            "FullExcessLiquidity": excess,
            "UnrealizedPnL": sum((self.unrealized(s) for s in held), ZERO),
            "RealizedPnL": sum((p.realized for p in self.positions.values()), ZERO),
        }
        rounded = {k: money(v) for k, v in figures.items()}
        rounded["Cushion"] = (excess / net_liq).quantize(Decimal("0.000001")) if net_liq else ZERO
        rounded["Leverage"] = (gross / net_liq).quantize(Decimal("0.01")) if net_liq else ZERO
        return rounded

    def initial_margin_after(self, symbol: str, signed_shares: Decimal, price: Decimal) -> Decimal:
        """InitMarginReq if ``signed_shares`` more of ``symbol`` were held at ``price``."""
        gross = ZERO
        for sym, pos in self.positions.items():
            qty = pos.quantity + (signed_shares if sym == symbol else ZERO)
            gross += abs(qty * (price if sym == symbol else self.mark(sym)))
        if symbol not in self.positions:
            gross += abs(signed_shares * price)
        return money(gross * self.config.initial_margin_rate)


def value_rows(
    ledger: Ledger, tags: tuple[str, ...], ledger_tags: bool
) -> list[tuple[str, str, str]]:
    """(tag, value, currency) rows for the requested tags, in IB's text form."""
    figures = ledger.values()
    ccy = ledger.config.currency
    rows: list[tuple[str, str, str]] = []
    for tag in tags:
        if tag == "AccountType":
            rows.append((tag, "INDIVIDUAL", ""))
        elif tag == "DayTradesRemaining":
            rows.append((tag, "-1", ""))
        elif tag in figures:
            rows.append((tag, _text(figures[tag]), "" if tag in UNITLESS else ccy))
    if ledger_tags:
        rows += _ledger_rows(figures, ccy)
    return rows


def _ledger_rows(figures: dict[str, Decimal], ccy: str) -> list[tuple[str, str, str]]:
    pick: dict[str, Callable[[], Decimal]] = {
        "CashBalance": lambda: figures["TotalCashValue"],
        "TotalCashBalance": lambda: figures["TotalCashValue"],
        "NetLiquidationByCurrency": lambda: figures["NetLiquidation"],
        "UnrealizedPnL": lambda: figures["UnrealizedPnL"],
        "RealizedPnL": lambda: figures["RealizedPnL"],
        "ExchangeRate": lambda: Decimal(1),
    }
    rows: list[tuple[str, str, str]] = []
    for currency in ("BASE", ccy):
        rows += [(tag, _text(pick[tag]()), currency) for tag in LEDGER_TAGS]
    return rows


def _text(value: Decimal) -> str:
    return format(value, "f")
