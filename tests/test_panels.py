"""The approval panel: each button is one facade call with a plain-text answer.

Clicks here come from the kernel (``button.click()``), which is exactly why the passphrase, not
the click, is what proves a person approved.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from gatekit import intent as gate_intent
from gatekit import run
from helpers import raw_insert
from wbkit import APPROVER, PASSPHRASE, intent, parent_orders

from workbench import canonical
from workbench.audit import EventType
from workbench.clock import FixedClock
from workbench.errors import AuditError
from workbench.events import OrderProposed, OrderSimulated
from workbench.lifecycle import OrderState
from workbench.models import TradingState
from workbench.panels import ApprovalPanel
from workbench.ticket_source import ticket_for
from workbench.workbench import Workbench


def pending_panel(wb: Workbench, symbol: str = "SPY") -> tuple[ApprovalPanel, str]:
    outcome = wb.run(intent(wb, symbol, 10), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED
    panel = ApprovalPanel(wb)
    panel.choice.value = outcome.proposal_id
    return panel, outcome.proposal_id


def sign_in(panel: ApprovalPanel) -> None:
    panel.approver.value, panel.passphrase.value = APPROVER, PASSPHRASE


def test_approve_then_submit_fills_and_says_so(wb: Workbench) -> None:
    """Right passphrase, Approve, Submit: the order fills and the status says FILLED."""
    panel, pid = pending_panel(wb)
    sign_in(panel)
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


def test_halt_needs_a_name_then_halts_and_turns_the_header_red(wb: Workbench) -> None:
    """HALT without a name is refused; with one, trading is HALTED and the header is red."""
    panel, _ = pending_panel(wb)
    panel.halt_button.click()
    assert "Type your name" in panel.status_text
    assert wb.trading_state() is TradingState.ACTIVE
    assert "wb-halted" not in panel.header.value
    panel.approver.value = "ops"
    panel.halt_button.click()
    assert wb.trading_state() is TradingState.HALTED and "HALTED" in panel.status_text
    assert "wb-halted" in panel.header.value and "background:#b3261e" in panel.header.value
    assert "TRADING HALTED" in panel.header.value and "crimson" not in panel.status.value


def test_header_names_broker_home_clock_and_state(wb: Workbench) -> None:
    """The header says which broker, which home, which clock (New York time) and the state."""
    panel, _ = pending_panel(wb)
    header = panel.header.value
    assert "paper broker (simulated)" in header and str(wb.home) in header
    assert "2026-11-18 10:30:00 EST" in header and "ACTIVE" in header


def test_ticket_of_the_selected_proposal_shows_stop_risk_changes_and_checks(
    wb: Workbench,
) -> None:
    """The chosen proposal's ticket shows the stop, money at risk, before→after and all checks."""
    panel, pid = pending_panel(wb)
    ticket = panel.detail.value
    assert 'class="wb-ticket"' in ticket and pid in ticket
    stop = intent(wb, "SPY", 10).protective_stop
    assert stop is not None and f"{stop.stop_price:.2f}" in ticket
    assert "At risk to the stop" in ticket and "of NAV" in ticket
    assert "Before → after" in ticket and "Buying power" in ticket
    assert ticket.count('class="wb-check ') == 19  # every rule R1..R19, one row per finding
    assert ticket.index("wb-check-MINOR") < ticket.index("wb-check-ok")
    summary = panel.summary()
    assert "paper broker (simulated)" in summary and pid in summary and "At risk" in summary


def test_buttons_act_on_the_proposal_whose_ticket_is_shown(wb: Workbench) -> None:
    """Selecting another proposal moves the ticket and the buttons to it; approve acts on it."""
    panel, first = pending_panel(wb)
    second = wb.run(intent(wb, "QQQ", 10), actor="test").proposal_id
    panel.refresh()
    assert panel.shown == first  # a refresh keeps the selection
    panel.choice.value = second
    assert panel.shown == second and second in panel.detail.value
    assert "QQQ" in panel.acting_on.value
    sign_in(panel)
    panel.approve_button.click()
    assert wb.state(second) is OrderState.APPROVAL_GRANTED
    assert wb.state(first) is OrderState.APPROVAL_REQUESTED
    assert panel.shown == second


def test_selection_stays_after_submit_and_the_result_shows_fill_commission_and_stop(
    wb: Workbench,
) -> None:
    """After Submit the same proposal stays selected and its fill, commission and stop show."""
    panel, pid = pending_panel(wb)
    other = wb.run(intent(wb, "QQQ", 10), actor="test").proposal_id
    panel.refresh()
    sign_in(panel)
    panel.approve_button.click()
    assert panel.shown == pid
    panel.submit_button.click()
    assert panel.shown == pid and panel.choice.value == pid and other != pid
    text = panel.status_text
    assert "FILLED" in text and "commission 1.00 USD" in text and "WORKING" in text
    assert "wb-ticket-exec" in panel.detail.value and "wb-ticket-exec" in panel.status.value


def test_token_expiry_is_shown_in_new_york_time(wb: Workbench) -> None:
    """The approval message gives the token's expiry in New York time with the zone."""
    panel, _ = pending_panel(wb)
    sign_in(panel)
    panel.approve_button.click()
    assert "expires 2026-11-18 10:35:00 EST" in panel.status_text


def test_proposal_from_an_earlier_session_is_flagged(wb: Workbench, clock: FixedClock) -> None:
    """A proposal from an earlier New York day is marked in the list and flagged on its ticket."""
    panel, pid = pending_panel(wb)
    clock.advance(timedelta(days=7))
    panel.refresh()
    assert panel.shown == pid
    assert "EARLIER SESSION" in panel.detail.value
    assert panel.choice.options[0][0].rstrip().endswith("! 7 d")


def test_proposal_with_an_unreadable_decision_shows_a_fault_not_figures(wb: Workbench) -> None:
    """A decision missing its fields cannot be written; planted in the file it makes the proposal
    UNREADABLE in the list (with why), it is never offered in the panel, and its ticket is a
    fault, not figures."""
    scene = run()  # a real simulation; the decision planted below lacks most of its fields
    order = gate_intent()
    proposed = OrderProposed(intent=order, intent_hash=order.intent_hash, broker="test")
    for kind, payload in (
        ("OrderProposed", canonical.dumps(proposed)),
        ("OrderSimulated", canonical.dumps(OrderSimulated(result=scene.sim))),
        ("RiskGateEvaluated", '{"decision":"APPROVE","transition":true}'),
        ("ApprovalRequested", "{}"),
    ):
        raw_insert(wb.log, kind, payload, pid="p-odd")
    row = wb.proposals().set_index("proposal_id").loc["p-odd"]
    assert row["state"] == "UNREADABLE" and "does not validate" in row["violations"]
    panel = ApprovalPanel(wb)
    assert "p-odd" not in [value for _, value in panel.choice.options]
    with pytest.raises(AuditError, match="does not validate"):
        ticket_for(wb, "p-odd")
