"""Trading state and circuit breaker on the audit log: read, change, and build the gate's History.

The state (ACTIVE | REDUCING | HALTED) exists only as audit events, folded on every read, so it
survives restarts and cannot drift from the record. Each change goes through the trading-state
table in ``workbench.lifecycle`` (the generic append refuses these events):

- ``KillSwitchActivated`` {state: HALTED|REDUCING, reason, by}: anyone may tighten;
- ``KillSwitchReleased`` {state: ACTIVE, reason, by, market_at, mac}: :func:`resume`, for an
  approver whose credential the library verified; ``mac`` is the approval key's HMAC over the
  fields, the event's seq and the previous event's hash (so a release copied elsewhere never
  verifies); the breaker counts NAVs from its ``market_at`` on (a replay's day, not the wall
  clock that stamped the event);
- ``CircuitBreakerTripped`` {state: HALTED, …, nav, peak, drawdown, limit}: written with a
  ``KillSwitchActivated`` HALTED in the same transaction as the snapshot that tripped it.

Reading: :func:`read_state` with the home's approval key is the verified fold — a release whose
MAC does not verify (a row inserted behind the workbench's back) is ignored, trading stays as it
was, and the release's seq is reported in ``StateChange.refused``. Everything that authorises an
order uses it. With ``key=None`` (a read-only handle that never loads the key) it reports the
state as recorded, ``verified=False``.

History contract: an ``OrderSubmitted`` event names its proposal, whose ``OrderProposed`` holds
the intent. A submission whose intent cannot be read is an :class:`AuditError`: the gate is never
handed a history with holes in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from workbench import keys, orphans, records
from workbench.audit import AuditLog, Event, EventType
from workbench.authority import Authority, Credential
from workbench.canonical import utc_iso
from workbench.errors import (
    ApprovalError,
    AuditError,
    ConfigError,
    IllegalTransitionError,
    TradingHaltedError,
)
from workbench.events import (
    CircuitBreakerTripped,
    KillSwitchActivated,
    KillSwitchReleased,
    OrderProposed,
    OrderResolved,
    OrderSubmitted,
    Resolution,
)
from workbench.keys import ApprovalKey
from workbench.lifecycle import (
    TRADING_STATE_EVENTS,
    WORKING_STATES,
    change_trading_state,
)
from workbench.lifecycle import record_snapshot as _record_snapshot
from workbench.models import OrderIntent, PortfolioSnapshot, TradingState
from workbench.policy import CircuitBreakerConfig, RiskPolicy
from workbench.risk.calendar import trading_day
from workbench.risk.history import History, NavPoint, Submission, WorkingOrder
from workbench.risk.state import (
    BreakerCheck,
    StateChange,
    StateEvent,
    StatePayload,
    fold,
    judge_breaker,
)

BREAKER_ACTOR = "circuit-breaker"
RELEASE_DOMAIN = "release"
LAG = timedelta(hours=1)  # how far a snapshot's own time may trail the event that records it
STATE_TYPES = TRADING_STATE_EVENTS
_NAV_SQL = (
    "SELECT json_extract(payload, '$.net_liquidation'), json_extract(payload, '$.timestamp')"
    " FROM events WHERE type = ? AND json_extract(payload, '$.account') = ? AND ts >= ?"
)


# -- reading the state ---------------------------------------------------------------------------


def _state_events(log: AuditLog, key: bytes | None, before: int | None) -> list[StateEvent]:
    found = []
    for event in log.events(types=STATE_TYPES):
        if before is not None and event.seq >= before:
            break
        data = event.data
        assert isinstance(data, StatePayload)
        mac_ok = isinstance(data, KillSwitchReleased) and release_verifies(key, event, data)
        found.append(StateEvent(data, event.ts, event.seq, mac_ok))
    return found


def release_verifies(key: bytes | None, event: Event, release: KillSwitchReleased) -> bool:
    """Whether a release's MAC is the approval key's over its fields and place in the chain."""
    return keys.verify(key, RELEASE_DOMAIN, release.signed(event.seq, event.prev_hash), release.mac)


def read_state(log: AuditLog, key: ApprovalKey | None, *, before: int | None = None) -> StateChange:
    """The current trading state (ACTIVE when no state event exists), or the state just before
    event ``before``.

    With the home's ``key``, releases must verify (the fold that authorises orders); with
    ``None``, the state as recorded, marked ``verified=False``.
    """
    secret = None if key is None else key.load_if_present()
    return fold(_state_events(log, secret, before), check_releases=key is not None)


def current_state(log: AuditLog, key: ApprovalKey | None) -> TradingState:
    """Just the :class:`TradingState` of :func:`read_state`."""
    return read_state(log, key).state


def _last_release(log: AuditLog, key: ApprovalKey | None) -> datetime | None:
    """When, in market time, trading was last released (by a verified release, when ``key``
    is given): NAV points are market time too, whatever clock stamped the events."""
    secret = None if key is None else key.load_if_present()
    for event in log.events(types=(EventType.KILL_SWITCH_RELEASED,), newest_first=True):
        release = event.data_as(KillSwitchReleased)
        if key is None or release_verifies(secret, event, release):
            return release.market_at
    return None


# -- changing the state --------------------------------------------------------------------------


def _name(value: str, what: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > 200:
        raise ConfigError(f"{what} must be 1-200 characters, got {value!r:.60}")
    return text


def _activate(log: AuditLog, state: TradingState, reason: str, by: str) -> StateChange:
    payload = KillSwitchActivated(state=state, reason=_name(reason, "reason"), by=_name(by, "by"))
    with log.transaction() as tx:
        event = change_trading_state(tx, EventType.KILL_SWITCH_ACTIVATED, payload, actor=payload.by)
    return StateChange(state, payload.reason, payload.by, event.ts, event.seq)


def halt(log: AuditLog, *, reason: str, by: str) -> StateChange:
    """Stop all trading (cancels still allowed) until an approver resumes. Anyone may halt."""
    return _activate(log, TradingState.HALTED, reason, by)


def reduce(log: AuditLog, *, reason: str, by: str) -> StateChange:
    """Allow only risk-reducing orders. Refused while HALTED: resume first, that is the release.
    (Even if written, a REDUCING never lifts a HALT in the fold.)"""
    with log.transaction():
        if _recorded_halted(log):
            raise TradingHaltedError("HALTED", "only an approver's resume lifts a halt")
        return _activate(log, TradingState.REDUCING, reason, by)


def _recorded_halted(log: AuditLog) -> bool:
    return read_state(log, None).state is TradingState.HALTED


def resume(authority: Authority, credential: Credential, *, reason: str) -> StateChange:
    """Return to ACTIVE (also after a circuit-breaker trip): only for an approver whose
    credential the library verifies here, recorded with their name, reason and the key's MAC."""
    text = _name(reason, "reason")
    name = authority.verify(credential, action="resume trading")
    secret = authority.key.load()
    log = authority.log
    with log.transaction() as tx:
        seq, prev_hash = tx.head()
        draft = KillSwitchReleased(
            state=TradingState.ACTIVE,
            reason=text,
            by=name,
            market_at=authority.clock.now(),
            mac="0" * 64,
        )
        mac = keys.mac(secret, RELEASE_DOMAIN, draft.signed(seq + 1, prev_hash))
        release = draft.model_copy(update={"mac": mac})
        try:
            event = change_trading_state(tx, EventType.KILL_SWITCH_RELEASED, release, actor=name)
        except IllegalTransitionError as exc:
            raise ApprovalError(f"resume refused: {exc}") from exc
    return StateChange(TradingState.ACTIVE, text, name, event.ts, event.seq)


def set_state(log: AuditLog, state: TradingState, *, reason: str, by: str) -> StateChange:
    """Tighten to HALTED or REDUCING (anyone may). Loosening to ACTIVE is :func:`resume`."""
    if state is TradingState.HALTED:
        return halt(log, reason=reason, by=by)
    if state is TradingState.REDUCING:
        return reduce(log, reason=reason, by=by)
    raise ApprovalError("returning to ACTIVE needs an approver's credential: use resume")


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
    key: ApprovalKey | None,
    actor: str = "workbench",
) -> SnapshotRecord:
    """Record the snapshot's NAV; at or past the day's drawdown limit, trip HALTED, atomically.

    The day runs from the previous session's close on the exchange calendar (see
    ``risk.calendar.trading_day``), so a drop across a night, a weekend or a holiday counts. The
    breaker looks back to the last release (a verified one, when ``key`` is given)."""
    now, nav = snapshot.timestamp, snapshot.net_liquidation
    day = trading_day(now)  # before writing: a time outside the calendar records nothing
    with log.transaction() as tx:
        event = _record_snapshot(tx, snapshot, actor=actor)
        points = nav_points(log, snapshot.account, day.previous_open)
        check = judge_breaker(breaker, points, nav, now, _last_release(log, key), day)
        state = read_state(log, key).state
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
    assert check.peak is not None and check.drawdown is not None
    tripped = CircuitBreakerTripped(
        state=TradingState.HALTED, reason=reason, by=BREAKER_ACTOR, account=account,
        nav=check.nav, peak=check.peak, drawdown=check.drawdown, limit=check.limit,
    )  # fmt: skip
    halted = KillSwitchActivated(state=TradingState.HALTED, reason=reason[:200], by=BREAKER_ACTOR)
    with log.transaction() as tx:
        change_trading_state(tx, EventType.CIRCUIT_BREAKER_TRIPPED, tripped, actor=BREAKER_ACTOR)
        change_trading_state(tx, EventType.KILL_SWITCH_ACTIVATED, halted, actor=BREAKER_ACTOR)


# -- the gate's history --------------------------------------------------------------------------


def build_history(
    log: AuditLog, *, account: str, now: datetime, policy: RiskPolicy, key: ApprovalKey | None
) -> History:
    """NAV points of the trading day (from the previous session's open), the all-time NAV
    peak, recent submissions, working orders and orders of unknown outcome.

    With the home's ``key``, an order counts as resolved only by a resolution whose MAC
    verifies (see ``workbench.orphans``); with None (a read-only handle), as recorded."""
    window = max(policy.flow.duplicate_window_seconds, 60)
    points = nav_points(log, account, trading_day(now).previous_open)
    peak = max((p.nav for p in nav_points(log, account) if p.at <= now), default=None)
    # Events are stamped on the wall clock, never earlier than the market time they record (a
    # replay's day is past): reading from there by stamp misses no submission spent since.
    submitted = log.events(
        types=(EventType.ORDER_SUBMITTED,), since=now - timedelta(seconds=window + 60)
    )
    secret = None if key is None else key.load_if_present()
    working, unresolved = _open_orders(log, account, secret, checked=key is not None)
    return History(
        nav_points=tuple(p for p in points if p.at <= now),
        nav_peak=peak,
        submissions=_submissions(log, submitted, account, secret, checked=key is not None),
        working_orders=working,
        unresolved=unresolved,
    )


def _submissions(
    log: AuditLog, submitted: list[Event], account: str, key: bytes | None, *, checked: bool
) -> tuple[Submission, ...]:
    """The account's submissions, each at the market time its token was spent (a replay's day;
    the event itself carries the wall-clock time it was written), for R13 and R14 to compare
    with the gate's now; leaving out those an approver resolved as never sent."""
    intents = _intents(log, [e.proposal_id for e in submitted])
    never_sent = _never_sent(log, key, checked=checked)
    found = []
    for event in submitted:
        intent = intents[event.proposal_id or ""]
        if intent.account != account or event.proposal_id in never_sent:
            continue
        at = event.data_as(OrderSubmitted).spent_at
        found.append(Submission(at, intent.symbol, intent.side, intent.quantity, event.proposal_id))
    return tuple(found)


_PROPOSED_SQL = (
    "SELECT seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash, hash"
    " FROM events WHERE type = ? AND proposal_id IN (SELECT value FROM json_each(?))"
)


def _intents(log: AuditLog, proposal_ids: list[str | None]) -> dict[str, OrderIntent]:
    """The proposed intent of each proposal (one read); a submission whose proposal was never
    proposed is an AuditError: the gate is never handed a history with holes in it."""
    if None in proposal_ids:
        raise AuditError("an OrderSubmitted event without a proposal id")
    wanted = json.dumps(sorted({p for p in proposal_ids if p is not None}))
    rows = log.conn.execute(_PROPOSED_SQL, (EventType.ORDER_PROPOSED.value, wanted)).fetchall()
    found = {str(row[3]): Event(*row).data_as(OrderProposed).intent for row in rows}
    for proposal_id in proposal_ids:
        if proposal_id not in found:
            raise AuditError(f"proposal {proposal_id} was submitted but never proposed")
    return found


def _never_sent(log: AuditLog, key: bytes | None, *, checked: bool) -> set[str]:
    """Proposals an approver resolved as never sent (NOT_SENT is final), by a resolution that
    verifies with ``key`` when ``checked``."""
    found = set()
    for event in log.events(types=(EventType.ORDER_RESOLVED,)):
        resolved = event.data_as(OrderResolved)
        if resolved.outcome is not Resolution.NOT_SENT or event.proposal_id is None:
            continue
        if not checked or orphans.resolution_verifies(key, event.proposal_id, resolved):
            found.add(event.proposal_id)
    return found


def _open_orders(
    log: AuditLog, account: str, secret: bytes | None, *, checked: bool
) -> tuple[tuple[WorkingOrder, ...], tuple[WorkingOrder, ...]]:
    """The account's working orders, and its orders of unknown outcome (unresolved)."""
    working: list[WorkingOrder] = []
    unresolved: list[WorkingOrder] = []
    for record in records.spent_and_open(log):
        intent = record.intent
        if intent.account != account:
            continue
        order = WorkingOrder(intent.symbol, intent.side, intent.quantity, record.proposal_id)
        if orphans.is_unresolved(record, secret, checked=checked):
            unresolved.append(order)
        elif record.state in WORKING_STATES:
            working.append(order)
    return tuple(working), tuple(unresolved)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
