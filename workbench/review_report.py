"""The review notebook's parts: the frames of :class:`~workbench.review.Review` as formatted
tables and charts in the reports' one style (``report_style``). Display only."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from workbench import fmt, report_style
from workbench.clock import SystemClock
from workbench.review import Review

LEVELS = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}
SEVERITY_COLOURS = {"BLOCKER": "#b3261e", "MAJOR": "#e07b00", "MINOR": "#8a8a8a"}


def show(rv: Review, part: str) -> None:
    """Display one part of the review in a notebook."""
    report_style.show(PARTS[part](rv))


def _end(rv: Review) -> datetime:
    return min(rv.until, SystemClock().now())


def _time_axis(ax: Any, times: list[datetime]) -> None:
    """New York dates on the x axis; a single instant gets an hour either side."""
    import matplotlib.dates as mdates

    formatter = mdates.DateFormatter("%m-%d %H:%M", tz=fmt.NEW_YORK)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.tick_params(axis="x", labelrotation=30)
    if times and min(times) == max(times):
        ax.set_xlim(min(times) - timedelta(hours=1), max(times) + timedelta(hours=1))


def _range(rv: Review) -> str:
    last = (rv.until - timedelta(days=1)).date()
    return f"{rv.since.date().isoformat()} to {last.isoformat()} (New York days)"


# -- header --------------------------------------------------------------------------------------


def _header(rv: Review) -> list[object]:
    result = rv.chain()
    head = f"{result.checked:,} events, head seq {result.head_seq}"
    broken = (
        f"at seq {result.first_bad_seq}: {result.reason} ({result.checked:,} events"
        " verified before it)"
    )
    home = str(rv.log.path.parent)
    rows = [
        ("Range", html.escape(_range(rv)), _range(rv)),
        ("Home", f"<code>{html.escape(home)}</code>", home),
        report_style.chain_row(result.ok, head, result.head_hash, broken),
    ]
    return [report_style.header_card("Review", rows, "wb-review-header")]


# -- NAV and drawdown ----------------------------------------------------------------------------


def _nav(rv: Review) -> list[object]:
    frame = rv.nav()
    if frame.empty:
        return ["No NAV recorded in the range."]
    ccy = str(frame["currency"].iloc[-1])
    first, last = frame["nav"].iloc[0], frame["nav"].iloc[-1]
    times = list(frame["time"])
    with report_style.style():
        fig, ax = report_style.figure(8.5, 3.2)
        for account, part in frame.groupby("account", sort=True):
            ax.plot(part["time"], [float(v) for v in part["nav"]], label=f"NAV {account}")
        report_style.money_axis(ax)
        _time_axis(ax, times)
        ax.set_ylabel(f"net liquidation ({ccy})")
        ax.set_title("NAV (equity curve)")
        ax.legend(loc="best")
    change = (last - first) / first if first else None
    summary = (
        f"{len(frame):,} NAV snapshots: from {fmt.money(first, ccy)} to {fmt.money(last, ccy)} "
        f"({fmt.pct(change, signed=True)}); lowest {fmt.money(min(frame['nav']), ccy)}."
    )
    return [summary, report_style.done(fig, "NAV (equity curve)")]


def _drawdown(rv: Review) -> list[object]:
    frame = rv.nav()
    if frame.empty:
        return ["No NAV recorded in the range: no drawdown to show."]
    limits = rv.limits()
    dd = [float(v) if v is not None else float("nan") for v in frame["drawdown_1d"]]
    breaker, warning = float(limits["breaker"]), float(limits["warning"])
    times = list(frame["time"])
    with report_style.style():
        fig, ax = report_style.figure(8.5, 3.0)
        ax.plot(times, dd, marker="o", markersize=3,  # each NAV the breaker read
                label="drawdown since the previous session's close (as the breaker)")  # fmt: skip
        ax.axhline(breaker, color=report_style.LIMIT, linestyle="--",
                   label=f"circuit breaker {breaker:.2%}: HALTED")  # fmt: skip
        ax.axhline(warning, color=report_style.WARN, linestyle=":",
                   label=f"warning {warning:.2%}: gate R7, reducing orders only")  # fmt: skip
        ax.set_ylim(0, max(breaker * 1.25, max((d for d in dd if d == d), default=0) * 1.1))
        report_style.pct_axis(ax)
        _time_axis(ax, times)
        ax.set_title("Daily drawdown against the limits")
        fig.legend(loc="outside lower center", ncols=3)
    worst = frame["drawdown_1d"].dropna()
    peak = max(worst, default=Decimal(0))
    summary = (
        f"Largest one-day drawdown {fmt.pct(peak)}, measured as the circuit breaker measures it: "
        "below the NAV at the previous session's close and the day's peak since, so overnight, "
        f"weekend and holiday moves count (circuit breaker at {fmt.pct(limits['breaker'])}, "
        f"warning at {fmt.pct(limits['warning'])})."
    )
    return [summary, report_style.done(fig, "Daily drawdown against the circuit breaker")]


# -- events and the gate -------------------------------------------------------------------------


def _events(rv: Review) -> list[object]:
    frame = rv.events_by_type()
    if frame.empty:
        return [f"No events from {_range(rv)}."]
    return [
        f"{int(frame['events'].sum()):,} events from {_range(rv)}.",
        report_style.table(frame, counts=["events"]),
    ]


def _rule_chart(frame: pd.DataFrame, total: int) -> Any:
    labels = [
        f"{r.split('_', 1)[0]} {s}"
        for r, s in zip(frame["rule_id"], frame["severity"], strict=True)
    ]
    with report_style.style():
        fig, ax = report_style.figure(8.5, max(2.2, 0.34 * len(frame) + 1.0))
        colours = [SEVERITY_COLOURS.get(s, "#555") for s in frame["severity"]]
        bars = ax.barh(labels, list(frame["rate"]), color=colours)
        shares = zip(frame["rate"], frame["count"], strict=True)
        ax.bar_label(bars, labels=[f"{r:.0%} ({n})" for r, n in shares], padding=3, fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        report_style.pct_axis(ax, "x", 0)
        ax.set_xlim(0, max(1.0, float(frame["rate"].max()) * 1.15))
        ax.set_xlabel(f"share of the {total:,} decisions (BLOCKER rejects, MAJOR sends to review)")
        ax.set_title("Reject rate by rule")
    return report_style.done(fig, "Reject rate by rule")


def _decisions(rv: Review) -> list[object]:
    outcomes = rv.decisions()
    if outcomes.empty:
        return ["No gate decisions in the range."]
    total = int(outcomes["decisions"].sum())
    rules = rv.rejects_by_rule()
    parts: list[object] = [report_style.table(outcomes, counts=["decisions"], caption="Decisions")]
    stops = rules[rules["severity"].isin(["BLOCKER", "MAJOR"])].reset_index(drop=True)
    if stops.empty:
        parts.append("No rule rejected an order or sent one to review in the range.")
    else:
        parts.append(_rule_chart(stops, total))
    if not rules.empty:
        parts.append(
            report_style.table(
                rules, counts=["count"], percents=["rate"], caption="Every finding by rule"
            )
        )
    return parts


# -- fills and open orders -----------------------------------------------------------------------


def _fills(rv: Review) -> list[object]:
    frame = rv.fills()
    if frame.empty:
        return ["No fills in the range."]
    ccy = str(frame["currency"].iloc[0])
    pnl = sum(frame["realized_pnl"], Decimal(0))
    fees = sum(frame["commission"], Decimal(0))
    shown = frame.assign(time=[fmt.ny(t) for t in frame["time"]]).drop(columns=["currency"])
    summary = (
        f"{len(frame)} fills: realised P&L {fmt.money(pnl, ccy, signed=True)}, net of "
        f"{fmt.money(fees, ccy)} commission (P&L % is of what the closed shares cost)."
    )
    return [
        summary,
        report_style.table(
            shown.rename(columns={"realized_pnl": "realised P&L", "pnl_pct": "P&L %"}),
            currency=ccy,
            money=["commission", "realised P&L"],
            prices=["price"],
            quantities=["quantity"],
            percents=["P&L %"],
        ),
    ]


def _orders(rv: Review) -> list[object]:
    frame = rv.open_orders()
    if frame.empty:
        return ["No open orders: nothing is working at the broker."]
    stops = int((frame["role"] == "protective stop").sum())
    shown = frame.assign(since=[fmt.ny(t) for t in frame["since"]])
    return [
        f"{len(frame)} open orders, {stops} of them protective stops.",
        report_style.table(shown, prices=["limit", "stop"], quantities=["quantity"]),
    ]


# -- trading state -------------------------------------------------------------------------------


def _timeline_chart(rv: Review, frame: pd.DataFrame) -> Any:
    start, end = rv.since, _end(rv)
    changes = list(zip(frame["time"], frame["state"], strict=True))
    points = [(start, rv.state_before()), *changes]
    xs = [p[0] for p in points] + [end]
    ys = [LEVELS.get(p[1], 2) for p in points] + [LEVELS.get(points[-1][1], 2)]
    with report_style.style():
        fig, ax = report_style.figure(8.5, 2.2)
        for (at, state), (nxt, _) in zip(points, [*points[1:], (end, "")], strict=True):
            ax.axvspan(
                at,
                max(nxt, at),
                color=report_style.STATE_COLOURS.get(state, "#888"),
                alpha=0.25,
                lw=0,
            )
        ax.step(xs, ys, where="post", color="#333333")
        ax.set_yticks(list(LEVELS.values()), list(LEVELS))
        ax.set_ylim(-0.5, 2.5)
        ax.grid(axis="y", visible=False)
        _time_axis(ax, [start, end])
        ax.set_title("Trading state")
    return report_style.done(fig, "Trading-state timeline")


def _states(rv: Review) -> list[object]:
    frame = rv.trading_states()
    parts: list[object] = [_timeline_chart(rv, frame)]
    if frame.empty:
        parts.insert(0, f"No trading-state change in the range: {rv.state_before()} throughout.")
        return parts
    shown = frame.assign(time=[fmt.ny(t) for t in frame["time"]])
    parts.insert(0, f"{len(frame)} trading-state changes.")
    parts.append(report_style.table(shown, text=["reason"]))
    return parts


PARTS: dict[str, Callable[[Review], list[object]]] = {
    "header": _header,
    "nav": _nav,
    "drawdown": _drawdown,
    "events": _events,
    "decisions": _decisions,
    "fills": _fills,
    "orders": _orders,
    "states": _states,
}
