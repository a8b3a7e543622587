"""The approver's panel (ipywidgets). It holds no logic: every button calls the facade.

A click in the kernel is not proof that a person approved — the approver's passphrase is. The
token minted by Approve stays in this panel's memory only, is spent by Submit, and is never shown
or written anywhere. Every widget has a plain-text twin (``status_text``) so an HTML export that
cannot render widgets still says what happened.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from workbench.clock import Clock, SystemClock
from workbench.errors import WorkbenchError
from workbench.lifecycle import OrderState
from workbench.replay import replay_at
from workbench.workbench import PROPOSAL_COLUMNS, Workbench

PENDING = (OrderState.APPROVAL_REQUESTED,)
SUBMITTABLE = (OrderState.APPROVAL_GRANTED,)
_RECENT = (
    OrderState.SUBMITTED,
    OrderState.CONFIRMED,
    OrderState.PARTIALLY_FILLED,
    OrderState.FILLED,
)
# The proposals table without the bookkeeping columns.
_SHOWN = [c for c in PROPOSAL_COLUMNS if c not in ("proposed_at", "source", "correlation_id")]


def _button(label: str, css: str, style: str = "") -> widgets.Button:
    button = widgets.Button(description=label, button_style=style)
    button.add_class(css)
    return button


class ApprovalPanel:
    """Pending proposals, a credential, Approve / Reject / Submit, and an always-visible Halt."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self._tokens: dict[str, str] = {}
        self.status_text = ""
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.choice = widgets.Dropdown(description="Proposal", options=[])
        self.choice.add_class("wb-proposal")
        self.detail = widgets.HTML()
        self.detail.add_class("wb-detail")
        self.choice.observe(lambda _: self.show_detail(), names="value")
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
        return widgets.VBox(
            [
                self.header,
                self.table,
                self.choice,
                self.approver,
                self.passphrase,
                self.reason,
                buttons,
                self.status,
            ]
        )

    # -- actions: each one facade call, then a plain-text message ----------------------------

    def refresh(self) -> None:
        """Reload the pending proposals and the header from the audit log."""
        status = self.wb.status()
        self.header.value = (
            f"<b>Home:</b> {html.escape(status['home'])} &nbsp; "
            f"<b>Broker:</b> {html.escape(status['broker'])} &nbsp; "
            f"<b>Trading state:</b> {html.escape(status['trading_state'])} &nbsp; "
            f"<b>Audit head:</b> {status['audit_head_seq']}"
        )
        frame = self.wb.proposals(states=(*PENDING, *SUBMITTABLE, *_RECENT))
        self.table.value = (
            frame[_SHOWN].to_html(index=False, na_rep="")
            if len(frame)
            else ("<i>No proposals awaiting approval.</i>")
        )
        pending = frame[frame["state"].isin([s.value for s in (*PENDING, *SUBMITTABLE)])]
        self.choice.options = [
            (f"{r.proposal_id} {r.side} {r.quantity} {r.symbol} [{r.state}]", r.proposal_id)
            for r in pending.itertuples()
        ]
        self.show_detail()

    def show_detail(self) -> None:
        """The chosen proposal's intent, simulated impact and the gate's findings."""
        pid = self.choice.value
        self.detail.value = "" if not pid else _detail_html(self.wb.detail(pid))

    def approve(self) -> None:
        pid = self.choice.value
        if not pid:
            return self._say("Choose a proposal first.", ok=False)
        try:
            grant = self.wb.approve(
                pid,
                self.approver.value,
                self.passphrase.value,
                override_reason=self.reason.value or None,
            )
        except WorkbenchError as exc:
            return self._say(f"Approval refused: {exc}", ok=False)
        finally:
            self.passphrase.value = ""
        self._tokens[pid] = grant.token
        self.refresh()
        self.choice.value = pid
        self._say(
            f"Approved {pid}; token minted, expires {grant.expires_at:%H:%M:%S %Z}. "
            "Press Submit to send it."
        )

    def reject(self) -> None:
        pid = self.choice.value
        if not pid:
            return self._say("Choose a proposal first.", ok=False)
        try:
            self.wb.reject(pid, self.approver.value, self.passphrase.value, self.reason.value)
        except WorkbenchError as exc:
            return self._say(f"Reject refused: {exc}", ok=False)
        finally:
            self.passphrase.value = ""
        self.refresh()
        self._say(f"Rejected {pid}.")

    def submit(self) -> None:
        pid = self.choice.value
        token = self._tokens.pop(pid, None) if pid else None
        if token is None:
            return self._say(
                "No token for this proposal in this panel: approve it first.", ok=False
            )
        try:
            state = self.wb.submit(pid, token)
        except WorkbenchError as exc:
            return self._say(f"Submit refused: {exc}", ok=False)
        self.refresh()
        self._say(f"Submitted {pid} to {self.wb.label}: order {state.value}.")

    def halt(self) -> None:
        who = self.approver.value.strip()
        if not who:
            return self._say("Type your name in Approver to halt trading.", ok=False)
        self.wb.halt(self.reason.value or "halted from the approval panel", by=who)
        self.refresh()
        self._say(f"Trading HALTED by {who}. No order will be sent until a person resumes.")

    def _say(self, message: str, *, ok: bool = True) -> None:
        self.status_text = message
        colour = "green" if ok else "crimson"
        self.status.value = f'<span style="color:{colour}">{html.escape(message)}</span>'
        print(message)

    def summary(self) -> str:
        """The panel as plain text, for reports that cannot render widgets."""
        status = self.wb.status()
        pending = self.wb.proposals(states=(*PENDING, *SUBMITTABLE))
        lines = [
            f"Home: {status['home']}",
            f"Broker: {status['broker']} (account {status['account']})",
            f"Clock: {self.wb.clock_label}",
            f"Trading state: {status['trading_state']} ({status['trading_state_reason']})",
            f"Awaiting approval or submit: {len(pending)}",
            *(
                f"  {r.proposal_id} {r.side} {r.quantity} {r.symbol} @ {r.limit_price} "
                f"[{r.decision} -> {r.state}] {r.violations}"
                for r in pending.itertuples()
            ),
            f"Last message: {self.status_text or '(none yet)'}",
        ]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


_SIM_FIGURES = (
    "notional",
    "fees",
    "estimated_slippage",
    "cash_after",
    "weight_after",
    "concentration_after",
    "leverage_after",
    "positions_after",
)


def _detail_html(detail: dict[str, Any]) -> str:
    intent = detail["intent"]
    stop = (intent.get("protective_stop") or {}).get("stop_price", "none")
    lines = [
        f"<b>{html.escape(detail['proposal_id'])}</b>: {intent['side']} {intent['quantity']} "
        f"{html.escape(intent['instrument']['symbol'])} {intent['order_type']} "
        f"limit {intent['limit_price']} stop {stop} ({intent['time_in_force']}, "
        f"source {intent['source']}{', PROPAGATED' if intent['is_propagated'] else ''})",
        f"Reason: {html.escape(intent['reason'] or '-')}",
    ]
    sim = detail["simulation"] or {}
    if sim:
        lines.append(
            "Simulation: "
            + ", ".join(f"{name} {sim[name]}" for name in _SIM_FIGURES if name in sim)
        )
    decision = detail["decision"] or {}
    findings = decision.get("violations", [])
    lines.append(
        f"Gate: {decision.get('decision', '-')}"
        + "".join(
            f"<br>&nbsp;&nbsp;{html.escape(v['rule_id'])} ({v['severity']}): "
            f"{html.escape(v['message'])}"
            for v in findings
        )
    )
    return "<br>".join(lines)


def open_panel(
    *, home: str = "", broker: str = "paper", policy_dir: str = "", clock_at: str = ""
) -> ApprovalPanel:
    """The panel over the home the approver names (the notebook's parameters). A replay time
    ``clock_at`` opens that day's replay sandbox (``workbench daily --as-of`` made it), never
    the live home: replayed time is never written there."""
    clock: Clock = SystemClock()
    where: str | Path | None = home or None
    if clock_at:
        where, clock = replay_at(clock_at, home or None)
    wb = Workbench.open(where, broker, policy_dir=policy_dir or None, clock=clock)
    return ApprovalPanel(wb)
