"""The daily cycle: snapshot → proposer → simulate → gate → request approval, and its report.

:func:`run_cycle` is what ``notebooks/daily_cycle.ipynb`` calls (after :func:`open_for_day`);
``workbench daily`` runs that notebook through ``workbench.scheduled``. Nothing here approves or
submits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Literal

import pandas as pd

from workbench import fmt, sessions
from workbench.bridge import SizingRules
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import resolve_policy_dir
from workbench.lifecycle import OrderState
from workbench.models import OrderIntent, PortfolioSnapshot
from workbench.policy import StrategyParams
from workbench.proposers import (
    Market,
    StopRules,
    Targets,
    from_signals,
    load_targets,
    read_signals,
    rebalance,
    with_weights,
)
from workbench.replay import plan_day
from workbench.workbench import Outcome, Workbench

Proposer = Literal["rebalance", "signals"]
ACTOR = "daily-cycle"
NOTEBOOK_NAME = "daily_cycle.ipynb"
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-/]{0,19}")


@dataclass(frozen=True)
class MarketStatus:
    """Whether the market is open at the run's time; if not, why, and when it next opens."""

    calendar: str
    now: datetime
    open_now: bool
    reason: str = ""  # why it is closed ("" when open)
    next_open: datetime | None = None


def market_status(now: datetime) -> MarketStatus:
    """The New York Stock Exchange at ``now``, from its calendar (weekends, holidays, hours)."""
    cal = sessions.xnys()
    if cal.session_at(now) is not None:
        return MarketStatus(cal.name, now, True)
    today = cal.session(cal.local_date(now))
    if today is None:
        kind = "the weekend" if now.astimezone(cal.tz).weekday() >= 5 else "a holiday"
        reason = f"{cal.name} has no session on {fmt.ny_day(now)} ({kind})"
    elif now < today.open:
        reason = f"{cal.name} has not opened yet: today's session opens {fmt.ny(today.open)}"
    else:
        reason = f"{cal.name} closed at {fmt.ny(today.close)}"
    return MarketStatus(cal.name, now, False, reason, cal.next_open(now).open)


@dataclass(frozen=True)
class CycleReport:
    """What one daily run did, ready to show: frames for the notebook, figures for the log."""

    as_of: date
    correlation_id: str
    home: Path
    broker: str
    portfolio: PortfolioSnapshot
    outcomes: tuple[Outcome, ...]
    proposals: pd.DataFrame
    exposure: pd.DataFrame
    awaiting_approval: pd.DataFrame
    trading_state: str
    trading_state_reason: str
    head_seq: int
    head_hash: str
    market: MarketStatus
    clock: str
    chain_ok: bool
    chain_problem: str = ""


def market_view(wb: Workbench, as_of: date, *, record: bool = True) -> Market:
    """Quotes, ATRs and instruments from the broker the workbench is connected to."""
    return Market(
        quote=lambda symbol: wb.market_snapshot(symbol, record=record),
        atr=lambda symbol: wb.atr(symbol, as_of),
        instrument=wb.instrument,
    )


def order_rules(params: StrategyParams) -> tuple[SizingRules, StopRules]:
    """How every proposer sizes its orders and sets their stops (strategy_params.yaml)."""
    sizing = SizingRules(params.sizing.min_order_size, params.sizing.max_order_size)
    return sizing, StopRules(params.smart_stop.atr_multiplier, params.smart_stop.floor)


def propose_intents(
    wb: Workbench,
    portfolio: PortfolioSnapshot,
    *,
    as_of: date,
    proposer: Proposer,
    policy_dir: Path,
    signals_path: Path | None,
    universe: tuple[str, ...] = (),
    record: bool = True,
) -> list[OrderIntent]:
    """The proposer's intents for today (rebalance to targets, or a signals table).

    A ``universe`` replaces the targets' symbols with equal weights summing to 90% of NAV
    (rebalance), or keeps only those tickers (signals)."""
    sizing, stops = order_rules(wb.params)
    market = market_view(wb, as_of, record=record)
    if proposer == "rebalance":
        targets = equal_weights(load_targets(policy_dir), universe)
        return rebalance(portfolio, targets, market, sizing, stops)
    if proposer == "signals":
        if signals_path is None:
            raise ConfigError("proposer 'signals' needs a signals_path")
        signals = read_signals(signals_path)
        if universe:
            signals = [s for s in signals if s.ticker in universe]
        return from_signals(signals, portfolio, market, sizing, stops)
    raise ConfigError(f"unknown proposer {proposer!r}: choose 'rebalance' or 'signals'")


def equal_weights(targets: Targets, universe: tuple[str, ...]) -> Targets:
    """``targets`` with its weights replaced by equal weights over ``universe`` (if given)."""
    if not universe:
        return targets
    weight = (Decimal("0.9") / len(universe)).quantize(Decimal("0.000001"), ROUND_DOWN)
    return with_weights(targets, {symbol: weight for symbol in universe})


def parse_universe(text: str) -> tuple[str, ...]:
    """A comma-separated symbol list (or empty) as a tuple: an empty item, a malformed symbol
    or a symbol given twice is a ConfigError naming it."""
    if not text.strip():
        return ()
    symbols = [s.strip().upper() for s in text.split(",")]
    if "" in symbols:
        raise ConfigError(f"universe {text!r}: an empty symbol between commas")
    bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
    if bad:
        raise ConfigError(f"universe {text!r}: {bad[0]!r} is not a symbol")
    twice = sorted({s for s in symbols if symbols.count(s) > 1})
    if twice:
        raise ConfigError(f"universe {text!r}: {', '.join(twice)} given twice")
    return tuple(symbols)


def run_cycle(
    wb: Workbench,
    *,
    as_of: date,
    proposer: Proposer = "rebalance",
    policy_dir: Path,
    signals_path: Path | None = None,
    universe: tuple[str, ...] = (),
) -> CycleReport:
    """Run today's cycle once; a second run of the same day adds no duplicate proposals.

    While the market is closed (a weekend, a holiday, outside the session) the proposer is
    skipped: every order would be refused, and the report says why and when it next opens."""
    correlation_id = f"daily:{as_of.isoformat()}"
    market = market_status(wb.clock.now())
    portfolio = wb.portfolio()
    outcomes: list[Outcome] = []
    if market.open_now:
        intents = propose_intents(
            wb,
            portfolio,
            as_of=as_of,
            proposer=proposer,
            policy_dir=policy_dir,
            signals_path=signals_path,
            universe=universe,
        )
        outcomes = wb.run_cycle(intents, actor=ACTOR, correlation_id=correlation_id)
    proposals = wb.proposals()
    today = proposals[proposals["correlation_id"] == correlation_id].reset_index(drop=True)
    waiting = {OrderState.APPROVAL_REQUESTED.value}
    change = wb.state_change()
    chain = wb.log.verify()
    return CycleReport(
        as_of=as_of,
        correlation_id=correlation_id,
        home=wb.home,
        broker=wb.label,
        portfolio=portfolio,
        outcomes=tuple(outcomes),
        proposals=today,
        # Everything still waiting for a person, from any day: what the approver faces.
        exposure=exposure_frame(portfolio, proposals),
        awaiting_approval=proposals[proposals["state"].isin(waiting)].reset_index(drop=True),
        trading_state=change.state.value,
        trading_state_reason=change.reason,
        head_seq=chain.head_seq,
        head_hash=chain.head_hash,
        market=market,
        clock=wb.clock_label,
        chain_ok=chain.ok,
        chain_problem="" if chain.ok else f"seq {chain.first_bad_seq}: {chain.reason}",
    )


def exposure_frame(portfolio: PortfolioSnapshot, proposals: pd.DataFrame) -> pd.DataFrame:
    """Market value by symbol now, and after every order awaiting approval fills at its
    simulated notional (a pending proposal without a simulation is a fault, not a zero)."""
    before = {p.instrument.symbol: p.market_value for p in portfolio.positions}
    after = dict(before)
    pending = proposals[proposals["state"] == OrderState.APPROVAL_REQUESTED.value]
    for row in pending.itertuples():
        if row.notional is None or pd.isna(row.notional):
            raise WorkbenchError(f"{row.proposal_id} awaits approval without a simulated notional")
        sign = 1 if row.side == "BUY" else -1
        after[row.symbol] = after.get(row.symbol, Decimal(0)) + sign * row.notional
    symbols = sorted(set(before) | set(after))
    nav = portfolio.net_liquidation
    return pd.DataFrame(
        {
            "symbol": symbols,
            "before": [float(before.get(s, 0)) for s in symbols],
            "after": [float(after.get(s, 0)) for s in symbols],
            "weight_before": [float(before.get(s, 0) / nav) if nav > 0 else None for s in symbols],
            "weight_after": [float(after.get(s, 0) / nav) if nav > 0 else None for s in symbols],
        }
    )


def open_for_day(
    *,
    as_of: str = "",
    broker: str = "paper",
    home: str = "",
    policy_dir: str = "",
    bars_path: str = "",
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
) -> tuple[Workbench, date, Path]:
    """The notebook's parameters turned into an open workbench, the day and the policies folder.

    Today runs live in the home (created if missing: the daily run may create it); a past
    session is replayed in its own sandbox (``<home>/replay/<day>/``) on a clock fixed at 10:30
    New York; a future day or a day without a session is refused. ``host``/``port``/
    ``client_id`` name the IBKR connection over policies/broker.yaml (a replay runs on the
    paper broker only)."""
    plan = plan_day(parse_as_of(as_of), home or None)
    policies = resolve_policy_dir(policy_dir or None)
    wb = Workbench.open(
        plan.run_home,
        broker,
        policy_dir=policies,
        clock=plan.clock(),
        bars_path=bars_path or None,
        create=True,
        host=host,
        port=port,
        client_id=client_id,
    )
    return wb, plan.day, policies


TITLE_KEY = "workbench_title"  # display metadata a report cell sets to name its HTML page


def parse_as_of(text: str | None) -> date | None:
    """``YYYY-MM-DD`` into a date; empty means today. A bad date is a ConfigError."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"as_of must be YYYY-MM-DD, got {text!r}") from None
