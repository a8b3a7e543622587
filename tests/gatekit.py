"""Builders for simulator and risk-gate tests: one sane account, quotes, intents and policy tweaks.

The default scene passes every rule: a 290,000 USD account (250,000 cash, 50 MSFT, 40 SPY) buys
20 AAPL with a limit of 100.10 and a protective stop at 95, on a Wednesday morning in New York.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from conftest import TRADING_NOW

from workbench.models import (
    Instrument,
    InstrumentType,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    Position,
    ProtectiveStop,
    RiskDecision,
    Side,
    SimResult,
    Source,
    TradingState,
)
from workbench.policy import RiskPolicy, load_policy, load_strategy_params
from workbench.risk import History, NavPoint, evaluate
from workbench.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
POLICY = load_policy(ROOT / "policies")
PARAMS = load_strategy_params(ROOT / "policies")
COSTS = PARAMS.costs
NOW = TRADING_NOW
ACCOUNT = "DU123456"
D = Decimal


def stock(symbol: str, **overrides: Any) -> Instrument:
    """A US stock routed SMART in USD."""
    return Instrument(**{"type": InstrumentType.STK, "symbol": symbol, **overrides})


def position(symbol: str, quantity: str, price: str) -> Position:
    """A holding of ``quantity`` shares marked at ``price``."""
    return Position(
        instrument=stock(symbol), quantity=D(quantity), avg_cost=D(price), market_price=D(price)
    )


def portfolio(
    positions: tuple[Position, ...] | None = None,
    cash: str = "250000",
    nav: str | None = None,
    at: datetime | None = None,
    **overrides: Any,
) -> PortfolioSnapshot:
    """The account snapshot; NAV defaults to cash plus the market value of the positions."""
    held = (
        positions
        if positions is not None
        else (position("MSFT", "50", "400"), position("SPY", "40", "500"))
    )
    value = D(cash) + sum((p.market_value for p in held), D(0))
    fields: dict[str, Any] = {
        "account": ACCOUNT,
        "currency": "USD",
        "positions": held,
        "cash": D(cash),
        "net_liquidation": D(nav) if nav is not None else value,
        "available_funds": D(cash),
        "buying_power": max(D(cash), D(0)),
        "timestamp": at or NOW - timedelta(seconds=30),
        "broker": "test",
    }
    return PortfolioSnapshot(**{**fields, **overrides})


def quote(
    symbol: str = "AAPL", bid: str | None = "99.95", ask: str | None = "100.05", **kw: Any
) -> MarketSnapshot:
    """A fresh two-sided quote (5 s old) with plenty of volume."""
    fields: dict[str, Any] = {
        "instrument": kw.pop("instrument", stock(symbol)),
        "bid": None if bid is None else D(bid),
        "ask": None if ask is None else D(ask),
        "avg_daily_volume": D(50_000_000),
        "timestamp": NOW - timedelta(seconds=5),
        "source": "test",
    }
    return MarketSnapshot(**{**fields, **kw})


def intent(**overrides: Any) -> OrderIntent:
    """BUY 20 AAPL LMT 100.10 with a protective stop at 95."""
    fields: dict[str, Any] = {
        "account": ACCOUNT,
        "instrument": stock("AAPL"),
        "side": Side.BUY,
        "quantity": D(20),
        "order_type": OrderType.LMT,
        "limit_price": D("100.10"),
        "protective_stop": ProtectiveStop(stop_price=D(95)),
        "source": Source.RULE,
        "reason": "test",
    }
    return OrderIntent(**{**fields, **overrides})


def history(nav: str = "290000", **overrides: Any) -> History:
    """A history holding one NAV point an hour ago (no loss, no drawdown)."""
    fields: dict[str, Any] = {"nav_points": (NavPoint(NOW - timedelta(hours=1), D(nav)),)}
    return History(**{**fields, **overrides})


def tweak(policy: RiskPolicy, **changes: Any) -> RiskPolicy:
    """A revalidated copy of ``policy`` with nested keys changed (``limits__allow_shorts=True``)."""
    data = policy.model_dump()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return RiskPolicy.model_validate(data)


@dataclass
class Outcome:
    """A simulation and the gate's decision on it."""

    sim: SimResult
    decision: RiskDecision

    def ids(self) -> set[str]:
        """Rule ids of the violations above MINOR."""
        return {v.rule_id.value for v in self.decision.violations if v.severity != "MINOR"}


def run(
    order: OrderIntent | None = None,
    *,
    book: PortfolioSnapshot | None = None,
    market: MarketSnapshot | None = None,
    policy: RiskPolicy = POLICY,
    state: TradingState = TradingState.ACTIVE,
    past: History | None = None,
    now: datetime = NOW,
) -> Outcome:
    """Simulate then evaluate one intent in the default scene, with any part replaced."""
    order = order or intent()
    book = book or portfolio()
    market = market or quote(order.symbol)
    sim = simulate(order, book, market, COSTS)
    decision = evaluate(order, sim, book, market, policy, state, past or history(), now)
    return Outcome(sim, decision)
