"""The daily cycle's report, part by part, as ``notebooks/daily_cycle.ipynb`` shows it.

A header card (date, broker, market open or closed with the next session, home, the verified
audit chain), then formatted tables (``report_style``) and the exposure chart. Every REJECT's
blocking reasons are shown whole, blockers first. Display only: nothing here writes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd

from workbench import fmt, report_style
from workbench.brokers.base import PAPER_LABEL
from workbench.daily import TITLE_KEY, CycleReport
from workbench.home import is_replay_home
from workbench.ticket_view import badge

CHART_ROWS = 30


def title(r: CycleReport) -> str:
    """The report's title (also its HTML page title)."""
    return f"Daily cycle {r.as_of.isoformat()} — {r.broker}"


def show_report(report: CycleReport, part: str) -> None:
    """Display one part of the report in a notebook (HTML, tables, charts, plain text)."""
    report_style.show(PARTS[part](report))


# -- the header ----------------------------------------------------------------------------------


def _header(r: CycleReport) -> list[object]:
    m = r.market
    if m.open_now:
        market = f"{badge('OPEN', '#1b7f3b')} {html.escape(m.calendar)} at {fmt.ny(m.now)}"
        market_text = f"OPEN {m.calendar} at {fmt.ny(m.now)}"
    else:
        next_open = fmt.ny(m.next_open, seconds=False)
        market = (
            f"{badge('CLOSED', '#b3261e')} {html.escape(m.reason)}; next session opens "
            f"<b>{next_open}</b>"
        )
        market_text = f"CLOSED {m.reason}; next session opens {next_open}"
    head = f"{r.head_seq:,} events, head seq {r.head_seq}"
    state_colour = report_style.STATE_COLOURS.get(r.trading_state, "#555")
    # The paper broker's quotes are seeded synthetic data; an IBKR label says for itself when its
    # prices are synthetic (the loopback test gateway), and "IBKR paper account" is not that.
    synthetic = r.broker == PAPER_LABEL
    account = f"{r.broker}, account {r.portfolio.account}"
    when = f"{fmt.ny_day(r.market.now)} · run at {fmt.ny(r.market.now)} ({r.clock})"
    rows = [
        (
            "Date",
            f"<b>{fmt.ny_day(r.market.now)}</b> · run at {fmt.ny(r.market.now)} "
            f"({html.escape(r.clock)})",
            when,
        ),
        (
            "Broker",
            f"<b>{html.escape(r.broker)}</b>, account <code>{html.escape(r.portfolio.account)}"
            "</code>" + (" · market data <b>synthetic (seeded)</b>" if synthetic else ""),
            account + (" · market data synthetic (seeded)" if synthetic else ""),
        ),
        ("Market", market, market_text),
        (
            "Trading state",
            f'<b style="color:{state_colour}">{html.escape(r.trading_state)}</b> '
            f"({html.escape(r.trading_state_reason)})",
            f"{r.trading_state} ({r.trading_state_reason})",
        ),
        ("Home", *_home(r)),
        report_style.chain_row(r.chain_ok, head, r.head_hash, f"at {r.chain_problem}"),
    ]
    card = report_style.header_card(title(r), rows, "wb-report-header", {TITLE_KEY: title(r)})
    parts: list[object] = [card]
    if not m.open_now:
        parts.append(_closed_box(r))
    else:
        parts.append(
            f"Proposals this run: **{len(r.proposals)}**; awaiting approval: "
            f"**{len(r.awaiting_approval)}**."
        )
    return parts


def _home(r: CycleReport) -> tuple[str, str]:
    """The home as HTML and as text; a replay sandbox says so, with a REPLAY badge."""
    if not is_replay_home(r.home):
        return f"<code>{html.escape(str(r.home))}</code>", str(r.home)
    note = (
        "market time fixed at 10:30 New York; events stamped with the wall-clock time they"
        " were written; never the live home"
    )
    day = r.as_of.isoformat()
    return (
        f"{badge('REPLAY', '#6a4c93')} Replay of {day} in its sandbox "
        f"<code>{html.escape(str(r.home))}</code> ({note})",
        f"REPLAY: Replay of {day} in its sandbox {r.home} ({note})",
    )


def _closed_box(r: CycleReport) -> report_style.Html:
    m = r.market
    next_open = fmt.ny(m.next_open, seconds=False)
    said = (
        "so the proposer was skipped: every order would be refused (rule R11). The next session"
        " opens {next}. Proposals still waiting from earlier sessions are listed under Awaiting"
        " approval."
    )
    box = (
        '<div class="wb-market-closed" style="background:#fff4e0;border-left:4px solid #b36b00;'
        f'padding:6px 10px;margin:8px 0;max-width:960px"><b>Market closed — nothing was '
        f"proposed.</b> {html.escape(m.reason)}, {said.format(next=f'<b>{next_open}</b>')}</div>"
    )
    text = f"Market closed — nothing was proposed. {m.reason}, {said.format(next=next_open)}"
    return report_style.Html(box, text=text)


# -- tables ------------------------------------------------------------------------------------


def _portfolio(r: CycleReport) -> list[object]:
    p, ccy = r.portfolio, r.portfolio.currency
    figures = pd.DataFrame(
        {
            "figure": [
                "Net liquidation",
                "Cash",
                "Available funds",
                "Buying power",
                "Initial margin",
                "Maintenance margin",
            ],
            "amount": [
                p.net_liquidation,
                p.cash,
                p.available_funds,
                p.buying_power,
                p.init_margin,
                p.maint_margin,
            ],
        }
    )
    nav = p.net_liquidation
    positions = pd.DataFrame(
        [
            {
                "symbol": x.instrument.symbol,
                "quantity": x.quantity,
                "avg cost": x.avg_cost,
                "price": x.market_price,
                "market value": x.market_value,
                "weight": x.market_value / nav if nav > 0 else None,
                "unrealised P&L": (x.market_price - x.avg_cost) * x.quantity,
            }
            for x in p.positions
        ],
        columns=[
            "symbol",
            "quantity",
            "avg cost",
            "price",
            "market value",
            "weight",
            "unrealised P&L",
        ],
    )
    parts: list[object] = [
        f"Account snapshot at {fmt.ny(p.timestamp)}: {len(p.positions)} positions.",
        report_style.table(figures, currency=ccy, money=["amount"]),
    ]
    if len(positions):
        parts.append(
            report_style.table(
                positions,
                currency=ccy,
                money=["avg cost", "market value", "unrealised P&L"],
                prices=["price"],
                quantities=["quantity"],
                percents=["weight"],
            )
        )
    else:
        parts.append("No positions.")
    return parts


def reasons(text: str) -> str:
    """Every finding of one proposal, blockers first, each whole on its own line."""
    return "\n".join(f"{rule} {sev}: {msg}" for rule, sev, msg in fmt.findings(text))


def _proposals(r: CycleReport) -> list[object]:
    if r.proposals.empty:
        if not r.market.open_now:
            return ["No proposals: the market is closed (see above)."]
        return ["No proposals: every holding is within its drift band (or already proposed today)."]
    frame = r.proposals
    summary = (
        frame["decision"]
        .fillna("—")
        .value_counts()
        .rename_axis("decision")
        .reset_index(name="proposals")
    )
    shown = pd.DataFrame(
        {
            "id": frame["proposal_id"],
            "symbol": frame["symbol"],
            "side": frame["side"],
            "quantity": frame["quantity"],
            "limit": frame["limit_price"],
            "stop": frame["stop"],
            "notional": frame["notional"],
            "decision": frame["decision"],
            "state": frame["state"],
            "reasons (blockers first, in full)": [
                reasons(str(v or "")) for v in frame["violations"]
            ],
        }
    )
    ccy = r.portfolio.currency
    return [
        report_style.table(summary, counts=["proposals"], caption="Decisions"),
        report_style.table(
            shown,
            currency=ccy,
            money=["notional"],
            prices=["limit", "stop"],
            quantities=["quantity"],
            text=["reasons (blockers first, in full)"],
        ),
    ]


def _exposure_chart(r: CycleReport, frame: pd.DataFrame) -> Any:
    with report_style.style():
        fig, ax = report_style.figure(8.0, max(2.4, 0.32 * len(frame) + 1.0))
        y = list(range(len(frame)))
        ax.barh([i + 0.2 for i in y], frame["before"], height=0.4, label="now")
        ax.barh([i - 0.2 for i in y], frame["after"], height=0.4, label="if all approved")
        ax.set_yticks(y, frame["symbol"])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="#888888", linewidth=0.8)
        report_style.money_axis(ax, "x")
        ax.set_xlabel(f"market value ({r.portfolio.currency})")
        ax.set_title("Exposure by symbol")
        fig.legend(loc="outside upper right", ncols=2)
    return report_style.done(
        fig, "Exposure by symbol now and if everything awaiting approval filled"
    )


def _exposure(r: CycleReport) -> list[object]:
    frame = r.exposure
    if frame.empty:
        return ["No exposure before or after."]
    gross_before, gross_after = frame["before"].abs().sum(), frame["after"].abs().sum()
    ccy = r.portfolio.currency
    note = ""
    chart = frame
    if len(frame) > CHART_ROWS:  # a readable chart: the largest exposures, the table has all
        largest = frame[["before", "after"]].abs().max(axis=1).nlargest(CHART_ROWS).index
        chart = frame.loc[sorted(largest)].reset_index(drop=True)
        note = f" The chart shows the {CHART_ROWS} largest of {len(frame)} symbols."
    summary = (
        f"Gross exposure {fmt.money(gross_before, ccy)} now, "
        f"{fmt.money(gross_after, ccy)} if everything awaiting approval filled.{note}"
    )
    table = frame.rename(
        columns={
            "before": "now",
            "after": "if all approved",
            "weight_before": "weight now",
            "weight_after": "weight after",
        }
    )
    return [
        summary,
        _exposure_chart(r, chart),
        report_style.table(
            table,
            currency=ccy,
            money=["now", "if all approved"],
            percents=["weight now", "weight after"],
        ),
    ]


def _awaiting(r: CycleReport) -> list[object]:
    if r.awaiting_approval.empty:
        return ["Nothing awaits approval."]
    w = r.awaiting_approval
    today = r.market.now.astimezone(fmt.NEW_YORK).date()
    when = [datetime.fromisoformat(str(t)) for t in w["market_at"]]  # a replay: its day
    shown = pd.DataFrame(
        {
            "id": w["proposal_id"],
            "proposed (New York)": [
                fmt.ny(t, seconds=False)[:16]
                + (" (earlier)" if t.astimezone(fmt.NEW_YORK).date() < today else "")
                for t in when
            ],
            "symbol": w["symbol"],
            "side": w["side"],
            "quantity": w["quantity"],
            "limit": w["limit_price"],
            "stop": w["stop"],
            "notional": w["notional"],
            "decision": w["decision"],
            "notes": [reasons(str(v or "")) for v in w["violations"]],
        }
    )
    earlier = sum(t.astimezone(fmt.NEW_YORK).date() < today for t in when)
    older = f" ({earlier} from an earlier session)" if earlier else ""
    return [
        f"{len(w)} proposals{older} await a person in `notebooks/approvals.ipynb` "
        "(or `workbench approve ID --approver NAME`, which prints the order ticket first).",
        report_style.table(
            shown,
            currency=r.portfolio.currency,
            money=["notional"],
            prices=["limit", "stop"],
            quantities=["quantity"],
            text=["notes"],
        ),
    ]


def _state(r: CycleReport) -> list[object]:
    chain = "verified OK" if r.chain_ok else f"BROKEN at {r.chain_problem}"
    return [
        f"Trading state: **{r.trading_state}** ({r.trading_state_reason}).",
        f"Audit chain head: seq **{r.head_seq}**, hash `{r.head_hash}` ({chain}).",
    ]


PARTS: dict[str, Callable[[CycleReport], list[object]]] = {
    "header": _header,
    "portfolio": _portfolio,
    "proposals": _proposals,
    "exposure": _exposure,
    "awaiting": _awaiting,
    "state": _state,
}
