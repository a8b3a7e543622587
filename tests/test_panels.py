"""The approval panel: each button is one facade call with a plain-text answer.

Clicks here come from the kernel (``button.click()``), which is exactly why the passphrase, not
the click, is what proves a person approved.
"""

from __future__ import annotations

from wbkit import APPROVER, PASSPHRASE, intent, parent_orders

from workbench.audit import EventType
from workbench.lifecycle import OrderState
from workbench.models import TradingState
from workbench.panels import ApprovalPanel
from workbench.workbench import Workbench


def pending_panel(wb: Workbench) -> tuple[ApprovalPanel, str]:
    outcome = wb.run(intent(wb, "SPY", 10), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED
    panel = ApprovalPanel(wb)
    panel.choice.value = outcome.proposal_id
    return panel, outcome.proposal_id


def test_approve_then_submit_fills_and_says_so(wb: Workbench) -> None:
    """Right passphrase, Approve, Submit: the order fills and the status says FILLED."""
    panel, pid = pending_panel(wb)
    panel.approver.value, panel.passphrase.value = APPROVER, PASSPHRASE
    panel.approve_button.click()
    assert "Approved" in panel.status_text and panel.passphrase.value == ""
    panel.submit_button.click()
    assert "FILLED" in panel.status_text
    assert wb.state(pid) is OrderState.FILLED and parent_orders(wb) == [pid]


def test_wrong_passphrase_mints_nothing_and_submit_has_no_token(wb: Workbench) -> None:
    """A wrong passphrase is refused in plain words; Submit then has no token to spend."""
    panel, pid = pending_panel(wb)
    panel.approver.value, panel.passphrase.value = APPROVER, "not the passphrase"
    panel.approve_button.click()
    assert panel.status_text.startswith("Approval refused")
    panel.submit_button.click()
    assert "approve it first" in panel.status_text
    assert not wb.log.events(proposal_id=pid, types=(EventType.APPROVAL_GRANTED,))
    assert parent_orders(wb) == []


def test_halt_needs_a_name_then_halts(wb: Workbench) -> None:
    """HALT without a name is refused; with one, trading is HALTED."""
    panel, _ = pending_panel(wb)
    panel.halt_button.click()
    assert "Type your name" in panel.status_text
    assert wb.trading_state() is TradingState.ACTIVE
    panel.approver.value = "ops"
    panel.halt_button.click()
    assert wb.trading_state() is TradingState.HALTED and "HALTED" in panel.status_text


def test_detail_and_summary_show_intent_simulation_and_decision(wb: Workbench) -> None:
    """The chosen proposal's detail shows its simulation and verdict; the summary is text."""
    panel, pid = pending_panel(wb)
    assert "Simulation: notional" in panel.detail.value and "Gate: APPROVE" in panel.detail.value
    summary = panel.summary()
    assert "paper broker (simulated)" in summary and pid in summary
