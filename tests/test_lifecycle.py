"""The order lifecycle: state derived from events, a transition table, illegal moves refused."""

from __future__ import annotations

import pytest
from helpers import gate, make_intent, payload_for, tool_called
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.audit import AuditLog, EventType
from workbench.errors import IllegalTransitionError, UnknownProposalError
from workbench.events import ToolCalled
from workbench.lifecycle import (
    TERMINAL_STATES,
    TRANSITIONS,
    OrderState,
    advance,
    current_state,
    state_after,
)

INTENT = make_intent()
HAPPY_PATH = [
    (EventType.ORDER_PROPOSED, OrderState.PROPOSED),
    (EventType.ORDER_SIMULATED, OrderState.SIMULATED),
    (EventType.RISK_GATE_EVALUATED, OrderState.RISK_APPROVED),
    (EventType.APPROVAL_REQUESTED, OrderState.APPROVAL_REQUESTED),
    (EventType.APPROVAL_GRANTED, OrderState.APPROVAL_GRANTED),
    (EventType.ORDER_SUBMITTED, OrderState.SUBMITTED),
    (EventType.ORDER_CONFIRMED, OrderState.CONFIRMED),
    (EventType.ORDER_PARTIALLY_FILLED, OrderState.PARTIALLY_FILLED),
    (EventType.ORDER_FILLED, OrderState.FILLED),
]


def step(log: AuditLog, pid: str, type_: EventType, decision: str = "APPROVE") -> None:
    with log.transaction() as tx:
        advance(tx, pid, type_, payload_for(type_, INTENT, decision), actor="test")


def test_happy_path_state_is_derived_from_events(log: AuditLog) -> None:
    """Walking propose → fill moves the derived state through each lifecycle state."""
    for type_, expected in HAPPY_PATH:
        step(log, "p1", type_)
        assert current_state(log, "p1") is expected


def test_illegal_transition_raises_and_writes_nothing(log: AuditLog) -> None:
    """Submitting a proposal that was never approved raises and leaves the log unchanged."""
    step(log, "p1", EventType.ORDER_PROPOSED)
    head = log.head()
    with pytest.raises(IllegalTransitionError) as info:
        step(log, "p1", EventType.ORDER_SUBMITTED)
    assert info.value.current == "PROPOSED" and info.value.target == "SUBMITTED"
    assert log.head() == head
    assert current_state(log, "p1") is OrderState.PROPOSED


def test_rejected_by_risk_is_terminal(log: AuditLog) -> None:
    """A RISK_REJECTED proposal can never be asked for approval."""
    step(log, "p1", EventType.ORDER_PROPOSED)
    step(log, "p1", EventType.ORDER_SIMULATED)
    step(log, "p1", EventType.RISK_GATE_EVALUATED, "REJECT")
    with pytest.raises(IllegalTransitionError):
        step(log, "p1", EventType.APPROVAL_REQUESTED)


def test_recheck_without_transition_does_not_move_state(log: AuditLog) -> None:
    """A RiskGateEvaluated marked transition=false records a re-check without a state change,
    and only while the proposal awaits or holds an approval."""
    recheck = gate(INTENT, "REJECT", transition=False)
    assert state_after("RiskGateEvaluated", recheck) is None
    assert state_after("RiskGateEvaluated", gate(INTENT, "REVIEW")) is OrderState.RISK_REVIEW
    tool = ToolCalled.model_validate(tool_called())
    assert state_after("ToolCalled", tool) is None
    step(log, "p1", EventType.ORDER_PROPOSED)
    with pytest.raises(IllegalTransitionError), log.transaction() as tx:
        advance(tx, "p1", EventType.RISK_GATE_EVALUATED, recheck, actor="test")
    for type_ in (EventType.ORDER_SIMULATED, EventType.RISK_GATE_EVALUATED):
        step(log, "p1", type_)
    with log.transaction() as tx:
        advance(tx, "p1", EventType.RISK_GATE_EVALUATED, recheck, actor="test")
    assert current_state(log, "p1") is OrderState.RISK_APPROVED


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


EVENTS = [
    t for t in EventType if state_after(t.value, payload_for(t, INTENT, "APPROVE")) is not None
]


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
        payload = payload_for(type_, INTENT, decision)
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
