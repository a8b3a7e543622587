"""The daily cycle: snapshot → proposer → simulate → gate → request approval, and its report.

:func:`run_cycle` is what ``notebooks/daily_cycle.ipynb`` calls (after :func:`open_for_day`);
``workbench daily`` runs that notebook through ``workbench.scheduled``. Nothing here approves or
submits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Literal

import pandas as pd

from workbench import trading_state
from workbench.bridge import SizingRules
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import is_replay_home, resolve_policy_dir
from workbench.lifecycle import OrderState
from workbench.models import OrderIntent, PortfolioSnapshot
from workbench.proposers import (
    Market,
    StopRules,
    Targets,
    from_signals,
    load_targets,
    read_signals,
    rebalance,
)
from workbench.replay import plan_day
from workbench.workbench import Outcome, Workbench

Proposer = Literal["rebalance", "signals"]
ACTOR = "daily-cycle"
NOTEBOOK_NAME = "daily_cycle.ipynb"
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-/]{0,19}")


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


def market_view(wb: Workbench, as_of: date, *, record: bool = True) -> Market:
    """Quotes, ATRs and instruments from the broker the workbench is connected to."""
    return Market(
        quote=lambda symbol: wb.market_snapshot(symbol, record=record),
        atr=lambda symbol: wb.atr(symbol, as_of),
        instrument=wb.instrument,
    )


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
    sizing = SizingRules(wb.params.sizing.min_order_size, wb.params.sizing.max_order_size)
    stops = StopRules(wb.params.smart_stop.atr_multiplier, wb.params.smart_stop.floor)
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
    data = targets.model_dump()
    data["weights"] = {symbol: weight for symbol in universe}
    return Targets.model_validate(data)


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
    """Run today's cycle once; a second run of the same day adds no duplicate proposals."""
    correlation_id = f"daily:{as_of.isoformat()}"
    portfolio = wb.portfolio()
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
    change = trading_state.read_state(wb.log)
    seq, digest = wb.log.head()
    return CycleReport(
        as_of=as_of,
        correlation_id=correlation_id,
        home=wb.home,
        broker=wb.label,
        portfolio=portfolio,
        outcomes=tuple(outcomes),
        proposals=today,
        exposure=exposure_frame(portfolio, today),
        awaiting_approval=today[today["state"].isin(waiting)].reset_index(drop=True),
        trading_state=change.state.value,
        trading_state_reason=change.reason,
        head_seq=seq,
        head_hash=digest,
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
) -> tuple[Workbench, date, Path]:
    """The notebook's parameters turned into an open workbench, the day and the policies folder.

    Today runs live in the home (created if missing: the daily run may create it); a past
    session is replayed in its own sandbox (``<home>/replay/<day>/``) on a clock fixed at 10:30
    New York; a future day or a day without a session is refused."""
    plan = plan_day(parse_as_of(as_of), home or None)
    policies = resolve_policy_dir(policy_dir or None)
    wb = Workbench.open(
        plan.run_home,
        broker,
        policy_dir=policies,
        clock=plan.clock(),
        bars_path=bars_path or None,
        create=True,
    )
    return wb, plan.day, policies


def show_report(report: CycleReport, part: str) -> None:
    """Display one part of the report in a notebook, always with a plain-text line beside it."""
    from IPython.display import Markdown, display

    shown = _PARTS[part](report)
    for item in shown:
        display(Markdown(item) if isinstance(item, str) else item)


def _banner(r: CycleReport) -> list[object]:
    synthetic = " Market data is **synthetic (seeded)**." if "paper" in r.broker else ""
    where = f"Home `{r.home}`."
    if is_replay_home(r.home):
        where = (
            f"**Replay** in the sandbox home `{r.home}` (market time fixed at 10:30 New York;"
            " events stamped with the wall-clock time they were written)."
        )
    return [
        where,
        f"**{r.as_of.isoformat()}** on **{r.broker}**, account `{r.portfolio.account}`.{synthetic} "
        f"Proposals this run: {len(r.proposals)}; awaiting approval: {len(r.awaiting_approval)}; "
        f"trading state: **{r.trading_state}**.",
    ]


def _portfolio(r: CycleReport) -> list[object]:
    p = r.portfolio
    figures = pd.DataFrame(
        {
            "figure": ["NetLiquidation", "cash", "AvailableFunds", "BuyingPower", "maint margin"],
            p.currency: [
                p.net_liquidation,
                p.cash,
                p.available_funds,
                p.buying_power,
                p.maint_margin,
            ],
        }
    )
    positions = pd.DataFrame(
        [
            {
                "symbol": x.instrument.symbol,
                "quantity": x.quantity,
                "avg_cost": x.avg_cost,
                "price": x.market_price,
                "market_value": x.market_value,
            }
            for x in p.positions
        ],
        columns=["symbol", "quantity", "avg_cost", "price", "market_value"],
    )
    return [
        f"Snapshot at {p.timestamp.isoformat()}: {len(p.positions)} positions.",
        figures,
        positions,
    ]


def _proposals(r: CycleReport) -> list[object]:
    if r.proposals.empty:
        return ["No proposals: every holding is within its drift band (or already proposed today)."]
    counts = r.proposals["decision"].value_counts().to_dict()
    return [f"Decisions: {counts}", r.proposals.drop(columns=["correlation_id"])]


CHART_ROWS = 30


def _exposure(r: CycleReport) -> list[object]:
    import matplotlib.pyplot as plt

    frame = r.exposure
    if frame.empty:
        return ["No exposure before or after."]
    gross_before, gross_after = frame["before"].abs().sum(), frame["after"].abs().sum()
    note = ""
    if len(frame) > CHART_ROWS:  # a readable chart: the largest exposures, the table has all
        largest = frame[["before", "after"]].abs().max(axis=1).nlargest(CHART_ROWS).index
        frame = frame.loc[sorted(largest)].reset_index(drop=True)
        note = f" The chart shows the {CHART_ROWS} largest of {len(r.exposure)} symbols."
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.35 * len(frame))))
    y = range(len(frame))
    ax.barh([i - 0.2 for i in y], frame["before"], height=0.4, label="before")
    ax.barh([i + 0.2 for i in y], frame["after"], height=0.4, label="after approval")
    ax.set_yticks(list(y), frame["symbol"])
    ax.set_xlabel(f"market value ({r.portfolio.currency})")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    summary = f"Gross exposure {gross_before:,.0f} now, {gross_after:,.0f} if all approved.{note}"
    return [summary, fig, r.exposure]


def _awaiting(r: CycleReport) -> list[object]:
    if r.awaiting_approval.empty:
        return ["Nothing awaits approval."]
    return [
        f"{len(r.awaiting_approval)} proposals await a person in notebooks/approvals.ipynb "
        "(or `workbench approve ID --approver NAME`).",
        r.awaiting_approval[
            [
                "proposal_id",
                "symbol",
                "side",
                "quantity",
                "limit_price",
                "stop",
                "decision",
                "violations",
            ]
        ],
    ]


def _state(r: CycleReport) -> list[object]:
    return [
        f"Trading state: **{r.trading_state}** ({r.trading_state_reason}).",
        f"Audit chain head: seq **{r.head_seq}**, hash `{r.head_hash}`.",
    ]


_PARTS = {
    "banner": _banner,
    "portfolio": _portfolio,
    "proposals": _proposals,
    "exposure": _exposure,
    "awaiting": _awaiting,
    "state": _state,
}


def parse_as_of(text: str | None) -> date | None:
    """``YYYY-MM-DD`` into a date; empty means today. A bad date is a ConfigError."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"as_of must be YYYY-MM-DD, got {text!r}") from None
