"""The order ticket rendered: plain text for a terminal (fits its width), HTML for the panel and
the report. Pure: a ticket in, a string out. Nothing is cut: long text wraps."""

from __future__ import annotations

import html

from workbench import fmt
from workbench.ticket import Execution, Line, OrderTicket
from workbench.ticket_checks import CheckRow

WIDTH = 100
DECISION_COLOURS = {
    "APPROVE": "#1b7f3b",
    "REVIEW": "#b36b00",
    "REJECT": "#b3261e",
    "FAULT": "#b3261e",
}
OUTCOME_COLOURS = {"BLOCKER": "#b3261e", "MAJOR": "#b36b00", "MINOR": "#6b6b6b", "ok": "#1b7f3b"}


# -- text ------------------------------------------------------------------------------------


def to_text(ticket: OrderTicket, width: int = WIDTH) -> str:
    """The ticket as plain text, every line at most ``width`` columns."""
    out = fmt.wrap(f"Proposal {ticket.proposal_id}: {ticket.headline}", width)
    out += fmt.wrap(f"gate {ticket.decision} | state {ticket.state} | {ticket.broker}", width)
    for flag in ticket.flags:
        out += fmt.wrap(f"! {flag}", width)
    out += _section("Order", ticket.order, width)
    out += _section("Risk and costs", ticket.risk, width)
    if ticket.changes:
        out.append("Before -> after")
        label_w = max(len(c.label) for c in ticket.changes)
        before_w = max(len(c.before) for c in ticket.changes)
        for c in ticket.changes:
            out += fmt.wrap(
                f"{c.label.ljust(label_w)}  {c.before.rjust(before_w)} -> {c.after}", width, "  "
            )
    out += _checks_text(ticket, width)
    if ticket.execution is not None:
        out.append("Broker")
        out += fmt.wrap(ticket.execution.text(), width, "  ")
    out += _section("Times", ticket.times, width)
    return "\n".join(out)


def _section(title: str, lines: tuple[Line, ...], width: int) -> list[str]:
    if not lines:
        return []
    label_w = max(len(line.label) for line in lines)
    out = [title]
    for line in lines:
        first = f"  {line.label.ljust(label_w)}  "
        wrapped = fmt.wrap(line.value, max(width - len(first), 20))
        out.append(first + wrapped[0])
        out += [" " * len(first) + more.lstrip() for more in wrapped[1:]]
    return out


def _checks_text(ticket: OrderTicket, width: int) -> list[str]:
    if ticket.fault:
        return ["Gate checks", *fmt.wrap(f"not run: {ticket.fault}", width, "  ")]
    if not ticket.checks:
        return ["Gate checks", "  not judged yet"]
    out = [f"Gate checks ({ticket.decision}; blockers first)"]
    for row in ticket.checks:
        head = f"{row.rule:<4} {row.outcome:<7} {row.name}: {row.value} vs {row.limit}"
        out += fmt.wrap(head, width, "  ")
        if row.message:
            out += fmt.wrap(row.message, width, "       ")
    return out


# -- HTML ------------------------------------------------------------------------------------

_CARD = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.45;"
    "border:1px solid #c8c8c8;border-radius:6px;padding:10px 12px;max-width:980px;"
    "background:#fff;color:#1d1d1d"
)
_TD = "padding:2px 10px 2px 0;vertical-align:top"
_TH = (
    "padding:2px 10px 2px 0;text-align:left;color:#555;font-weight:600;vertical-align:top;"
    "white-space:nowrap"
)
_NUM = (
    "padding:2px 10px 2px 0;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap"
)


def _e(text: str) -> str:
    return html.escape(text)


def badge(text: str, colour: str) -> str:
    """A small coloured label."""
    return (
        f'<span style="background:{colour};color:#fff;border-radius:3px;padding:1px 6px;'
        f'font-weight:600;font-size:12px">{_e(text)}</span>'
    )


def to_html(ticket: OrderTicket) -> str:
    """The ticket as one self-contained HTML card (inline styles: works in Lab and in reports)."""
    colour = DECISION_COLOURS.get(ticket.decision, "#555")
    parts = [
        f'<div class="wb-ticket" style="{_CARD}">',
        '<div class="wb-ticket-head" style="font-size:15px;margin-bottom:6px">',
        f"<b>{_e(ticket.headline)}</b> &nbsp;{badge('gate ' + ticket.decision, colour)} "
        f'&nbsp;<span style="color:#555">state {_e(ticket.state)} · {_e(ticket.proposal_id)} · '
        f"{_e(ticket.broker)}</span></div>",
        *(_flag_html(flag) for flag in ticket.flags),
        '<div style="display:flex;flex-wrap:wrap;gap:8px 28px">',
        _lines_html("Order", ticket.order, "wb-ticket-order"),
        _lines_html("Risk and costs", ticket.risk, "wb-ticket-risk"),
        _changes_html(ticket),
        "</div>",
        _checks_html(ticket),
        _execution_html(ticket.execution),
        _lines_html("Times", ticket.times, "wb-ticket-times", inline=True),
        "</div>",
    ]
    return "".join(parts)


def _flag_html(flag: str) -> str:
    return (
        '<div class="wb-ticket-flag" style="background:#fff4e0;border-left:4px solid #b36b00;'
        f'padding:3px 8px;margin:4px 0">{_e(flag)}</div>'
    )


def _lines_html(title: str, lines: tuple[Line, ...], css: str, *, inline: bool = False) -> str:
    if inline:
        body = " &nbsp;·&nbsp; ".join(
            f'<span class="wb-line-{line.key or "x"}"><b>{_e(line.label)}</b> '
            f"{_e(line.value)}</span>"
            for line in lines
        )
        return f'<div class="{css}" style="margin-top:8px;color:#333">{body}</div>'
    rows = "".join(
        f'<tr class="wb-line-{line.key or "x"}"><th style="{_TH}">{_e(line.label)}</th>'
        f'<td style="{_TD}">{_e(line.value)}</td></tr>'
        for line in lines
    )
    return (
        f'<div class="{css}" style="flex:1 1 420px;min-width:320px"><div style="font-weight:700;'
        f'margin:4px 0">{_e(title)}</div><table style="border-collapse:collapse">{rows}</table>'
        "</div>"
    )


def _changes_html(ticket: OrderTicket) -> str:
    if not ticket.changes:
        return ""
    rows = "".join(
        f'<tr><th style="{_TH}">{_e(c.label)}</th><td style="{_NUM}">{_e(c.before)}</td>'
        f'<td style="color:#777">→</td><td style="{_NUM}">{_e(c.after)}</td></tr>'
        for c in ticket.changes
    )
    head = (
        f'<tr><th style="{_TH}"></th><th style="{_NUM};color:#555">before</th><th></th>'
        f'<th style="{_NUM};color:#555">after (simulated)</th></tr>'
    )
    return (
        '<div class="wb-ticket-changes" style="flex:1 1 420px;min-width:320px">'
        '<div style="font-weight:700;margin:4px 0">Before → after</div>'
        f'<table style="border-collapse:collapse">{head}{rows}</table></div>'
    )


def _check_row_html(row: CheckRow) -> str:
    colour = OUTCOME_COLOURS.get(row.outcome, "#555")
    outcome = (
        badge(row.outcome, colour)
        if row.outcome != "ok"
        else f'<span style="color:{colour}">ok</span>'
    )
    message = f'<div style="color:{colour}">{_e(row.message)}</div>' if row.message else ""
    return (
        f'<tr class="wb-check wb-check-{_e(row.outcome)}" style="border-top:1px solid #eee">'
        f'<td style="{_TD};white-space:nowrap"><b>{_e(row.rule)}</b> {_e(row.name)}</td>'
        f'<td style="{_TD}">{outcome}</td><td style="{_TD}">{_e(row.value)}{message}</td>'
        f'<td style="{_TD};color:#555">{_e(row.limit)}</td></tr>'
    )


def _checks_html(ticket: OrderTicket) -> str:
    title = f"Gate checks: {ticket.decision} (blockers first)"
    if ticket.fault:
        body = f'<div style="color:#b3261e">Not judged: {_e(ticket.fault)}</div>'
    elif not ticket.checks:
        body = "<div>Not judged yet.</div>"
    else:
        head = (
            f'<tr><th style="{_TH}">rule</th><th style="{_TH}">result</th>'
            f'<th style="{_TH}">value</th><th style="{_TH}">limit</th></tr>'
        )
        rows = "".join(_check_row_html(r) for r in ticket.checks)
        body = f'<table style="border-collapse:collapse;width:100%">{head}{rows}</table>'
    return (
        '<div class="wb-ticket-checks" style="margin-top:8px">'
        f'<div style="font-weight:700;margin:4px 0">{_e(title)}</div>{body}</div>'
    )


def execution_html(execution: Execution | None) -> str:
    """The broker's answer (fill, commission, working stop) as a highlighted line."""
    return _execution_html(execution)


def _execution_html(execution: Execution | None) -> str:
    if execution is None:
        return ""
    return (
        '<div class="wb-ticket-exec" style="margin-top:8px;background:#eef6ee;'
        'border-left:4px solid #1b7f3b;padding:4px 8px">'
        f"<b>Broker:</b> {_e(execution.status)} · filled {_e(execution.filled)} @ "
        f"<b>{_e(execution.avg_price)}</b> · commission {_e(execution.commission)} · "
        f"stop {_e(execution.stop)}</div>"
    )
