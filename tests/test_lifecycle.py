"""The order lifecycle: state derived from events, a transition table, illegal moves refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.audit import AuditLog, EventType
from workbench.errors import IllegalTransitionError, UnknownProposalError
from workbench.lifecycle import (
    TERMINAL_STATES,
    TRANSITIONS,
    OrderState,
    advance,
    current_state,
    state_after,
)

HAPPY_PATH = [
    (EventType.ORDER_PROPOSED, {}, OrderState.PROPOSED),
    (EventType.ORDER_SIMULATED, {}, OrderState.SIMULATED),
    (EventType.RISK_GATE_EVALUATED, {"decision": "APPROVE"}, OrderState.RISK_APPROVED),
    (EventType.APPROVAL_REQUESTED, {}, OrderState.APPROVAL_REQUESTED),
    (EventType.APPROVAL_GRANTED, {}, OrderState.APPROVAL_GRANTED),
    (EventType.ORDER_SUBMITTED, {}, OrderState.SUBMITTED),
    (EventType.ORDER_CONFIRMED, {}, OrderState.CONFIRMED),
    (EventType.ORDER_PARTIALLY_FILLED, {}, OrderState.PARTIALLY_FILLED),
    (EventType.ORDER_FILLED, {}, OrderState.FILLED),
]


def test_happy_path_state_is_derived_from_events(log: AuditLog) -> None:
    """Walking propose → fill moves the derived state through each lifecycle state."""
    for type_, payload, expected in HAPPY_PATH:
        with log.transaction() as tx:
            advance(tx, "p1", type_, payload, actor="test")
        assert current_state(log, "p1") is expected


def test_illegal_transition_raises_and_writes_nothing(log: AuditLog) -> None:
    """Submitting a proposal that was never approved raises and leaves the log unchanged."""
    with log.transaction() as tx:
        advance(tx, "p1", EventType.ORDER_PROPOSED, {}, actor="test")
    head = log.head()
    with pytest.raises(IllegalTransitionError) as info, log.transaction() as tx:
        advance(tx, "p1", EventType.ORDER_SUBMITTED, {}, actor="test")
    assert info.value.current == "PROPOSED" and info.value.target == "SUBMITTED"
    assert log.head() == head
    assert current_state(log, "p1") is OrderState.PROPOSED


def test_rejected_by_risk_is_terminal(log: AuditLog) -> None:
    """A RISK_REJECTED proposal can never be asked for approval."""
    for type_, payload in [
        (EventType.ORDER_PROPOSED, {}),
        (EventType.ORDER_SIMULATED, {}),
        (EventType.RISK_GATE_EVALUATED, {"decision": "REJECT"}),
    ]:
        with log.transaction() as tx:
            advance(tx, "p1", type_, payload, actor="test")
    with pytest.raises(IllegalTransitionError), log.transaction() as tx:
        advance(tx, "p1", EventType.APPROVAL_REQUESTED, {}, actor="test")


def test_recheck_without_transition_does_not_move_state() -> None:
    """A RiskGateEvaluated marked transition=false records a re-check without a state change."""
    assert state_after("RiskGateEvaluated", {"decision": "REJECT", "transition": False}) is None
    assert state_after("RiskGateEvaluated", {"decision": "REVIEW"}) is OrderState.RISK_REVIEW
    assert state_after("ToolCalled", {}) is None


def test_unknown_proposal_has_no_state(log: AuditLog) -> None:
    """Asking for the state of a proposal that does not exist raises a typed error."""
    with pytest.raises(UnknownProposalError):
        current_state(log, "nope")


def test_table_covers_every_state_and_terminals_have_no_exit() -> None:
    """Every state has a row; terminal states lead nowhere; every state is reachable."""
    assert set(OrderState) <= set(TRANSITIONS)
    assert all(not TRANSITIONS[s] for s in TERMINAL_STATES)
    reachable = set().union(*TRANSITIONS.values())
    assert reachable == set(OrderState)


EVENTS = [t for t in EventType if state_after(t.value, {"decision": "APPROVE"}) is not None]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(EVENTS), st.sampled_from(["APPROVE", "REJECT", "REVIEW"])),
        max_size=12,
    )
)
def test_random_event_sequences_follow_the_table(log: AuditLog, steps: list) -> None:
    """Any sequence of attempts either follows the table or raises without writing."""
    pid = f"p{log.head()[0]}"
    state: OrderState | None = None
    for type_, decision in steps:
        payload = {"decision": decision}
        target = state_after(type_.value, payload)
        assert target is not None
        before = log.head()
        if target in TRANSITIONS[state]:
            with log.transaction() as tx:
                advance(tx, pid, type_, payload, actor="test")
            state = target
        else:
            with pytest.raises(IllegalTransitionError), log.transaction() as tx:
                advance(tx, pid, type_, payload, actor="test")
            assert log.head() == before
        if state is not None:
            assert current_state(log, pid) is state
