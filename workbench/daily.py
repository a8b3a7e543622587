"""The daily cycle: snapshot → proposer → simulate → gate → request approval, and its report.

:func:`run_cycle` is what ``notebooks/daily_cycle.ipynb`` calls; :func:`run_notebook` is what
``workbench daily`` calls: it executes that notebook with papermill into ``<home>/<as_of>/`` and
writes an HTML copy without code. Nothing here approves or submits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd

from workbench import fmt, privacy, sessions
from workbench.bridge import SizingRules
from workbench.clock import Clock, FixedClock, SystemClock
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import resolve_policy_dir
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
from workbench.workbench import Outcome, Workbench

Proposer = Literal["rebalance", "signals"]
ACTOR = "daily-cycle"
NEW_YORK = ZoneInfo("America/New_York")
REPLAY_TIME = time(10, 30)
NOTEBOOK_NAME = "daily_cycle.ipynb"

# Exit codes of `workbench daily` (also in the README, for whoever schedules it).
EXIT_OK = 0
EXIT_NOTEBOOK_FAILED = 1
EXIT_BAD_INPUT = 2


def market_today() -> date:
    """Today's date in New York, where the US market keeps its calendar."""
    return datetime.now(NEW_YORK).date()


def clock_for(as_of: date | None, *, today: date | None = None) -> Clock:
    """The wall clock for today's run; a fixed 10:30 New York clock to replay another day."""
    today = today or market_today()
    if as_of is None or as_of == today:
        return SystemClock()
    return FixedClock(datetime.combine(as_of, REPLAY_TIME, tzinfo=NEW_YORK))


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
    home: Path
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
    """A comma-separated symbol list (or empty) as a tuple without duplicates."""
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if len(symbols) != len(set(symbols)):
        raise ConfigError("universe: a symbol appears twice")
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
        home=wb.home,
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
    """The notebook's parameters turned into an open workbench, the day and the policies folder
    (``host``/``port``/``client_id``: the IBKR connection over policies/broker.yaml)."""
    day = parse_as_of(as_of) or market_today()
    policies = resolve_policy_dir(policy_dir or None)
    wb = Workbench.open(
        home or None,
        broker,
        policy_dir=policies,
        clock=clock_for(day),
        bars_path=bars_path or None,
        host=host,
        port=port,
        client_id=client_id,
    )
    return wb, day, policies


# -- the scheduled run: papermill ----------------------------------------------------------------


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (``$WORKBENCH_NOTEBOOKS`` overrides it)."""
    override = os.environ.get("WORKBENCH_NOTEBOOKS")
    folder = Path(override) if override else Path(__file__).resolve().parents[1] / "notebooks"
    if not (folder / NOTEBOOK_NAME).is_file():
        raise ConfigError(f"{NOTEBOOK_NAME} not found in {folder}")
    return folder


@dataclass(frozen=True)
class NotebookRun:
    """Where a scheduled run left its report, and whether it succeeded."""

    notebook: Path
    html: Path | None
    ok: bool
    error: str | None = None


def run_notebook(
    *,
    as_of: date,
    home: Path,
    policy_dir: Path,
    broker: str = "paper",
    proposer: Proposer = "rebalance",
    signals_path: Path | None = None,
    universe: str = "",
    bars_path: Path | None = None,
    progress: bool = False,
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
) -> NotebookRun:
    """Execute the daily notebook into ``<home>/<as_of>/`` and write its code-free HTML.

    A failing cell still leaves the executed notebook (papermill writes it with the error shown)
    and its HTML; ``ok`` is then False. ``progress`` shows a bar of the cells run (on stderr).
    """
    import papermill as pm

    out_dir = home / as_of.isoformat()
    privacy.make_home(home)  # a home made here is private (0700) like any other
    out_dir.mkdir(exist_ok=True)
    output = out_dir / NOTEBOOK_NAME
    params = {
        "as_of": as_of.isoformat(),
        "broker": broker,
        "home": str(home),
        "policy_dir": str(policy_dir),
        "proposer": proposer,
        "signals_path": str(signals_path) if signals_path else "",
        "universe": universe,
        "bars_path": str(bars_path) if bars_path else "",
        "host": host,
        "port": port,
        "client_id": client_id,
    }
    error = None
    try:
        pm.execute_notebook(
            str(notebooks_dir() / NOTEBOOK_NAME),
            str(output),
            parameters=params,
            kernel_name="python3",
            cwd=str(out_dir),
            progress_bar=progress,
            # The kernel's own log (start-up notices; "KeyboardInterrupt caught" when
            # jupyter_client interrupts it on shutdown) is not the report's business: a failing
            # cell is in the notebook and fails the run.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    html = write_html(output, f"Daily cycle {as_of.isoformat()}") if output.exists() else None
    return NotebookRun(output, html, error is None, error)


TITLE_KEY = "workbench_title"  # display metadata a report cell sets to name its HTML page


def write_html(notebook: Path, title: str = "") -> Path:
    """An HTML copy of an executed notebook without its code cells, beside it, titled by the
    title its report cell recorded (else ``title``)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    recorded = [
        str(o["metadata"][TITLE_KEY])
        for c in nb.cells
        for o in c.get("outputs", [])
        if TITLE_KEY in o.get("metadata", {})
    ]
    if recorded or title:
        nb.metadata["title"] = recorded[0] if recorded else title
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    body = _alt_texts(nb, body)
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


_NO_ALT = 'alt="No description has been provided for this image"'


def _alt_texts(nb: object, body: str) -> str:
    """Give each chart its recorded alternative text (``image/png`` ``alt`` metadata, which the
    lab template leaves out), in order; images without one keep nbconvert's placeholder."""
    import html

    alts = [
        out.get("metadata", {}).get("image/png", {}).get("alt")
        for cell in getattr(nb, "cells", [])
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    pieces = body.split(_NO_ALT)
    if len(pieces) != len(alts) + 1:  # not one placeholder per chart: leave the page as it is
        return body
    out = [pieces[0]]
    for alt, rest in zip(alts, pieces[1:], strict=True):
        out.append(f'alt="{html.escape(alt, quote=True)}"' if alt else _NO_ALT)
        out.append(rest)
    return "".join(out)


def parse_as_of(text: str | None) -> date | None:
    """``YYYY-MM-DD`` into a date; empty means today. A bad date is a WorkbenchError."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise WorkbenchError(f"as_of must be YYYY-MM-DD, got {text!r}") from None
