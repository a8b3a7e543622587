"""The approver's panel (ipywidgets). It holds no logic: every button calls the facade.

Layout: a header (broker, home, clock and the trading state — red when HALTED), a compact list
of proposals (symbol, side, quantity, notional, decision, state, age), the order ticket of the
selected proposal, the approver's credential and the actions. Approve, Reject and Submit act only
on the proposal whose ticket is shown, and the selection stays on it after the action.

A click in the kernel is not proof that a person approved — the approver's passphrase is. The
token minted by Approve stays in this panel's memory only, is spent by Submit, and is never shown
or written anywhere. Every widget has a plain-text twin (``status_text``, :meth:`summary`) so an
HTML export that cannot render widgets still says what happened.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench import fmt, report_style
from workbench.errors import WorkbenchError
from workbench.lifecycle import OrderState
from workbench.replay import notebook_home
from workbench.ticket_source import ticket_for
from workbench.ticket_view import execution_html, to_html, to_text
from workbench.workbench import Credential, Workbench

PENDING = (OrderState.APPROVAL_REQUESTED,)
SUBMITTABLE = (OrderState.APPROVAL_GRANTED,)
_RECENT = (
    OrderState.UNKNOWN,  # sent or not, unknown: `workbench reconcile` shows how to resolve it
    OrderState.NOT_SENT,
    OrderState.SUBMITTED,
    OrderState.PENDING_CONFIRMATION,
    OrderState.CONFIRMED,
    OrderState.PARTIALLY_FILLED,
    OrderState.FILLED,
    OrderState.CANCELLED,
    OrderState.REJECTED,
    OrderState.APPROVAL_DENIED,
)
RECENT_SHOWN = 20  # sent or decided proposals kept in the list (newest first)
LIST_HEADER = ("symbol", "side", "qty", "notional", "decision", "state", "age")
# The list is a <select>: a monospace font keeps its columns aligned.
_STYLE = (
    "<style>.wb-proposal select, .wb-list-head {font-family: 'DejaVu Sans Mono', Menlo, "
    "Consolas, monospace; font-size: 12px; white-space: pre}</style>"
)


def _button(label: str, css: str, style: str = "") -> widgets.Button:
    button = widgets.Button(description=label, button_style=style)
    button.add_class(css)
    return button


def list_rows(frame: pd.DataFrame, now: datetime) -> list[tuple[str, ...]]:
    """The compact list's cells, one tuple per proposal (``frame`` from ``Workbench.proposals``)."""
    rows: list[tuple[str, ...]] = []
    for r in frame.itertuples():
        proposed = datetime.fromisoformat(str(r.market_at))  # market time (a replay's day)
        earlier = proposed.astimezone(fmt.NEW_YORK).date() < now.astimezone(fmt.NEW_YORK).date()
        age = fmt.duration((now - proposed).total_seconds())
        notional = (
            fmt.amount(r.notional) if r.notional is not None and pd.notna(r.notional) else "—"
        )
        rows.append(
            (
                str(r.symbol),
                str(r.side),
                fmt.quantity(r.quantity),
                notional,
                str(r.decision or "—"),
                str(r.state),
                ("! " if earlier else "") + age,
            )
        )
    return rows


class ApprovalPanel:
    """Proposals, the selected one's ticket, a credential, Approve / Reject / Submit, and Halt."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self._tokens: dict[str, str] = {}
        self._shown: str | None = None  # the proposal whose ticket is on screen
        self._refreshing = False
        self.status_text = ""
        self.header = widgets.HTML()
        self.header.add_class("wb-header")
        self.list_head = widgets.HTML()
        self.choice = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.choice.add_class("wb-proposal")
        self.detail = widgets.HTML()
        self.detail.add_class("wb-detail")
        self.choice.observe(lambda _: self._on_select(), names="value")
        self.approver = widgets.Text(description="Approver", placeholder="your name")
        self.approver.add_class("wb-approver")
        self.passphrase = widgets.Password(description="Passphrase")
        self.passphrase.add_class("wb-passphrase")
        self.reason = widgets.Text(description="Reason", placeholder="override / reject reason")
        self.reason.add_class("wb-reason")
        self.approve_button = _button("Approve", "wb-approve", "success")
        self.reject_button = _button("Reject", "wb-reject", "warning")
        self.submit_button = _button("Submit", "wb-submit", "primary")
        self.refresh_button = _button("Refresh", "wb-refresh")
        self.halt_button = _button("HALT trading", "wb-halt", "danger")
        self.acting_on = widgets.HTML()
        self.acting_on.add_class("wb-acting-on")
        self.status = widgets.HTML()
        self.status.add_class("wb-status")
        self.approve_button.on_click(lambda _: self.approve())
        self.reject_button.on_click(lambda _: self.reject())
        self.submit_button.on_click(lambda _: self.submit())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.halt_button.on_click(lambda _: self.halt())
        self.refresh()

    @property
    def widget(self) -> widgets.VBox:
        buttons = widgets.HBox(
            [
                self.approve_button,
                self.reject_button,
                self.submit_button,
                self.refresh_button,
                self.halt_button,
            ]
        )
        credential = widgets.HBox([self.approver, self.passphrase, self.reason])
        return widgets.VBox(
            [
                widgets.HTML(_STYLE),
                self.header,
                self.list_head,
                self.choice,
                self.detail,
                self.acting_on,
                credential,
                buttons,
                self.status,
            ]
        )

    @property
    def shown(self) -> str | None:
        """The id of the proposal whose ticket is shown (the one the buttons act on)."""
        return self._shown

    # -- reading -------------------------------------------------------------------------------

    def refresh(self, keep: str | None = None) -> None:
        """Reload the header and the list from the audit log; keep the selection on ``keep``
        (default: the proposal shown now) when it is still listed."""
        keep = keep or self._shown
        self._header()
        frame = self._listed()
        rows = list_rows(frame, self.wb.clock.now())
        lines = fmt.columns([LIST_HEADER, *rows], right=(2, 3, 6))
        self.list_head.value = (
            f'<div class="wb-list-head">{html.escape(lines[0]) if rows else ""}</div>'
        )
        options = list(zip(lines[1:], frame["proposal_id"], strict=True))
        self._refreshing = True
        try:
            self.choice.options = options
            ids = [pid for _, pid in options]
            self.choice.value = keep if keep in ids else (ids[0] if ids else None)
        finally:
            self._refreshing = False
        self._on_select()

    def _listed(self) -> pd.DataFrame:
        """Proposals awaiting a person first (oldest first), then the newest sent or decided."""
        waiting = self.wb.proposals(states=(*SUBMITTABLE, *PENDING))
        recent = self.wb.proposals(states=_RECENT).iloc[::-1].head(RECENT_SHOWN)
        return pd.concat([waiting, recent], ignore_index=True)

    def _header(self) -> None:
        status = self.wb.status()
        state = status["trading_state"]
        colour = report_style.STATE_COLOURS.get(state, "#555")
        halted = state == "HALTED"
        why = f"{state} by {status['trading_state_by']}: {status['trading_state_reason']}"
        state_html = (
            f'<span class="wb-trading-state" style="color:{colour};font-weight:700">'
            f"{html.escape(why)}</span>"
        )
        box = "background:#b3261e;color:#fff;" if halted else "background:#f6f6f6;color:#1d1d1d;"
        if halted:
            by, reason = status["trading_state_by"], status["trading_state_reason"]
            state_html = (
                f'<span class="wb-trading-state" style="font-weight:700">TRADING HALTED by '
                f"{html.escape(str(by))}: {html.escape(str(reason))}. No order is sent until an "
                "approver resumes.</span>"
            )
        self.header.value = (
            f'<div class="wb-header-box{" wb-halted" if halted else ""}" style="{box}'
            'padding:6px 10px;border-radius:4px;font-size:13px">'
            f"{state_html}<br><b>Broker:</b> {html.escape(status['broker'])} "
            f"(account {html.escape(status['account'])}) &nbsp; <b>Home:</b> "
            f"{html.escape(status['home'])} &nbsp; <b>Clock:</b> "
            f"{html.escape(self._clock_text())}</div>"
        )

    def _clock_text(self) -> str:
        return f"{fmt.ny(self.wb.clock.now())} ({self.wb.clock_label})"

    def _on_select(self) -> None:
        if not self._refreshing:
            self.show_detail()

    def show_detail(self) -> None:
        """Show the selected proposal's ticket; from now on the buttons act on it."""
        pid = self.choice.value
        self._shown = pid or None
        if not pid:
            self.detail.value = "<i>No proposals awaiting approval or recently sent.</i>"
            self.acting_on.value = ""
            return
        try:
            ticket = ticket_for(self.wb, pid)
        except WorkbenchError as exc:  # nothing to act on that the approver cannot see
            self._shown = None
            self.detail.value = f"<b>Cannot show {html.escape(pid)}:</b> {html.escape(str(exc))}"
            self.acting_on.value = "<b>Buttons act on:</b> nothing (the ticket cannot be shown)"
            return
        self.detail.value = to_html(ticket)
        self.acting_on.value = (
            f"<b>Buttons act on:</b> {html.escape(ticket.headline)} "
            f"<code>{html.escape(pid)}</code> ({html.escape(ticket.state)})"
        )

    # -- actions: each one facade call, then a plain-text message ----------------------------

    def _credential(self) -> Credential:
        """What the person typed; the library verifies it (this panel only collects it)."""
        return Credential(self.approver.value.strip(), self.passphrase.value)

    def approve(self) -> None:
        pid = self._shown
        if not pid:
            return self._say("Choose a proposal first.", ok=False)
        try:
            grant = self.wb.approve(
                pid, self._credential(), override_reason=self.reason.value or None
            )
        except WorkbenchError as exc:
            return self._say(f"Approval refused: {exc}", ok=False)
        finally:
            self.passphrase.value = ""
        self._tokens[pid] = grant.token
        self.refresh(keep=pid)
        self._say(
            f"Approved {pid}; token minted, expires {fmt.ny(grant.expires_at)}. "
            "Press Submit to send it."
        )

    def reject(self) -> None:
        pid = self._shown
        if not pid:
            return self._say("Choose a proposal first.", ok=False)
        try:
            self.wb.reject(pid, self._credential(), self.reason.value)
        except WorkbenchError as exc:
            return self._say(f"Reject refused: {exc}", ok=False)
        finally:
            self.passphrase.value = ""
        self.refresh(keep=pid)
        self._say(f"Rejected {pid}.")

    def submit(self) -> None:
        pid = self._shown
        if not pid:
            return self._say("Choose a proposal first.", ok=False)
        token = self._tokens.pop(pid, None)
        if token is None:
            return self._say(
                "No token for this proposal in this panel: approve it first.", ok=False
            )
        try:
            state = self.wb.submit(pid, token)
        except WorkbenchError as exc:
            self.refresh(keep=pid)
            return self._say(f"Submit refused: {exc}", ok=False)
        self.refresh(keep=pid)
        result = ticket_for(self.wb, pid).execution
        said = f"Submitted {pid} to {self.wb.label}: order {state.value}."
        if result is not None:
            said += (
                f" Filled {result.filled} @ {result.avg_price}, commission {result.commission};"
                f" stop {result.stop}."
            )
        self._say(said, extra=execution_html(result))

    def halt(self) -> None:
        who = self.approver.value.strip()
        if not who:
            return self._say("Type your name in Approver to halt trading.", ok=False)
        self.wb.halt(self.reason.value or "halted from the approval panel", by=who)
        self.refresh()
        self._say(
            f"Trading HALTED by {who}. No order will be sent until a person resumes.", ok=False
        )

    def _say(self, message: str, *, ok: bool = True, extra: str = "") -> None:
        self.status_text = message
        colour = "#1b7f3b" if ok else "#b3261e"
        self.status.value = (
            f'<div style="color:{colour};font-weight:600">{html.escape(message)}</div>{extra}'
        )
        print(message)

    def summary(self) -> str:
        """The panel as plain text, for reports that cannot render widgets."""
        status = self.wb.status()
        frame = self._listed()
        lines = [
            f"Home: {status['home']}",
            f"Broker: {status['broker']} (account {status['account']})",
            f"Clock: {self._clock_text()}",
            f"Trading state: {status['trading_state']} ({status['trading_state_reason']})",
            f"Proposals listed: {len(frame)}",
            *(
                "  " + line
                for line in fmt.columns(
                    [LIST_HEADER, *list_rows(frame, self.wb.clock.now())], right=(2, 3, 6)
                )
            ),
        ]
        if self._shown:
            lines += ["", to_text(ticket_for(self.wb, self._shown))]
        lines.append(f"Last message: {self.status_text or '(none yet)'}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def open_panel(
    *,
    home: str = "",
    broker: str = "paper",
    policy_dir: str = "",
    clock_at: str = "",
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
) -> ApprovalPanel:
    """The panel over the home the approver names (the notebook's parameters). A replay time
    ``clock_at`` opens that day's replay sandbox (``workbench daily --as-of`` made it), never
    the live home: replayed time is never written there. ``host``, ``port`` and ``client_id``
    name the IBKR connection over policies/broker.yaml (live only: a replay is paper)."""
    where, clock = notebook_home(home, clock_at)
    wb = Workbench.open(where, broker, policy_dir=policy_dir or None, clock=clock,
                        host=host, port=port, client_id=client_id)  # fmt: skip
    return ApprovalPanel(wb)
