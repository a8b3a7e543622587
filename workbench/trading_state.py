"""Trading state and circuit breaker on the audit log: read, change, and build the gate's History.

The state (ACTIVE | REDUCING | HALTED) exists only as audit events, folded on every read, so it
survives restarts and cannot drift from the record:

- ``KillSwitchActivated`` {state: HALTED|REDUCING, reason, by}: a person (or the breaker) tightens;
- ``KillSwitchReleased`` {state: ACTIVE, reason, by}: a named approver resumes;
- ``CircuitBreakerTripped`` {state: HALTED, reason, by, nav, peak, drawdown, limit}: written with
  a ``KillSwitchActivated`` HALTED in the same transaction as the snapshot that tripped it.

History contract: an ``OrderSubmitted`` event names its proposal, and that proposal's
``OrderProposed`` payload holds the intent under ``"intent"`` (or is the intent itself). A
submission whose intent cannot be read is an :class:`AuditError`: the gate is never handed a
history with holes in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from workbench.audit import AuditLog, Event, EventType
from workbench.canonical import utc_iso
from workbench.errors import AuditError, ConfigError, TradingHaltedError
from workbench.lifecycle import WORKING_STATES, derive_state
from workbench.models import OrderIntent, PortfolioSnapshot, TradingState
from workbench.policy import CircuitBreakerConfig, RiskPolicy
from workbench.risk.calendar import trading_day
from workbench.risk.history import History, NavPoint, Submission, WorkingOrder
from workbench.risk.state import BreakerCheck, StateChange, fold, judge_breaker

BREAKER_ACTOR = "circuit-breaker"
LAG = timedelta(hours=1)  # how far a snapshot's own time may trail the event that records it
STATE_TYPES = (
    EventType.KILL_SWITCH_ACTIVATED,
    EventType.KILL_SWITCH_RELEASED,
    EventType.CIRCUIT_BREAKER_TRIPPED,
)
_NAV_SQL = (
    "SELECT json_extract(payload, '$.net_liquidation'), json_extract(payload, '$.timestamp')"
    " FROM events WHERE type = ? AND json_extract(payload, '$.account') = ? AND ts >= ?"
)
_OPEN_SQL = (
    "SELECT DISTINCT proposal_id FROM events WHERE type = ? AND proposal_id IS NOT NULL"
    " AND proposal_id NOT IN (SELECT proposal_id FROM events WHERE type IN (?, ?, ?)"
    " AND proposal_id IS NOT NULL)"
)


# -- reading the state ---------------------------------------------------------------------------


def read_state(log: AuditLog) -> StateChange:
    """The current trading state, folded from the state events (ACTIVE when there are none)."""
    events = log.events(types=STATE_TYPES)
    try:
        return fold((e.type, e.payload, e.ts, e.seq) for e in events)
    except (KeyError, ValueError) as exc:
        raise AuditError(f"malformed trading-state event: {exc}") from exc


current = read_state


def current_state(log: AuditLog) -> TradingState:
    """Just the current :class:`TradingState`."""
    return read_state(log).state


def _last_release(log: AuditLog) -> datetime | None:
    events = log.events(types=(EventType.KILL_SWITCH_RELEASED,), newest_first=True, limit=1)
    return _parse_time(events[0].ts) if events else None


# -- changing the state --------------------------------------------------------------------------


def _name(value: str, what: str) -> str:
    text = value.strip()
    if not text or len(text) > 200:
        raise ConfigError(f"{what} must be 1-200 characters, got {value!r}")
    return text


def _activate(log: AuditLog, state: TradingState, reason: str, by: str) -> StateChange:
    payload = {"state": state.value, "reason": _name(reason, "reason"), "by": _name(by, "by")}
    with log.transaction() as tx:
        event = tx.append(EventType.KILL_SWITCH_ACTIVATED, payload, actor=payload["by"])
    return StateChange(state, payload["reason"], payload["by"], event.ts, event.seq)


def halt(log: AuditLog, *, reason: str, by: str) -> StateChange:
    """Stop all trading (cancels still allowed) until a named approver resumes."""
    return _activate(log, TradingState.HALTED, reason, by)


def reduce(log: AuditLog, *, reason: str, by: str) -> StateChange:
    """Allow only risk-reducing orders. Refused while HALTED: resume first, that is the release."""
    with log.transaction():
        if current_state(log) is TradingState.HALTED:
            raise TradingHaltedError("HALTED", "only a named approver's resume lifts a halt")
        return _activate(log, TradingState.REDUCING, reason, by)


def resume(log: AuditLog, *, approver: str, reason: str) -> StateChange:
    """Return to ACTIVE, recorded with the approver's name and reason."""
    by = _name(approver, "approver")
    payload = {"state": "ACTIVE", "reason": _name(reason, "reason"), "by": by}
    with log.transaction() as tx:
        event = tx.append(EventType.KILL_SWITCH_RELEASED, payload, actor=payload["by"])
    return StateChange(TradingState.ACTIVE, payload["reason"], payload["by"], event.ts, event.seq)


def set_state(log: AuditLog, state: TradingState, *, reason: str, by: str) -> StateChange:
    """Move to ``state`` through :func:`halt`, :func:`reduce` or :func:`resume`."""
    if state is TradingState.HALTED:
        return halt(log, reason=reason, by=by)
    if state is TradingState.REDUCING:
        return reduce(log, reason=reason, by=by)
    return resume(log, approver=by, reason=reason)


# -- NAV and the circuit breaker -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """What recording a snapshot did: its event, the breaker's reading and the state after."""

    event: Event
    breaker: BreakerCheck | None
    tripped: bool
    state: TradingState


def nav_points(log: AuditLog, account: str, since: datetime | None = None) -> list[NavPoint]:
    """NAV points of ``account`` taken at or after ``since`` (all if None), oldest first.

    A snapshot event without a readable ``net_liquidation`` and ``timestamp`` is an AuditError.
    """
    lower = "" if since is None else utc_iso(since - LAG)
    rows = log.conn.execute(
        _NAV_SQL, (EventType.PORTFOLIO_SNAPSHOT_TAKEN.value, account, lower)
    ).fetchall()
    try:
        points = [NavPoint(_parse_time(ts), Decimal(nav)) for nav, ts in rows]
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise AuditError(f"malformed PortfolioSnapshotTaken payload: {exc}") from exc
    kept = points if since is None else [p for p in points if p.at >= since]
    return sorted(kept, key=lambda p: p.at)


def record_portfolio_snapshot(
    log: AuditLog,
    snapshot: PortfolioSnapshot,
    breaker: CircuitBreakerConfig,
    *,
    actor: str = "workbench",
) -> SnapshotRecord:
    """Record the snapshot's NAV; at or past the day's drawdown limit, trip HALTED, atomically.

    The day runs from the previous session's close on the exchange calendar (see
    ``risk.calendar.trading_day``), so a drop across a night, a weekend or a holiday counts."""
    now, nav = snapshot.timestamp, snapshot.net_liquidation
    day = trading_day(now)  # before writing: a time outside the calendar records nothing
    with log.transaction() as tx:
        event = tx.append(EventType.PORTFOLIO_SNAPSHOT_TAKEN, snapshot, actor=actor)
        points = nav_points(log, snapshot.account, day.previous_open)
        check = judge_breaker(breaker, points, nav, now, _last_release(log), day)
        state = current_state(log)
        tripped = check.trips and state is not TradingState.HALTED
        if tripped:
            _trip(log, check, snapshot.account)
            state = TradingState.HALTED
    return SnapshotRecord(event, check, tripped, state)


def _trip(log: AuditLog, check: BreakerCheck, account: str) -> None:
    reason = (
        f"drawdown {check.drawdown:.2%} of {account} since the previous session's close reached"
        f" the limit {check.limit:.2%}"
        f" (NAV {check.nav:f}, peak {check.peak:f})"
    )
    figures = {"account": account, "nav": check.nav, "peak": check.peak}
    halted = {"state": "HALTED", "reason": reason, "by": BREAKER_ACTOR}
    with log.transaction() as tx:
        tx.append(
            EventType.CIRCUIT_BREAKER_TRIPPED,
            {**halted, **figures, "drawdown": check.drawdown, "limit": check.limit},
            actor=BREAKER_ACTOR,
        )
        tx.append(EventType.KILL_SWITCH_ACTIVATED, halted, actor=BREAKER_ACTOR)


# -- the gate's history --------------------------------------------------------------------------


def build_history(log: AuditLog, *, account: str, now: datetime, policy: RiskPolicy) -> History:
    """NAV points of the trading day (from the previous session's open), the all-time NAV
    peak, recent submissions and working orders."""
    window = max(policy.flow.duplicate_window_seconds, 60)
    points = nav_points(log, account, trading_day(now).previous_open)
    peak = max((p.nav for p in nav_points(log, account) if p.at <= now), default=None)
    submitted = log.events(
        types=(EventType.ORDER_SUBMITTED,), since=now - timedelta(seconds=window + 60)
    )
    submissions = [_submission(log, e) for e in submitted]
    return History(
        nav_points=tuple(p for p in points if p.at <= now),
        nav_peak=peak,
        submissions=tuple(s for s, acct in submissions if acct == account),
        working_orders=_working_orders(log, account),
    )


def _submission(log: AuditLog, event: Event) -> tuple[Submission, str]:
    intent = _intent_of(log, event.proposal_id)
    at = _parse_time(event.ts)
    sub = Submission(at, intent.symbol, intent.side, intent.quantity, event.proposal_id)
    return sub, intent.account


def _working_orders(log: AuditLog, account: str) -> tuple[WorkingOrder, ...]:
    terminal = (EventType.ORDER_FILLED, EventType.ORDER_CANCELLED, EventType.ORDER_REJECTED)
    params = (EventType.ORDER_SUBMITTED.value, *(t.value for t in terminal))
    working: list[WorkingOrder] = []
    for (proposal_id,) in log.conn.execute(_OPEN_SQL, params).fetchall():
        if derive_state(log.events(proposal_id=proposal_id)) not in WORKING_STATES:
            continue
        intent = _intent_of(log, proposal_id)
        if intent.account == account:
            working.append(WorkingOrder(intent.symbol, intent.side, intent.quantity, proposal_id))
    return tuple(working)


def _intent_of(log: AuditLog, proposal_id: str | None) -> OrderIntent:
    if proposal_id is None:
        raise AuditError("an OrderSubmitted event without a proposal id")
    proposed = log.events(proposal_id=proposal_id, types=(EventType.ORDER_PROPOSED,), limit=1)
    if not proposed:
        raise AuditError(f"proposal {proposal_id} was submitted but never proposed")
    payload: Mapping[str, Any] = proposed[0].payload
    try:
        return OrderIntent.model_validate(payload.get("intent", payload))
    except ValidationError as exc:
        raise AuditError(f"proposal {proposal_id}: unreadable intent: {exc}") from exc


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
