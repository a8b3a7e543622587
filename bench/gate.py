"""Benchmark: simulate + evaluate throughput (intents/s, one core) over a 500-position portfolio.

Every rule runs on every intent. Intents are built before the clock starts, fresh for each run (so
no intent hash is cached from an earlier run); the intent hash, the simulation, the gate and the
decision model are all inside the timing. Run: ``.venv/bin/python bench/gate.py``.
Target: ≥ 25,000 intents/s (≤ 40 µs each) and 10,000 intents costing ≤ 11× 1,000 (linear).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from workbench.models import (
    Instrument,
    InstrumentType,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    Position,
    ProtectiveStop,
    Side,
    Source,
    TradingState,
)
from workbench.policy import RiskPolicy, load_policy, load_strategy_params
from workbench.risk import History, NavPoint, Submission, evaluate
from workbench.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
ACCOUNT = "DU123456"
POSITIONS = 500
SIZES = (100, 1_000, 10_000)
REPEATS = 3


def _symbol(i: int) -> str:
    return f"S{i:04d}"


def _price(i: int) -> Decimal:
    return Decimal(20 + (i * 37) % 400) + Decimal("0.25")


def build_portfolio() -> PortfolioSnapshot:
    """500 small long positions plus cash, about 1% of NAV each."""
    positions = tuple(
        Position(
            instrument=Instrument(type=InstrumentType.STK, symbol=_symbol(i)),
            quantity=Decimal(100),
            avg_cost=_price(i),
            market_price=_price(i),
        )
        for i in range(POSITIONS)
    )
    value = sum((p.market_value for p in positions), Decimal(0))
    cash = Decimal(5_000_000)
    return PortfolioSnapshot(
        account=ACCOUNT,
        currency="USD",
        positions=positions,
        cash=cash,
        net_liquidation=cash + value,
        available_funds=cash,
        buying_power=cash,
        timestamp=NOW - timedelta(seconds=20),
        broker="bench",
    )


def build_quotes(count: int) -> dict[str, MarketSnapshot]:
    """A two-sided quote for every held symbol and for as many new ones."""
    quotes = {}
    for i in range(count):
        ref = _price(i)
        quotes[_symbol(i)] = MarketSnapshot(
            instrument=Instrument(type=InstrumentType.STK, symbol=_symbol(i)),
            bid=ref - Decimal("0.05"),
            ask=ref + Decimal("0.05"),
            avg_daily_volume=Decimal(2_000_000),
            timestamp=NOW - timedelta(seconds=3),
            source="bench",
        )
    return quotes


def build_intents(n: int, seed: int) -> list[OrderIntent]:
    """A deterministic mix: buys and sells, held and new symbols, some outside the collar."""
    rng = random.Random(seed)
    intents = []
    for _ in range(n):
        i = rng.randrange(POSITIONS * 2)
        ref = _price(i)
        side = Side.BUY if rng.random() < 0.7 else Side.SELL
        offset = Decimal(100 + rng.choice((-2, -1, 0, 1, 2, 8))) / 100
        limit = (ref * offset).quantize(Decimal("0.01"))
        stop = (ref * Decimal("0.9")).quantize(Decimal("0.01"))
        intents.append(
            OrderIntent(
                account=ACCOUNT,
                instrument=Instrument(type=InstrumentType.STK, symbol=_symbol(i)),
                side=side,
                quantity=Decimal(rng.choice((5, 10, 20, 50, 150))),
                order_type=OrderType.LMT,
                limit_price=limit,
                protective_stop=ProtectiveStop(stop_price=stop) if side is Side.BUY else None,
                source=Source.RULE,
                reason="bench",
            )
        )
    return intents


def build_history() -> History:
    """A day of NAV points every five minutes and a few recent submissions."""
    points = tuple(
        NavPoint(NOW - timedelta(minutes=5 * k), Decimal(9_500_000 + k)) for k in range(300, 0, -1)
    )
    subs = tuple(
        Submission(NOW - timedelta(seconds=30 * k), _symbol(k), Side.BUY, Decimal(7))
        for k in range(1, 6)
    )
    return History(nav_points=points, nav_peak=Decimal(9_600_000), submissions=subs)


def run(
    intents: list[OrderIntent],
    portfolio: PortfolioSnapshot,
    quotes: dict[str, MarketSnapshot],
    policy: RiskPolicy,
    history: History,
) -> tuple[float, Counter[str]]:
    """Seconds to simulate and evaluate every intent, and the decisions' tally."""
    costs = load_strategy_params(ROOT / "policies").costs
    tally: Counter[str] = Counter()
    start = time.perf_counter()
    for intent in intents:
        market = quotes[intent.instrument.symbol]
        sim = simulate(intent, portfolio, market, costs)
        decision = evaluate(
            intent, sim, portfolio, market, policy, TradingState.ACTIVE, history, NOW
        )
        tally[decision.decision.value] += 1
    return time.perf_counter() - start, tally


def main() -> None:
    policy = load_policy(ROOT / "policies")
    policy = policy.model_copy(
        update={"limits": policy.limits.model_copy(update={"max_positions": 1000})}
    )
    portfolio, quotes, history = build_portfolio(), build_quotes(POSITIONS * 2), build_history()
    run(build_intents(200, seed=0), portfolio, quotes, policy, history)  # warm caches, calendar
    print(f"simulate + evaluate, {len(portfolio.positions)} positions, every rule on, one core")
    per_size: dict[int, float] = {}
    for n in SIZES:
        best, tally = float("inf"), Counter[str]()
        for rep in range(REPEATS):
            intents = build_intents(n, seed=rep + 1)
            seconds, tally = run(intents, portfolio, quotes, policy, history)
            best = min(best, seconds)
        per_size[n] = best
        mix = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
        print(
            f"{n:>7,} intents: {best * 1000:9.1f} ms  {n / best:>9,.0f} intents/s"
            f"  {best / n * 1e6:6.1f} µs each  ({mix})"
        )
    ratio = per_size[10_000] / per_size[1_000]
    print(f"cost ratio 10,000 / 1,000 intents: {ratio:.2f}x (linear = 10x, target <= 11x)")


if __name__ == "__main__":
    main()
