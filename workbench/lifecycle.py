"""The transition tables, and the one write path for events that carry authority or state.

A proposal's state is derived from its events (event sourcing). :data:`TRANSITIONS` says which
order transitions are legal; :func:`advance` checks it inside the caller's audit transaction and
appends the event, or raises :class:`IllegalTransitionError` and writes nothing. The trading state
(:func:`change_trading_state`), approver enrolment (:func:`record_enrolment`), a submitted order's
broker updates (:func:`record_broker_update`) and the NAV snapshots the circuit breaker reads
(:func:`record_snapshot`) have their own tables here. ``AuditLog.append`` refuses every one of
these event types (``events.GUARDED``): this module is the only caller of the log's writer for
them. A table checks what may follow what; who may do it (a credential, a key) is checked by the
service that calls it, and again by whoever relies on the event (brokers verify the whole chain).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel

from workbench import events
from workbench.audit import AuditLog, Event, EventType, Transaction
from workbench.errors import IllegalTransitionError, UnknownProposalError
from workbench.events import (
    ApproverAdded,
    ApproverRemoved,
    BrokerUpdate,
    KillSwitchActivated,
    OrderResolved,
    Resolution,
    RiskGateEvaluated,
    WritePath,
)
from workbench.models import Decision, Frozen, PortfolioSnapshot, TradingState


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
    UNKNOWN = "UNKNOWN"  # the token was spent, no broker acknowledged it: sent or not, unknown
    NOT_SENT = "NOT_SENT"  # an UNKNOWN that an approver found the broker never received


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
        S.NOT_SENT,
    }
)
# States in which the broker may hold a working order for the proposal.
WORKING_STATES = frozenset({S.SUBMITTED, S.PENDING_CONFIRMATION, S.CONFIRMED, S.PARTIALLY_FILLED})
# States reached only after a token was spent (the broker's own updates may follow).
SENT_STATES = WORKING_STATES | {S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}
# What may become of an order whose outcome is unknown: what its broker reports after all (a
# reconnect that finds it), or an approver's resolution (NOT_SENT, or CONFIRMED: the broker holds
# it). The same for an orphan of a crash (reconcile) and an order a reconnect lost (IBKR).
_AFTER_UNKNOWN = frozenset({S.NOT_SENT, S.CONFIRMED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED,
                            S.REJECTED})  # fmt: skip
# States in which a submit-time re-check of the gate may be recorded (it moves no state).
RECHECKABLE = frozenset({S.RISK_APPROVED, S.RISK_REVIEW, S.APPROVAL_REQUESTED, S.APPROVAL_GRANTED})

TRANSITIONS: Mapping[OrderState | None, frozenset[OrderState]] = {
    None: frozenset({S.PROPOSED}),
    S.PROPOSED: frozenset({S.SIMULATED, S.RISK_REJECTED, S.WITHDRAWN}),
    S.SIMULATED: frozenset({S.RISK_APPROVED, S.RISK_REJECTED, S.RISK_REVIEW, S.WITHDRAWN}),
    S.RISK_APPROVED: frozenset({S.APPROVAL_REQUESTED, S.WITHDRAWN}),
    S.RISK_REVIEW: frozenset({S.APPROVAL_REQUESTED, S.WITHDRAWN}),
    S.APPROVAL_REQUESTED: frozenset(
        {S.APPROVAL_GRANTED, S.APPROVAL_DENIED, S.APPROVAL_EXPIRED, S.WITHDRAWN}
    ),
    # RISK_REJECTED: the gate, judging it again at submit, refused it (final).
    S.APPROVAL_GRANTED: frozenset({S.SUBMITTED, S.APPROVAL_EXPIRED, S.WITHDRAWN, S.RISK_REJECTED}),
    S.SUBMITTED: frozenset(
        {
            S.PENDING_CONFIRMATION,
            S.CONFIRMED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.CANCELLED,
            S.REJECTED,
            S.UNKNOWN,
        }
    ),
    S.PENDING_CONFIRMATION: frozenset(
        {S.CONFIRMED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}
    ),
    S.CONFIRMED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.UNKNOWN}),
    S.UNKNOWN: _AFTER_UNKNOWN,
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
    EventType.ORDER_OUTCOME_UNKNOWN: S.UNKNOWN,
}
# Event types (besides RiskGateEvaluated) that move a proposal's state.
STATE_EVENT_TYPES: tuple[str, ...] = (*_EVENT_STATE, EventType.ORDER_RESOLVED)
# Event types whose payload says which state they move to.
_READ_PAYLOAD = (EventType.RISK_GATE_EVALUATED, EventType.ORDER_RESOLVED)

_DECISION_STATE: Mapping[Decision, OrderState] = {
    Decision.APPROVE: S.RISK_APPROVED,
    Decision.REJECT: S.RISK_REJECTED,
    Decision.REVIEW: S.RISK_REVIEW,
}


def state_after(type_: str, payload: Frozen | None) -> OrderState | None:
    """The lifecycle state an event moves its proposal to; None for events that do not.

    A ``RiskGateEvaluated`` moves the state only when its ``transition`` is true (a re-check at
    submit time records the decision without moving the state).
    """
    if type_ == EventType.RISK_GATE_EVALUATED:
        if not isinstance(payload, RiskGateEvaluated):
            raise TypeError("a RiskGateEvaluated event needs its typed payload")
        return _DECISION_STATE[payload.decision] if payload.transition else None
    if type_ == EventType.ORDER_RESOLVED:
        if not isinstance(payload, OrderResolved):
            raise TypeError("an OrderResolved event needs its typed payload")
        return S.NOT_SENT if payload.outcome is Resolution.NOT_SENT else S.CONFIRMED
    return _EVENT_STATE.get(type_)


def event_state(event: Event) -> OrderState | None:
    """:func:`state_after` of a stored event (only a gate verdict's and a resolution's payload
    are read)."""
    if event.type in _READ_PAYLOAD:
        return state_after(event.type, event.data)
    return _EVENT_STATE.get(event.type)


def derive_state(found: Iterable[Event]) -> OrderState | None:
    """Fold a proposal's events (oldest first) into its current state."""
    state: OrderState | None = None
    for event in found:
        nxt = event_state(event)
        if nxt is not None:
            state = nxt
    return state


def illegal_step(found: Iterable[Event]) -> str | None:
    """The first of a proposal's events (oldest first) that the table does not allow, said in
    words; None when every state change follows the table. Events written through
    :func:`advance` always do: one that does not was written behind the workbench's back."""
    state: OrderState | None = None
    for event in found:
        target = event_state(event)
        if target is None:
            continue
        if target not in TRANSITIONS[state]:
            was = "nothing" if state is None else state.value
            return f"event {event.seq} moves it from {was} to {target.value}"
        state = target
    return None


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


def _order_state(tx: Transaction, proposal_id: str) -> OrderState | None:
    """The proposal's state as of this transaction (read once, then kept in ``tx.derived``)."""
    key = ("order_state", proposal_id)
    if key not in tx.derived:
        tx.derived[key] = derive_state(tx.log.events(proposal_id=proposal_id))
    state = tx.derived[key]
    assert state is None or isinstance(state, OrderState)
    return state


def _write(
    tx: Transaction,
    path: WritePath,
    type_: EventType,
    payload: Frozen,
    *,
    actor: str,
    proposal_id: str | None = None,
    correlation_id: str | None = None,
) -> Event:
    if events.GUARDED.get(type_) is not path:
        raise IllegalTransitionError(proposal_id or "-", None, f"{type_.value} via {path.name}")
    return tx._chain(type_, payload, actor, proposal_id, correlation_id)


def advance(
    tx: Transaction,
    proposal_id: str,
    type_: EventType,
    payload: Mapping[str, object] | BaseModel | None = None,
    *,
    actor: str,
    correlation_id: str | None = None,
) -> Event:
    """Append a state-changing event for ``proposal_id`` if the table allows it.

    A ``RiskGateEvaluated`` re-check (``transition`` false) moves nothing and is allowed while
    the proposal awaits or holds an approval.
    """
    data = events.coerce(type_, payload)
    current = _order_state(tx, proposal_id)
    target = state_after(type_.value, data)
    if target is None:
        if type_ is not EventType.RISK_GATE_EVALUATED or current not in RECHECKABLE:
            now = None if current is None else current.value
            raise IllegalTransitionError(proposal_id, now, f"{type_.value} (no state change)")
    else:
        check_transition(proposal_id, current, target)
    event = _write(
        tx, WritePath.ORDER, type_, data, actor=actor, proposal_id=proposal_id,
        correlation_id=correlation_id,
    )  # fmt: skip
    if target is not None:
        tx.derived[("order_state", proposal_id)] = target
    return event


def can_advance(tx: Transaction, proposal_id: str, type_: EventType) -> bool:
    """Whether the order table lets ``type_`` (an event type that moves the state by its type
    alone, e.g. a broker's OrderFilled) follow the proposal's state as of ``tx``."""
    target = _EVENT_STATE.get(type_)
    return target is not None and target in TRANSITIONS[_order_state(tx, proposal_id)]


def record_broker_update(
    tx: Transaction, proposal_id: str, update: BrokerUpdate, *, actor: str
) -> Event:
    """Record a ``BrokerOrderUpdated`` (a bracket child, a stop trigger) of a proposal whose
    token was spent; it moves no lifecycle state."""
    state = _order_state(tx, proposal_id)
    if state not in SENT_STATES:
        now = None if state is None else state.value
        raise IllegalTransitionError(proposal_id, now, "BrokerOrderUpdated (nothing was sent)")
    return _write(
        tx, WritePath.BROKER, EventType.BROKER_ORDER_UPDATED, update, actor=actor,
        proposal_id=proposal_id,
    )  # fmt: skip


def record_snapshot(tx: Transaction, snapshot: PortfolioSnapshot, *, actor: str) -> Event:
    """Record an account snapshot: the NAV the circuit breaker and the loss rules read."""
    return _write(tx, WritePath.NAV, EventType.PORTFOLIO_SNAPSHOT_TAKEN, snapshot, actor=actor)


# -- the trading state ---------------------------------------------------------------------------

T = TradingState
TRADING_STATE_EVENTS = (
    EventType.KILL_SWITCH_ACTIVATED,
    EventType.KILL_SWITCH_RELEASED,
    EventType.CIRCUIT_BREAKER_TRIPPED,
)
# Which trading state may follow which. Only a release (KillSwitchReleased, made by an approver
# whose credential was verified, and MAC'd with the approval key) leaves HALTED.
TRADING_TRANSITIONS: Mapping[TradingState, frozenset[TradingState]] = {
    T.ACTIVE: frozenset({T.ACTIVE, T.REDUCING, T.HALTED}),
    T.REDUCING: frozenset({T.ACTIVE, T.REDUCING, T.HALTED}),
    T.HALTED: frozenset({T.HALTED, T.ACTIVE}),
}


def trading_state_target(type_: str, payload: Frozen) -> TradingState:
    """The trading state a state event asks for (its payload model was validated)."""
    if type_ == EventType.KILL_SWITCH_ACTIVATED:
        assert isinstance(payload, KillSwitchActivated)
        return payload.state
    if type_ == EventType.CIRCUIT_BREAKER_TRIPPED:
        return T.HALTED
    if type_ == EventType.KILL_SWITCH_RELEASED:
        return T.ACTIVE
    raise TypeError(f"{type_} is not a trading-state event")


def recorded_trading_state(log: AuditLog) -> TradingState:
    """The trading state as recorded, releases unverified (the table's view, not a proof)."""
    state = T.ACTIVE
    for event in log.events(types=TRADING_STATE_EVENTS):
        target = trading_state_target(event.type, event.data)
        if target in TRADING_TRANSITIONS[state]:
            state = target
    return state


def change_trading_state(
    tx: Transaction, type_: EventType, payload: Frozen, *, actor: str
) -> Event:
    """Record a trading-state event if the table allows it from the recorded state."""
    data = events.coerce(type_, payload)
    current = recorded_trading_state(tx.log)
    target = trading_state_target(type_.value, data)
    if target not in TRADING_TRANSITIONS[current]:
        raise IllegalTransitionError("trading state", current.value, target.value)
    return _write(tx, WritePath.TRADING_STATE, type_, data, actor=actor)


# -- approver enrolment --------------------------------------------------------------------------


def enrolled(log: AuditLog) -> dict[str, ApproverAdded]:
    """Approvers as the enrolment events have them: name → their latest ApproverAdded."""
    current: dict[str, ApproverAdded] = {}
    for event in log.events(types=(EventType.APPROVER_ADDED, EventType.APPROVER_REMOVED)):
        data = event.data
        if isinstance(data, ApproverAdded):
            current[data.name] = data
        elif isinstance(data, ApproverRemoved):
            current.pop(data.name, None)
    return current


def record_enrolment(
    tx: Transaction, payload: ApproverAdded | ApproverRemoved, *, actor: str
) -> Event:
    """Record an enrolment, replacement or removal if the enrolment table allows it.

    Bootstrap only on a home that never had an approver; a new name is enrolled, or an existing
    one replaced or removed, only with consent from names already enrolled; the last approver
    is never removed.
    """
    current = enrolled(tx.log)
    problem = _enrolment_problem(current, payload, ever=_ever_enrolled(tx.log))
    if problem is not None:
        raise IllegalTransitionError(f"approver {payload.name}", None, problem)
    added = isinstance(payload, ApproverAdded)
    type_ = EventType.APPROVER_ADDED if added else EventType.APPROVER_REMOVED
    return _write(tx, WritePath.ENROLMENT, type_, payload, actor=actor)


def _ever_enrolled(log: AuditLog) -> bool:
    return bool(log.events(types=(EventType.APPROVER_ADDED,), limit=1))


def _enrolment_problem(
    current: Mapping[str, ApproverAdded], payload: ApproverAdded | ApproverRemoved, *, ever: bool
) -> str | None:
    consenting = [name for name in payload.by if name != payload.name]
    if any(name not in current for name in payload.by):
        return "consent from someone who is not an enrolled approver"
    if isinstance(payload, ApproverRemoved):
        if payload.name not in current:
            return "removal of someone who is not enrolled"
        return "removal of the last approver" if len(current) == 1 else None
    if payload.bootstrap:
        return "bootstrap of a home that already had approvers" if ever else None
    if payload.replaced:
        if payload.name not in current:
            return "replacement of someone who is not enrolled"
        if payload.by != (payload.name,) and len(set(consenting)) < 2:
            return "replacement without the old passphrase or two other approvers"
        return None
    if payload.name in current:
        return "enrolment of someone already enrolled"
    return None if consenting else "enrolment without an enrolled approver's consent"
