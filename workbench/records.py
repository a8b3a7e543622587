"""One proposal, folded from its events into one typed record: the projection every reader uses.

:func:`fold` turns a proposal's events (oldest first) into a :class:`ProposalRecord`: its state,
intent, latest simulation, latest gate decision (submit-time re-checks included) and the latest
that moved its state, grant, denial, submission, and what the broker did with it. The facade,
approval, the permit check, the trading state, review and the panels read this record; none of
them re-derives it from payloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from workbench.audit import AuditLog, Event, EventType
from workbench.canonical import utc_iso
from workbench.errors import AuditError, UnknownProposalError
from workbench.events import (
    ApprovalDenied,
    ApprovalGranted,
    BrokerUpdate,
    MarketSnapshotTaken,
    OrderOutcomeUnknown,
    OrderProposed,
    OrderResolved,
    OrderSimulated,
    OrderSubmitted,
    RiskGateEvaluated,
)
from workbench.lifecycle import OrderState, event_state
from workbench.models import Frozen, MarketSnapshot, OrderIntent, SimResult
from workbench.orders import Fill

P = TypeVar("P", bound=Frozen)


@dataclass(frozen=True, slots=True)
class At(Generic[P]):
    """A typed payload and where its event sits: seq, time and actor."""

    seq: int
    ts: str
    actor: str
    data: P


def _at(event: Event, data: P) -> At[P]:
    return At(event.seq, event.ts, event.actor, data)


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    """Everything the log says about one proposal."""

    proposal_id: str
    state: OrderState
    proposed: At[OrderProposed]
    correlation_id: str | None
    simulation: At[OrderSimulated] | None
    decision: At[RiskGateEvaluated] | None  # the latest, submit-time re-checks included
    verdict: At[RiskGateEvaluated] | None  # the latest that moved the state
    grant: At[ApprovalGranted] | None
    denial: At[ApprovalDenied] | None
    submission: At[OrderSubmitted] | None
    updates: tuple[At[BrokerUpdate], ...]  # the broker's, parent and bracket children
    unknown: At[OrderOutcomeUnknown] | None = None  # its outcome was found unknown
    resolution: At[OrderResolved] | None = None  # an approver's answer to that

    @property
    def intent(self) -> OrderIntent:
        return self.proposed.data.intent

    @property
    def intent_hash(self) -> str:
        """The recorded intent hash (OrderProposed validates it against the intent)."""
        return self.proposed.data.intent_hash

    @property
    def market_at(self) -> datetime:
        """When, in market time, the proposal was judged: its verdict's ``evaluated_at`` (a
        replay's day, not the wall clock its events were recorded on); the time it was recorded
        when it never got a decision, or only a fault."""
        verdict = self.verdict
        if verdict is not None and verdict.data.evaluated_at is not None:
            return verdict.data.evaluated_at
        return datetime.fromisoformat(self.proposed.ts)

    @property
    def sim(self) -> SimResult | None:
        return None if self.simulation is None else self.simulation.data.result

    @property
    def fills(self) -> tuple[Fill, ...]:
        return tuple(u.data.fill for u in self.updates if u.data.fill is not None)

    @property
    def notional(self) -> Decimal | None:
        """The larger of the simulated notional and quantity × limit/stop price; None if neither
        is known (a market order never simulated)."""
        found = [] if self.sim is None else [self.sim.notional]
        price = self.intent.limit_price or self.intent.stop_price
        if price is not None:
            found.append(self.intent.quantity * price)
        return max(found) if found else None


def fold(found: Iterable[Event]) -> ProposalRecord | None:
    """A proposal's events (oldest first, one proposal) as its record; None if never proposed."""
    state: OrderState | None = None
    proposed: At[OrderProposed] | None = None
    simulation: At[OrderSimulated] | None = None
    decision: At[RiskGateEvaluated] | None = None
    verdict: At[RiskGateEvaluated] | None = None
    grant: At[ApprovalGranted] | None = None
    denial: At[ApprovalDenied] | None = None
    submission: At[OrderSubmitted] | None = None
    unknown: At[OrderOutcomeUnknown] | None = None
    resolution: At[OrderResolved] | None = None
    updates: list[At[BrokerUpdate]] = []
    proposal_id = correlation_id = None
    for event in found:
        data = event.data
        moved = event_state(event)
        state = moved if moved is not None else state
        match data:
            case OrderProposed():
                proposed = _at(event, data)
                proposal_id, correlation_id = event.proposal_id, event.correlation_id
            case OrderSimulated():
                simulation = _at(event, data)
            case RiskGateEvaluated():
                decision = _at(event, data)
                verdict = decision if data.transition else verdict
            case ApprovalGranted():
                grant = _at(event, data)
            case ApprovalDenied():
                denial = _at(event, data)
            case OrderSubmitted():
                submission = _at(event, data)
            case BrokerUpdate():
                updates.append(_at(event, data))
            case OrderOutcomeUnknown():
                unknown = _at(event, data)
            case OrderResolved():
                resolution = _at(event, data)
    if proposed is None or state is None or proposal_id is None:
        return None
    return ProposalRecord(
        proposal_id=proposal_id,
        state=state,
        proposed=proposed,
        correlation_id=correlation_id,
        simulation=simulation,
        decision=decision,
        verdict=verdict,
        grant=grant,
        denial=denial,
        submission=submission,
        updates=tuple(updates),
        unknown=unknown,
        resolution=resolution,
    )


def load(log: AuditLog, proposal_id: str, *, until_seq: int | None = None) -> ProposalRecord:
    """The record of ``proposal_id`` (as of event ``until_seq`` if given); raises if unknown."""
    found = log.events(proposal_id=proposal_id)
    if until_seq is not None:
        found = [e for e in found if e.seq <= until_seq]
    record = fold(found)
    if record is None:
        raise UnknownProposalError(proposal_id)
    return record


_OPEN_SQL = (
    "SELECT DISTINCT proposal_id FROM events WHERE type = ? AND proposal_id IS NOT NULL"
    " AND proposal_id NOT IN (SELECT proposal_id FROM events WHERE type IN (?, ?, ?)"
    " AND proposal_id IS NOT NULL)"
)


def spent_and_open(log: AuditLog) -> list[ProposalRecord]:
    """The records of proposals whose token was spent and that no filled, cancelled or rejected
    event closed: working, of unknown outcome, or resolved as never sent (oldest first).

    A submission whose proposal cannot be read is an AuditError: never a record with holes."""
    closed = (EventType.ORDER_FILLED, EventType.ORDER_CANCELLED, EventType.ORDER_REJECTED)
    params = (EventType.ORDER_SUBMITTED.value, *(t.value for t in closed))
    found = []
    for (proposal_id,) in log.conn.execute(_OPEN_SQL, params).fetchall():
        try:
            found.append(load(log, proposal_id))
        except UnknownProposalError:
            raise AuditError(f"proposal {proposal_id} was submitted but never proposed") from None
    return found


_QUOTE_SQL = (
    "SELECT seq, ts, type, proposal_id, correlation_id, actor, payload, prev_hash, hash"
    " FROM events WHERE type = ? AND seq < ?"
    " AND json_extract(payload, '$.quote.instrument.symbol') = ?"
    " AND json_extract(payload, '$.quote.timestamp') = ?"
    " ORDER BY seq DESC LIMIT 1"
)


def judged_quote(log: AuditLog, record: ProposalRecord) -> MarketSnapshot | None:
    """The quote the proposal's latest decision was made on: the newest MarketSnapshotTaken
    before it for its symbol and with the decision's ``market_ts``; None when there is none (a
    fault, or a quote never recorded)."""
    decided = record.decision
    if decided is None or decided.data.market_ts is None:
        return None
    params = (EventType.MARKET_SNAPSHOT_TAKEN.value, decided.seq, record.intent.symbol,
              utc_iso(decided.data.market_ts))  # fmt: skip
    row = log.conn.execute(_QUOTE_SQL, params).fetchone()
    if row is None:
        return None
    return Event(*row).data_as(MarketSnapshotTaken).quote


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A proposal whose events do not validate (written behind the workbench's back): listed so
    it is seen, never folded into figures anyone could act on."""

    proposal_id: str
    proposed_at: str  # the time of its first event
    reason: str


def load_all(
    log: AuditLog, types: tuple[EventType, ...] | None = None
) -> list[ProposalRecord | Unreadable]:
    """Every proposal's record, oldest proposal first (only ``types`` read, if given); a
    proposal whose events do not validate comes back as :class:`Unreadable`."""
    grouped: dict[str, list[Event]] = {}
    for event in log.events(types=types):
        if event.proposal_id is not None:
            grouped.setdefault(event.proposal_id, []).append(event)
    found: list[ProposalRecord | Unreadable] = []
    for proposal_id, events in grouped.items():
        try:
            record = fold(events)
        except AuditError as exc:
            found.append(Unreadable(proposal_id, events[0].ts, str(exc)))
            continue
        if record is not None:
            found.append(record)
    return found
