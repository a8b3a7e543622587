"""The facade: one intent's whole path on the real paper broker, and every refusal on the way."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import policies_with
from wbkit import (
    APPROVER,
    CREDENTIAL,
    POLICIES,
    add_approver,
    approved,
    counter_ids,
    intent,
    open_wb,
    parent_orders,
)

from workbench import trading_state
from workbench.audit import EventType
from workbench.authority import Credential
from workbench.brokers.base import OrderStatus
from workbench.clock import FixedClock
from workbench.errors import ApprovalError, TradingHaltedError
from workbench.lifecycle import OrderState
from workbench.models import Decision, Side, TradingState
from workbench.proposers import ProposalError
from workbench.workbench import Workbench

D = Decimal
DAY = "daily:2026-11-18"


def types(wb: Workbench, proposal_id: str) -> list[str]:
    return [e.type for e in wb.log.events(proposal_id=proposal_id)]


def trip_breaker(wb: Workbench) -> None:
    """Record that the account was worth 10% more an hour ago: the next snapshot trips HALTED."""
    now = wb.portfolio(record=False)
    richer = now.model_copy(
        update={"net_liquidation": now.net_liquidation * D("1.1"),
                "timestamp": now.timestamp - timedelta(hours=1)}
    )  # fmt: skip
    assert wb.authority is not None
    trading_state.record_portfolio_snapshot(
        wb.log, richer, wb.params.circuit_breaker, key=wb.authority.key
    )


# -- the happy path --------------------------------------------------------------------------


def test_happy_path_from_proposal_to_fill_on_the_paper_broker(wb: Workbench) -> None:
    """propose → simulate → risk → approval requested → approved → submitted → filled, each
    step recorded in order on a chain that verifies."""
    pid = wb.propose(intent(wb), actor="quant")
    assert wb.state(pid) is OrderState.PROPOSED
    sim = wb.simulate(pid)
    assert sim.notional > 0 and wb.state(pid) is OrderState.SIMULATED
    decision = wb.evaluate(pid)
    assert decision.decision is Decision.APPROVE, decision.violations
    assert wb.state(pid) is OrderState.RISK_APPROVED
    wb.request_approval(pid)
    assert wb.state(pid) is OrderState.APPROVAL_REQUESTED
    grant = wb.approve(pid, CREDENTIAL)
    assert wb.state(pid) is OrderState.APPROVAL_GRANTED and grant.approvers == (APPROVER,)
    assert wb.submit(pid, grant.token) is OrderState.FILLED
    parent = next(o for o in wb.broker.orders() if o.proposal_id == pid)
    assert (parent.status, parent.filled_quantity) == (OrderStatus.FILLED, D(10))
    assert wb.broker.portfolio(wb.account).position("SPY") is not None
    assert [t for t in types(wb, pid) if t != "BrokerOrderUpdated"] == [
        "OrderProposed",
        "OrderSimulated",
        "RiskGateEvaluated",
        "ApprovalRequested",
        "ApprovalGranted",
        "OrderSubmitted",
        "OrderConfirmed",
        "OrderFilled",
    ]
    assert wb.log.verify().ok
    assert wb.label == "paper broker (simulated)"


def test_submit_without_the_right_token_sends_nothing(wb: Workbench) -> None:
    """A wrong or another proposal's token is refused and the broker receives no order."""
    pid, _ = approved(wb)
    _, other_token = approved(wb, "QQQ", 5)
    for bad in ("not-a-token", other_token, other_token[:-1] + "0"):
        with pytest.raises(ApprovalError, match="token refused"):
            wb.submit(pid, bad)
    assert parent_orders(wb) == []
    assert wb.state(pid) is OrderState.APPROVAL_GRANTED


# -- trading state at submit -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["circuit breaker", "halt"])
def test_submit_while_halted_then_no_order_reaches_broker_and_token_survives(
    wb: Workbench, how: str
) -> None:
    """Tripped breaker or HALTED: submit refuses, nothing is sent, the token stays unspent.
    After an approver resumes, the same token works after a halt; after a breaker trip the gate,
    judged again at submit, still refuses an order that grows exposure on a day down past the
    daily loss limit (R7)."""
    pid, token = approved(wb)
    if how == "halt":
        wb.halt("operator pulled the plug", by="ops")
    else:
        trip_breaker(wb)  # the submit's own snapshot trips it
    with pytest.raises(TradingHaltedError, match="HALTED"):
        wb.submit(pid, token)
    assert wb.trading_state() is TradingState.HALTED
    if how == "circuit breaker":
        assert wb.log.events(types=(EventType.CIRCUIT_BREAKER_TRIPPED,))
    assert parent_orders(wb) == [] and wb.broker.orders() == ()
    assert wb.state(pid) is OrderState.APPROVAL_GRANTED
    assert "OrderSubmitted" not in types(wb, pid)
    with pytest.raises(ApprovalError):
        wb.resume("looked into it", Credential(APPROVER, "wrong passphrase!"))
    assert wb.trading_state() is TradingState.HALTED
    wb.resume("looked into it", CREDENTIAL)
    if how == "halt":
        assert wb.submit(pid, token) is OrderState.FILLED
        assert parent_orders(wb) == [pid]
        return
    with pytest.raises(ApprovalError, match=r"R7_DAILY_LOSS: down 9\.09% on the day"):
        wb.submit(pid, token)
    assert parent_orders(wb) == [] and wb.state(pid) is OrderState.RISK_REJECTED


def test_reducing_refuses_an_opening_order_but_sends_a_reducing_one(wb: Workbench) -> None:
    """REDUCING: a buy that opens a position is refused unsent; a sell that shrinks one goes."""
    first, token = approved(wb, "SPY", 10)
    wb.submit(first, token)
    opening, open_token = approved(wb, "QQQ", 5)
    reducing, reduce_token = approved(wb, "SPY", 4, Side.SELL)
    wb.reduce("losses today", by="ops")
    with pytest.raises(TradingHaltedError, match="REDUCING"):
        wb.submit(opening, open_token)
    assert wb.submit(reducing, reduce_token) is OrderState.FILLED
    assert parent_orders(wb) == [first, reducing]
    assert wb.state(opening) is OrderState.APPROVAL_GRANTED
    position = wb.broker.portfolio(wb.account).position("SPY")
    assert position is not None and position.quantity == 6


# -- approval rules --------------------------------------------------------------------------


def test_review_decision_needs_an_override_reason(wb: Workbench) -> None:
    """A REVIEW (a propagated signal) is not approved without a reason; the reason is recorded."""
    outcome = wb.run(intent(wb, is_propagated=True), actor="signals")
    assert outcome.decision is not None and outcome.decision.decision is Decision.REVIEW
    pid = outcome.proposal_id
    with pytest.raises(ApprovalError, match="override reason"):
        wb.approve(pid, CREDENTIAL)
    assert wb.state(pid) is OrderState.APPROVAL_REQUESTED
    grant = wb.approve(pid, CREDENTIAL, override_reason="provenance checked by hand")
    granted = wb.log.events(proposal_id=pid, types=(EventType.APPROVAL_GRANTED,))[0]
    assert granted.payload["override_reason"] == "provenance checked by hand"
    assert wb.submit(pid, grant.token) is OrderState.FILLED


def test_a_gate_reject_is_never_approvable(wb: Workbench) -> None:
    """An opening order without a protective stop is REJECTed and no approver can override it."""
    outcome = wb.run(intent(wb, stop=False), actor="quant")
    assert outcome.state is OrderState.RISK_REJECTED
    with pytest.raises(ApprovalError):
        wb.approve(outcome.proposal_id, CREDENTIAL, override_reason="I insist")
    assert "ApprovalGranted" not in types(wb, outcome.proposal_id)


# -- the stale-decision re-check at submit ---------------------------------------------------


def _rechecks(wb: Workbench, pid: str) -> list[dict[str, object]]:
    events = wb.log.events(proposal_id=pid, types=(EventType.RISK_GATE_EVALUATED,))
    return [e.payload for e in events if e.payload.get("transition") is False]


def test_fresh_decision_is_not_rechecked(wb: Workbench, clock: FixedClock) -> None:
    """Submitting within the quote age the policy allows re-uses the decision (no re-run)."""
    pid, token = approved(wb)
    clock.advance(timedelta(seconds=wb.policy.freshness.max_quote_age_seconds))
    wb.submit(pid, token)
    assert _rechecks(wb, pid) == []


def test_stale_decision_is_rechecked_on_fresh_data_before_sending(
    wb: Workbench, clock: FixedClock
) -> None:
    """Past max_quote_age_seconds the gate is re-run (recorded, transition false) and an
    APPROVE lets the order go."""
    pid, token = approved(wb)
    clock.advance(timedelta(seconds=wb.policy.freshness.max_quote_age_seconds + 1))
    assert wb.submit(pid, token) is OrderState.FILLED
    (recheck,) = _rechecks(wb, pid)
    original = wb.log.events(proposal_id=pid, types=(EventType.RISK_GATE_EVALUATED,))[0]
    assert recheck["decision"] == "APPROVE"
    assert str(recheck["market_ts"]) > str(original.payload["market_ts"])  # a fresh quote
    assert wb.state(pid) is OrderState.FILLED  # the re-check did not move the lifecycle


def test_stale_decision_rejected_on_recheck_is_refused_for_good(
    wb: Workbench, clock: FixedClock
) -> None:
    """A fresh re-run saying REJECT (the same order was just sent) refuses the submit, sends
    nothing and is recorded as the proposal's final verdict: retrying is refused too."""
    first, first_token = approved(wb)
    twin, twin_token = approved(wb)  # the same intent: both approved, only one may go
    wb.submit(first, first_token)
    clock.advance(timedelta(seconds=wb.policy.freshness.max_quote_age_seconds + 1))
    with pytest.raises(ApprovalError, match=r"on a fresh quote.*rejects it for good"):
        wb.submit(twin, twin_token)
    final = wb.log.events(proposal_id=twin, types=(EventType.RISK_GATE_EVALUATED,))[-1]
    assert (final.payload["decision"], final.payload["transition"]) == ("REJECT", True)
    with pytest.raises(ApprovalError, match="RISK_REJECTED"):
        wb.submit(twin, twin_token)
    assert parent_orders(wb) == [first]
    assert wb.state(twin) is OrderState.RISK_REJECTED


def test_a_policy_change_after_approval_invalidates_the_token(
    wb: Workbench, home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """Reopened under an edited policy, the gate is re-run and the old token no longer opens."""
    pid, token = approved(wb)
    wb.close()
    edited = tmp_path / "policies"
    edited.mkdir()
    for f in POLICIES.glob("*.yaml"):
        (edited / f.name).write_text(f.read_text())
    policy = edited / "risk_policy.yaml"
    policy.write_text(policy.read_text().replace("max_positions: 30", "max_positions: 29"))
    reopened = open_wb(home, clock, policies=edited)
    try:
        with pytest.raises(ApprovalError, match="policy changed"):
            reopened.submit(pid, token)
        assert parent_orders(reopened) == []
    finally:
        reopened.close()


# -- sizes at the door -----------------------------------------------------------------------


def test_half_an_etf_share_is_refused_before_anything_is_recorded(wb: Workbench) -> None:
    """10.5 SPY (whole shares by default) is refused by propose and by the cycle, naming it."""
    half = intent(wb, "SPY", 10).model_copy(update={"quantity": D("10.5")})
    before = wb.log.count()
    with pytest.raises(ProposalError, match=r"SPY: quantity 10\.5 is not in whole units"):
        wb.propose(half, actor="test")
    with pytest.raises(ProposalError, match="SPY"):
        wb.run_cycle([intent(wb, "QQQ", 3), half], actor="test", correlation_id=DAY)
    assert wb.log.count() == before and parent_orders(wb) == []


def test_policy_allows_fractions_only_for_listed_symbols_in_their_steps(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """With SPY listed at 0.001, 10.5 SPY is proposed; 10.0005 SPY and 0.5 QQQ are refused."""
    policies = policies_with(
        tmp_path / "policies", ("fractional_quantities: {}", "fractional_quantities: {SPY: 0.001}")
    )
    with open_wb(home, clock, policies=policies) as wb:
        spy = intent(wb, "SPY", 10)
        assert wb.propose(spy.model_copy(update={"quantity": D("10.5")}), actor="test")
        with pytest.raises(ProposalError, match=r"steps of 0\.001"):
            wb.propose(spy.model_copy(update={"quantity": D("10.0005")}), actor="test")
        with pytest.raises(ProposalError, match="QQQ"):
            wb.propose(intent(wb, "QQQ", 1).model_copy(update={"quantity": D("0.5")}), actor="t")


# -- cycles, cancels, views ------------------------------------------------------------------


def test_run_cycle_twice_with_one_correlation_id_proposes_once(
    wb: Workbench, home: Path, clock: FixedClock
) -> None:
    """The same day's cycle run again (even after a restart) adds no proposals."""
    intents = [intent(wb, "SPY", 10), intent(wb, "QQQ", 5)]
    first = wb.run_cycle(intents, actor="daily", correlation_id=DAY)
    assert len(first) == 2
    assert wb.run_cycle(intents, actor="daily", correlation_id=DAY) == []
    wb.close()
    again = open_wb(home, clock, counter_ids(start=100))
    try:
        assert again.run_cycle(intents, actor="daily", correlation_id=DAY) == []
        assert len(again.proposals()) == 2
        assert len(again.run_cycle(intents[:1], actor="daily", correlation_id="daily:next")) == 1
    finally:
        again.close()


def test_cancel_is_allowed_while_halted(wb: Workbench) -> None:
    """HALTED still lets a person cancel a working order and withdraw an unsent proposal."""
    quote = wb.market_snapshot("SPY", record=False)
    assert quote.bid is not None
    resting = intent(wb).model_copy(
        update={"limit_price": (quote.bid * D("0.98")).quantize(D("0.01"))}
    )
    outcome = wb.run(resting, actor="test")
    grant = wb.approve(outcome.proposal_id, CREDENTIAL)
    assert wb.submit(outcome.proposal_id, grant.token) is OrderState.CONFIRMED  # resting
    pending, _ = approved(wb, "QQQ", 5)
    wb.halt("stop everything", by="ops")
    assert wb.cancel(outcome.proposal_id, actor="ops") is OrderState.CANCELLED
    assert wb.cancel(pending, actor="ops") is OrderState.WITHDRAWN
    assert wb.broker.open_orders() == ()
    assert parent_orders(wb) == [outcome.proposal_id]


def test_proposals_frame_shows_each_proposal_its_decision_and_state(wb: Workbench) -> None:
    """proposals(): one row per proposal with intent, notional, decision, violations and state."""
    sent, token = approved(wb, "SPY", 10)
    wb.submit(sent, token)
    rejected = wb.run(intent(wb, "QQQ", 5, stop=False), actor="quant", correlation_id="c1")
    frame = wb.proposals()
    assert list(frame["proposal_id"]) == [sent, rejected.proposal_id]
    row = frame.set_index("proposal_id").loc[sent]
    assert (row["symbol"], row["side"], row["quantity"], row["order_type"]) == (
        "SPY",
        "BUY",
        D(10),
        "LMT",
    )
    assert row["state"] == "FILLED" and row["decision"] == "APPROVE" and row["source"] == "rule"
    assert isinstance(row["notional"], Decimal) and row["notional"] > 0
    assert row["stop"] is not None and row["stop"] < row["limit_price"]
    bad = frame.set_index("proposal_id").loc[rejected.proposal_id]
    assert bad["state"] == "RISK_REJECTED" and bad["decision"] == "REJECT"
    assert "R16_PROTECTIVE_STOP (BLOCKER)" in bad["violations"]
    assert bad["correlation_id"] == "c1"
    only = wb.proposals(states=[OrderState.RISK_REJECTED])
    assert list(only["proposal_id"]) == [rejected.proposal_id]
    assert wb.status()["proposals_by_state"] == {"FILLED": 1, "RISK_REJECTED": 1}


def test_reconcile_with_nothing_stuck_reports_nothing_but_records_the_run(wb: Workbench) -> None:
    """A clean home reconciles to an empty list, and the run itself is audited."""
    pid, token = approved(wb)
    wb.submit(pid, token)
    assert wb.reconcile() == []
    (run,) = wb.log.events(types=(EventType.RECONCILIATION_RUN,))
    assert run.payload["submitted_without_broker_order"] == []


def test_expired_token_sends_nothing(wb: Workbench, clock: FixedClock) -> None:
    """At the token's expiry (to the microsecond) submit is refused and nothing is sent."""
    pid, token = approved(wb)
    grant = wb.log.events(proposal_id=pid, types=(EventType.APPROVAL_GRANTED,))[0]
    clock.set(datetime.fromisoformat(grant.payload["expires_at"]))
    with pytest.raises(ApprovalError, match="expired"):
        wb.submit(pid, token)
    assert parent_orders(wb) == [] and wb.state(pid) is OrderState.APPROVAL_GRANTED


def test_facade_opened_on_one_thread_works_from_a_callback_thread(wb: Workbench) -> None:
    """A what-if and the proposals view run on a widget callback's thread (ipykernel 7 runs
    them off the kernel's thread) without SQLite's same-thread error, and see the same log."""
    import threading

    pid = wb.run(intent(wb, "SPY"), actor="test").proposal_id
    found: dict[str, object] = {}

    def callback() -> None:
        try:
            found["what_if"] = wb.what_if([intent(wb, "QQQ")])[0].decision
            found["ids"] = list(wb.proposals()["proposal_id"])
        except Exception as exc:  # reported by the assertion below
            found["error"] = exc

    worker = threading.Thread(target=callback)
    worker.start()
    worker.join(timeout=60)
    assert "error" not in found, found.get("error")
    assert found["ids"] == [pid] and found["what_if"] is not None


# -- authority -------------------------------------------------------------------------------


def test_someone_never_enrolled_cannot_approve_reject_or_resume(wb: Workbench) -> None:
    """mallory, who enrolled herself nowhere, is refused at every authority-raising call."""
    mallory = Credential("mallory", "mallory's passphrase")
    outcome = wb.run(intent(wb), actor="quant")
    wb.halt("drill", by="ops")
    for call in (
        lambda: wb.approve(outcome.proposal_id, mallory),
        lambda: wb.reject(outcome.proposal_id, mallory, "no"),
        lambda: wb.resume("let me", mallory),
    ):
        with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
            call()
    assert wb.state(outcome.proposal_id) is OrderState.APPROVAL_REQUESTED
    assert wb.trading_state() is TradingState.HALTED and parent_orders(wb) == []


def test_a_proposer_only_handle_reads_and_proposes_but_holds_no_authority(
    home: Path, clock: FixedClock
) -> None:
    """The read-and-propose handle (the MCP server's) never reads the approval key, the
    approvers or the spent tokens; it proposes, and every authority-raising call refuses."""
    with open_wb(home, clock) as full:
        add_approver(full)
        pid, token = approved(full)
    (home / "approval.key").chmod(0o000)  # a handle that opened it would fail on it

    def deny_secrets(action: int, table: str | None, *_: object) -> int:
        return sqlite3.SQLITE_DENY if table in ("approvers", "token_uses") else sqlite3.SQLITE_OK

    wb = Workbench.open(
        home, "paper", policy_dir=POLICIES, clock=clock, ids=counter_ids("m"), proposer_only=True
    )
    try:
        wb.log.conn.set_authorizer(deny_secrets)
        with pytest.raises(sqlite3.DatabaseError, match="prohibited"):
            wb.log.conn.execute("SELECT name FROM approvers")  # the guard is real
        outcome = wb.run(intent(wb, "QQQ", 3), actor="mcp")
        assert outcome.state is OrderState.APPROVAL_REQUESTED
        assert wb.authority is None and wb.approvals is None
        assert wb.status()["trading_state_verified"] is False
        for call in (
            lambda: wb.approve(outcome.proposal_id, CREDENTIAL),
            lambda: wb.submit(pid, token),
            lambda: wb.resume("x", CREDENTIAL),
        ):
            with pytest.raises(ApprovalError, match="read-and-propose only"):
                call()
        assert parent_orders(wb) == []
    finally:
        wb.close()
        (home / "approval.key").chmod(0o600)
