"""The order lifecycle: a proposal's state is derived from its events (event sourcing).

A table says which transitions are legal; :func:`advance` checks it inside the caller's audit
transaction and appends the event, or raises :class:`IllegalTransitionError` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from workbench.audit import AuditLog, Event, EventType, Transaction
from workbench.errors import IllegalTransitionError, UnknownProposalError


class OrderState(StrEnum):
    PROPOSED = "PROPOSED"
    SIMULATED = "SIMULATED"
    RISK_APPROVED = "RISK_APPROVED"
    RISK_REJECTED = "RISK_REJECTED"
    RISK_REVIEW = "RISK_REVIEW"
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    APPROVAL_GRANTED = "APPROVAL_GRANTED"
    APPROVAL_DENIED = "APPROVAL_DENIED"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    SUBMITTED = "SUBMITTED"
    PENDING_CONFIRMATION = "PENDING_CONFIRMATION"
    CONFIRMED = "CONFIRMED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    WITHDRAWN = "WITHDRAWN"


S = OrderState

TERMINAL_STATES = frozenset(
    {
        S.RISK_REJECTED,
        S.APPROVAL_DENIED,
        S.APPROVAL_EXPIRED,
        S.FILLED,
        S.CANCELLED,
        S.REJECTED,
        S.WITHDRAWN,
    }
)
# States in which the broker may hold a working order for the proposal.
WORKING_STATES = frozenset({S.SUBMITTED, S.PENDING_CONFIRMATION, S.CONFIRMED, S.PARTIALLY_FILLED})
# States in which a person may still withdraw the proposal before anything is sent.
_WITHDRAWABLE = (
    S.PROPOSED,
    S.SIMULATED,
    S.RISK_APPROVED,
    S.RISK_REVIEW,
    S.APPROVAL_REQUESTED,
    S.APPROVAL_GRANTED,
)

TRANSITIONS: Mapping[OrderState | None, frozenset[OrderState]] = {
    None: frozenset({S.PROPOSED}),
    S.PROPOSED: frozenset({S.SIMULATED, S.RISK_REJECTED, S.WITHDRAWN}),
    S.SIMULATED: frozenset({S.RISK_APPROVED, S.RISK_REJECTED, S.RISK_REVIEW, S.WITHDRAWN}),
    S.RISK_APPROVED: frozenset({S.APPROVAL_REQUESTED, S.WITHDRAWN}),
    S.RISK_REVIEW: frozenset({S.APPROVAL_REQUESTED, S.WITHDRAWN}),
    S.APPROVAL_REQUESTED: frozenset(
        {S.APPROVAL_GRANTED, S.APPROVAL_DENIED, S.APPROVAL_EXPIRED, S.WITHDRAWN}
    ),
    S.APPROVAL_GRANTED: frozenset({S.SUBMITTED, S.APPROVAL_EXPIRED, S.WITHDRAWN}),
    S.SUBMITTED: frozenset(
        {S.PENDING_CONFIRMATION, S.CONFIRMED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}
    ),
    S.PENDING_CONFIRMATION: frozenset(
        {S.CONFIRMED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}
    ),
    S.CONFIRMED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    **{state: frozenset() for state in TERMINAL_STATES},
}

_EVENT_STATE: Mapping[str, OrderState] = {
    EventType.ORDER_PROPOSED: S.PROPOSED,
    EventType.ORDER_SIMULATED: S.SIMULATED,
    EventType.APPROVAL_REQUESTED: S.APPROVAL_REQUESTED,
    EventType.APPROVAL_GRANTED: S.APPROVAL_GRANTED,
    EventType.APPROVAL_DENIED: S.APPROVAL_DENIED,
    EventType.APPROVAL_EXPIRED: S.APPROVAL_EXPIRED,
    EventType.ORDER_SUBMITTED: S.SUBMITTED,
    EventType.ORDER_PENDING_CONFIRMATION: S.PENDING_CONFIRMATION,
    EventType.ORDER_CONFIRMED: S.CONFIRMED,
    EventType.ORDER_PARTIALLY_FILLED: S.PARTIALLY_FILLED,
    EventType.ORDER_FILLED: S.FILLED,
    EventType.ORDER_CANCELLED: S.CANCELLED,
    EventType.ORDER_REJECTED: S.REJECTED,
    EventType.ORDER_WITHDRAWN: S.WITHDRAWN,
}
# Event types (besides RiskGateEvaluated) that move a proposal's state.
STATE_EVENT_TYPES: tuple[str, ...] = tuple(_EVENT_STATE)

_DECISION_STATE: Mapping[str, OrderState] = {
    "APPROVE": S.RISK_APPROVED,
    "REJECT": S.RISK_REJECTED,
    "REVIEW": S.RISK_REVIEW,
}


def state_after(type_: str, payload: Mapping[str, Any]) -> OrderState | None:
    """The lifecycle state an event moves its proposal to; None for events that do not.

    A ``RiskGateEvaluated`` event moves the state only when it carries ``transition: true``
    (a re-check at submit time records the decision without moving the state).
    """
    if type_ == EventType.RISK_GATE_EVALUATED:
        if not payload.get("transition", True):
            return None
        return _DECISION_STATE[str(payload["decision"])]
    return _EVENT_STATE.get(type_)


def derive_state(events: Iterable[Event]) -> OrderState | None:
    """Fold a proposal's events (oldest first) into its current state."""
    state: OrderState | None = None
    for event in events:
        nxt = state_after(event.type, event.payload)
        if nxt is not None:
            state = nxt
    return state


def current_state(log: AuditLog, proposal_id: str) -> OrderState:
    """The derived state of an existing proposal; raises if there is none."""
    state = derive_state(log.events(proposal_id=proposal_id))
    if state is None:
        raise UnknownProposalError(proposal_id)
    return state


def check_transition(proposal_id: str, current: OrderState | None, target: OrderState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            proposal_id, None if current is None else current.value, target.value
        )


def advance(
    tx: Transaction,
    proposal_id: str,
    type_: EventType,
    payload: Mapping[str, Any] | BaseModel | None = None,
    *,
    actor: str,
    correlation_id: str | None = None,
) -> Event:
    """Append a state-changing event for ``proposal_id`` if the table allows it."""
    plain: Mapping[str, Any] = (
        payload.model_dump(mode="json") if isinstance(payload, BaseModel) else (payload or {})
    )
    target = state_after(type_.value, plain)
    if target is None:
        raise IllegalTransitionError(proposal_id, None, f"{type_.value} (no lifecycle state)")
    current = derive_state(tx.log.events(proposal_id=proposal_id))
    check_transition(proposal_id, current, target)
    return tx.append(
        type_, payload, actor=actor, proposal_id=proposal_id, correlation_id=correlation_id
    )
