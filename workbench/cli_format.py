"""What the ``workbench`` command prints: tables that fit a terminal, money and times as on the
order ticket. Pure text functions; the command handlers in ``cli.py`` call them."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from workbench import fmt

if TYPE_CHECKING:
    from collections.abc import Sequence

    from workbench.brokers.base import BrokerLink
    from workbench.orphans import Orphan
    from workbench.ticket import Execution

WIDTH = 100


def terminal_width(limit: int = WIDTH) -> int:
    """The terminal's width, at most ``limit`` (and at least 60) columns."""
    return max(60, min(limit, shutil.get_terminal_size((limit, 24)).columns))


def _when(stamp: object) -> str:
    return fmt.ny(datetime.fromisoformat(str(stamp)), seconds=False)[:16]


def proposals_text(frame: pd.DataFrame, currency: str, *, width: int = WIDTH) -> str:
    """One line per proposal (at most ``width`` columns), then its BLOCKER and MAJOR reasons
    in full, wrapped beneath it. MINOR notes are counted; ``--wide`` lists them."""
    if frame.empty:
        return "no proposals"
    head = ("id", "proposed (New York)", "order", f"notional {currency}", "decision", "state")
    rows = [
        (
            str(r.proposal_id),
            _when(r.market_at),
            f"{r.side} {fmt.quantity(r.quantity)} {r.symbol}" if r.symbol else fmt.DASH,
            fmt.amount(r.notional) if r.notional is not None and pd.notna(r.notional) else "—",
            str(r.decision or "—"),
            str(r.state),
        )
        for r in frame.itertuples()
    ]
    lines = fmt.columns([head, *rows], right=(3,))
    out = [lines[0]]
    minor = 0
    for line, r in zip(lines[1:], frame.itertuples(), strict=True):
        out += fmt.wrap(line, width)
        if r.symbol is None:  # UNREADABLE: its events do not validate, say why
            out += fmt.wrap(str(r.violations), width, "    ")
            continue
        for rule, severity, message in fmt.findings(str(r.violations or "")):
            if severity == "MINOR":
                minor += 1
                continue
            out += fmt.wrap(f"{rule} {severity}: {message}", width, "    ")
    out.append(f"{len(rows)} proposals (times in New York).")
    if minor:
        out.append(f"{minor} MINOR notes not shown: `workbench proposals --wide` lists every one.")
    return "\n".join(out)


def proposals_wide(frame: pd.DataFrame) -> str:
    """Every column of the proposals view, every violation, nothing cut."""
    if frame.empty:
        return "no proposals"
    shown = frame.copy()
    for column in ("proposed_at", "market_at"):
        shown[column] = [fmt.ny(datetime.fromisoformat(str(t))) for t in shown[column]]
    shown["notional"] = [
        fmt.amount(v) if v is not None and pd.notna(v) else "" for v in shown["notional"]
    ]
    with pd.option_context(
        "display.max_colwidth", None, "display.width", None, "display.max_rows", None
    ):
        return str(shown.to_string(index=False))


def submit_text(proposal_id: str, broker: str, state: str, execution: Execution | None) -> str:
    """What ``workbench submit`` prints: where it went, the fill, the commission and the stop."""
    lines = [f"submitted {proposal_id} to {broker}: {state}"]
    if execution is not None:
        lines += [
            f"fill:       {execution.filled} @ {execution.avg_price} ({execution.status})",
            f"commission: {execution.commission}",
            f"stop:       {execution.stop}",
        ]
    return "\n".join(lines)


def orphans_text(found: Sequence[Orphan], broker: str, *, width: int = WIDTH) -> str:
    """What ``workbench reconcile`` prints: each order of unknown outcome with what is known
    (order, account, orderRef, when its token was spent, the broker's answer), then how to
    resolve one. Every line fits ``width`` columns, wrapped, never cut."""
    out = [f"orders of unknown outcome at {broker} (never re-sent; each blocks its symbol):"]
    for o in found:
        order = f"{o.side.value} {fmt.quantity(o.quantity)} {o.symbol}"
        out += fmt.wrap(f"{o.proposal_id}  {order}  account {o.account}  {o.state.value}", width)
        out += fmt.wrap(f"orderRef {o.order_ref}; token spent {fmt.ny(o.spent_at)}", width, "    ")
        out += fmt.wrap(f"broker's answer: {o.broker_answer}", width, "    ")
    out += [
        "An approver resolves each after looking at the broker:",
        "  workbench reconcile resolve ID --not-sent --approver NAME",
        "      (the broker holds no order with its orderRef)",
        "  workbench reconcile resolve ID --sent-as BROKER_ORDER_ID --approver NAME",
        "      (the broker holds that order, with its orderRef)",
    ]
    return "\n".join(out)


def link_text(link: BrokerLink | None, unknown: Sequence[str], *, width: int = WIDTH) -> str:
    """What ``workbench status`` says about the connection: its state and since when, the last
    reconciliation with the broker and what it found, and the orders of unknown outcome."""
    if link is None:
        lines = ["connection: none (the embedded paper broker)"]
    else:
        since = f" since {fmt.ny(link.connected_since)}" if link.connected_since else ""
        why = f": {link.problem}" if link.problem else ""
        lines = fmt.wrap(f"connection: {link.state}{since} ({link.connections} connections)"
                         f"{why}", width)  # fmt: skip
        last = fmt.ny(link.last_reconcile_at) if link.last_reconcile_at else "never"
        found = f": {link.last_reconcile}" if link.last_reconcile else ""
        lines += fmt.wrap(f"last reconcile: {last}{found}", width)
    if unknown:
        lines += fmt.wrap(
            f"unknown orders: {', '.join(unknown)} (no new order on their symbols until an"
            " approver resolves them: workbench reconcile)",
            width,
        )
    else:
        lines.append("unknown orders: none")
    return "\n".join(lines)
