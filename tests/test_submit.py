"""Submit: a bogus token is refused before anything is recorded; under the write lock the whole
gate runs again as of now — other orders, time, the account — on the decision's quote while it is
fresh, else on a fresh one (a stale decision, one from the future); a REJECT there is final."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import TRADING_NOW
from helpers import policies_with
from wbkit import (
    CREDENTIAL,
    POLICIES,
    add_approver,
    approved,
    counter_ids,
    intent,
    open_wb,
    parent_orders,
)

from workbench.audit import EventType
from workbench.clock import FixedClock
from workbench.errors import ApprovalError, WorkbenchError
from workbench.events import RiskGateEvaluated
from workbench.lifecycle import OrderState
from workbench.models import RuleId, Side
from workbench.workbench import Workbench

TWELVE = ("SPY", "QQQ", "IWM", "DIA", "VTI", "XLK", "GLD", "XLV", "AAPL", "MSFT", "JPM", "PG")


def verdict(wb: Workbench, pid: str) -> RiskGateEvaluated:
    """The latest gate decision recorded for ``pid`` (a submit-time one included)."""
    record = wb.detail(pid)
    assert record.decision is not None
    return record.decision.data


def rule_ids(decision: RiskGateEvaluated) -> set[RuleId]:
    return {v.rule_id for v in decision.violations if v.severity == "BLOCKER"}


def assert_refused_for_good(wb: Workbench, pid: str, token: str, rule: RuleId) -> None:
    """Refused at submit by ``rule``, recorded as the proposal's final REJECT; the same token
    never sends it afterwards."""
    assert wb.state(pid) is OrderState.RISK_REJECTED
    final = verdict(wb, pid)
    assert final.decision == "REJECT" and final.transition and rule in rule_ids(final)
    with pytest.raises(ApprovalError, match="token refused"):
        wb.submit(pid, token)
    assert pid not in parent_orders(wb)


# -- other orders: duplicates and rate ---------------------------------------------------------


def test_two_identical_proposals_judged_before_either_was_sent_only_the_first_goes(
    wb: Workbench,
) -> None:
    """Both were approved while nothing was sent; at submit the second is a duplicate of the
    order just sent (R13), refused for good."""
    first, first_token = approved(wb)
    second, second_token = approved(wb)
    assert wb.submit(first, first_token) is OrderState.FILLED
    with pytest.raises(ApprovalError, match=f"R13_DUPLICATE_ORDER.*{first}"):
        wb.submit(second, second_token)
    assert parent_orders(wb) == [first]
    assert_refused_for_good(wb, second, second_token, RuleId.R13_DUPLICATE_ORDER)


def test_twelve_approved_proposals_in_a_minute_against_ten_a_minute_send_ten(
    wb: Workbench, clock: FixedClock
) -> None:
    """Twelve proposals approved before any was sent, submitted within a minute: the 11th and
    12th are refused by the rate rule (R14) at submit."""
    tokens = [approved(wb, symbol, 3) for symbol in TWELVE]
    assert wb.policy.flow.max_submits_per_minute == 10
    sent, refused = [], []
    for pid, token in tokens:
        clock.advance(timedelta(seconds=4))  # twelve submits over 48 seconds
        try:
            wb.submit(pid, token)
            sent.append(pid)
        except ApprovalError as exc:
            assert "R14_ORDER_RATE" in str(exc)
            refused.append(pid)
    assert sent == [pid for pid, _ in tokens[:10]] and parent_orders(wb) == sent
    assert refused == [pid for pid, _ in tokens[10:]]
    for pid, token in tokens[10:]:
        assert_refused_for_good(wb, pid, token, RuleId.R14_ORDER_RATE)


# -- time: the trading window, a stale decision, a decision from the future -------------------


def test_an_order_approved_before_the_close_is_refused_after_it(home: Path, tmp_path: Path) -> None:
    """Judged and approved 30 s before the close, submitted 10 s after it (the decision still
    fresh): the trading window (R11) is judged again and the order is refused."""
    before_close = FixedClock(datetime(2026, 11, 18, 20, 59, 30, tzinfo=UTC))  # 15:59:30 NY
    with open_wb(home, before_close) as wb:
        add_approver(wb)
        pid, token = approved(wb)
        before_close.advance(timedelta(seconds=40))
        with pytest.raises(ApprovalError, match="R11_TRADING_WINDOW"):
            wb.submit(pid, token)
        assert parent_orders(wb) == [] and wb.broker.orders() == ()
        assert_refused_for_good(wb, pid, token, RuleId.R11_TRADING_WINDOW)


def test_a_decision_judged_on_a_clock_in_2030_is_judged_again_whole_today(
    home: Path,
) -> None:
    """Judged and approved on a market clock in 2030, submitted today: a decision from the
    clock's future is never fresh; the whole gate runs on today's quote and refuses a limit
    and a stop priced for 2030 (R12, R16)."""
    wall = FixedClock(TRADING_NOW)
    future = FixedClock(datetime(2030, 1, 2, 15, 30, tzinfo=UTC))  # a Wednesday session
    opened = {"policy_dir": POLICIES, "log_clock": wall, "ids": counter_ids()}
    with Workbench.open(home, "paper", clock=future, create=True, **opened) as then:
        add_approver(then)
        pid = then.run(intent(then), actor="test").proposal_id
        # REVIEW there (its NAV history is stamped on today's wall clock): a person overrides.
        token = then.approve(pid, CREDENTIAL, override_reason="checked by hand").token
    opened["ids"] = counter_ids(start=100)
    with Workbench.open(home, "paper", clock=FixedClock(TRADING_NOW), **opened) as today:
        with pytest.raises(ApprovalError, match="R12_PRICE_COLLAR"):
            today.submit(pid, token)
        assert today.broker.orders() == ()
        final = verdict(today, pid)
        assert final.evaluated_at == TRADING_NOW
        assert {RuleId.R12_PRICE_COLLAR, RuleId.R16_PROTECTIVE_STOP} <= rule_ids(final)
        assert_refused_for_good(today, pid, token, RuleId.R12_PRICE_COLLAR)


def test_a_fresh_decision_judged_the_same_again_records_nothing_new(
    wb: Workbench, clock: FixedClock
) -> None:
    """Within the freshness window, when the gate finds what it found before, nothing new is
    recorded: the decision the approver saw stays the latest."""
    pid, token = approved(wb)
    seen = verdict(wb, pid)
    clock.advance(timedelta(seconds=30))
    assert wb.submit(pid, token) is OrderState.FILLED
    assert verdict(wb, pid) == seen


# -- a bogus token: refused before anything is snapshotted or recorded ------------------------


def _token_for(wb: Workbench, clock: FixedClock, kind: str) -> tuple[str, str]:
    """A proposal and a bad token of ``kind`` for it."""
    pid, token = approved(wb)
    if kind == "malformed":
        return pid, "not-a-token"
    if kind == "bad MAC":
        return pid, token[:-1] + ("0" if token[-1] != "0" else "1")
    if kind == "another proposal's":
        return pid, approved(wb, "QQQ", 5)[1]
    if kind == "already used":
        wb.submit(pid, token)
        return pid, token
    grant = wb.log.events(proposal_id=pid, types=(EventType.APPROVAL_GRANTED,))[0]
    clock.set(datetime.fromisoformat(grant.payload["expires_at"]) + timedelta(seconds=1))
    return pid, token


@pytest.mark.parametrize(
    "kind", ["malformed", "bad MAC", "another proposal's", "already used", "expired"]
)
def test_a_bogus_token_is_refused_before_anything_is_recorded(
    wb: Workbench, clock: FixedClock, kind: str
) -> None:
    """No NAV snapshot (which could trip the breaker falsely), no quote, no decision: the log
    is exactly as it was, and nothing reaches the broker."""
    pid, bad = _token_for(wb, clock, kind)
    before, orders = wb.log.head(), wb.broker.orders()
    with pytest.raises(ApprovalError, match="token refused"):
        wb.submit(pid, bad)
    assert wb.log.head() == before and wb.broker.orders() == orders


# -- two processes, two proposals, one symbol --------------------------------------------------


def _submit_when_released(
    home: str, policies: str, now: str, pid: str, token: str, start: Any, results: Any
) -> None:
    clock = FixedClock(datetime.fromisoformat(now))
    with Workbench.open(home, "paper", policy_dir=policies, clock=clock, log_clock=clock) as wb:
        start.wait()
        try:
            results.put((pid, "ok", wb.submit(pid, token).value))
        except WorkbenchError as exc:
            results.put((pid, "refused", f"{type(exc).__name__}: {exc}"))


def test_two_processes_submitting_twin_proposals_at_once_send_one_order(
    home: Path, clock: FixedClock
) -> None:
    """Two approved proposals for the same order, submitted by two processes released together:
    R13 is judged under the write lock, so exactly one order goes and the other is refused
    for good."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        twins = [approved(wb, "SPY", 7), approved(wb, "SPY", 7)]
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    now = clock.now().isoformat()
    procs = [
        ctx.Process(target=_submit_when_released,
                    args=(str(home), str(POLICIES), now, pid, token, start, results))
        for pid, token in twins
    ]  # fmt: skip
    for p in procs:
        p.start()
    outcomes = sorted((results.get(timeout=120) for _ in procs), key=lambda o: o[1])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (sent, ok, state), (other, refused, why) = outcomes
    assert (ok, state, refused) == ("ok", "FILLED", "refused"), outcomes
    assert "R13_DUPLICATE_ORDER" in why
    with open_wb(home, clock, counter_ids(start=100)) as wb:
        assert parent_orders(wb) == [sent]
        assert wb.state(other) is OrderState.RISK_REJECTED
        assert wb.log.verify().ok


# -- the gate at submit is the gate ---------------------------------------------------


def test_the_gate_at_submit_reads_the_policy_on_file(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """With max_submits_per_minute 1, the second approved order is refused at submit: it is the
    gate's own rule under the policy on file, not a copy with its own limits."""
    policies = policies_with(
        tmp_path / "p", ("max_submits_per_minute: 10", "max_submits_per_minute: 1")
    )
    with open_wb(home, clock, policies=policies) as wb:
        add_approver(wb)
        first, first_token = approved(wb, "SPY", 2)
        second, second_token = approved(wb, "QQQ", 2)
        wb.submit(first, first_token)
        with pytest.raises(ApprovalError, match="R14_ORDER_RATE"):
            wb.submit(second, second_token)
        assert parent_orders(wb) == [first]


def test_a_sell_approved_while_held_is_refused_once_another_sell_closed_the_position(
    wb: Workbench,
) -> None:
    """Two sells approved while 10 SPY were held: after the first closes the position, the
    second would open a short, and the gate judged again on the account now refuses it (R15)."""
    pid, token = approved(wb, "SPY", 10)
    wb.submit(pid, token)
    sells = [wb.run(intent(wb, "SPY", q, Side.SELL, stop=False), actor="t") for q in (10, 6)]
    tokens = [wb.approve(o.proposal_id, CREDENTIAL).token for o in sells]
    assert wb.submit(sells[0].proposal_id, tokens[0]) is OrderState.FILLED
    with pytest.raises(ApprovalError, match="R15_CASH_AND_SHORTS"):
        wb.submit(sells[1].proposal_id, tokens[1])
    assert parent_orders(wb) == [pid, sells[0].proposal_id]
    assert_refused_for_good(wb, sells[1].proposal_id, tokens[1], RuleId.R15_CASH_AND_SHORTS)


def test_a_sell_that_reduces_is_judged_like_any_other(wb: Workbench) -> None:
    """A reducing sell of a held position passes the re-judge and is sent."""
    pid, token = approved(wb, "SPY", 10)
    wb.submit(pid, token)
    outcome = wb.run(intent(wb, "SPY", 4, Side.SELL, stop=False), actor="test")
    grant = wb.approve(outcome.proposal_id, CREDENTIAL)
    assert wb.submit(outcome.proposal_id, grant.token) is OrderState.FILLED
    held = wb.broker.portfolio(wb.account).position("SPY")
    assert held is not None and held.quantity == Decimal(6)
