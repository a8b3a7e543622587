"""Typed event payloads: one model per type, validated on write and read; guarded types refused."""

from __future__ import annotations

import ast
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import EVALUATED_AT, make_intent, payload_for, raw_insert, tool_called

from workbench import canonical
from workbench.audit import AuditLog, EventType
from workbench.brokers.paper_rules import PaperConfig
from workbench.errors import AuditError, GuardedEventError
from workbench.events import (
    GUARDED,
    PAYLOADS,
    ApprovalCredentialRefused,
    ApproverAdded,
    ApproverRemoved,
    CircuitBreakerTripped,
    DailyRun,
    KillSwitchActivated,
    KillSwitchReleased,
    MarketSnapshotTaken,
    PaperAccountOpened,
    PermitRefused,
    ReconciliationRun,
    ToolCalled,
)
from workbench.models import (
    Frozen,
    Instrument,
    InstrumentType,
    MarketSnapshot,
    PortfolioSnapshot,
    TradingState,
)

ROOT = Path(__file__).resolve().parents[1]
INTENT = make_intent()
QUOTE = MarketSnapshot(
    instrument=Instrument(type=InstrumentType.ETF, symbol="SPY"), bid=Decimal(1), ask=Decimal(2),
    timestamp=EVALUATED_AT, source="test",
)  # fmt: skip
UNGUARDED: dict[EventType, Frozen] = {
    EventType.MARKET_SNAPSHOT_TAKEN: MarketSnapshotTaken(quote=QUOTE),
    EventType.RECONCILIATION_RUN: ReconciliationRun(
        submitted_without_broker_order=("p1",), broker="test"
    ),
    EventType.TOOL_CALLED: ToolCalled.model_validate(tool_called("propose_order", n=[1, "x"])),
    EventType.PERMIT_REFUSED: PermitRefused(
        reason="no token", order_ref="wb:p1", submitted_seq=3, broker="test"
    ),
    EventType.PAPER_ACCOUNT_OPENED: PaperAccountOpened(
        account="PAPER1",
        currency="USD",
        broker="test",
        starting_cash=Decimal(1),
        config=PaperConfig(),
    ),
    EventType.DAILY_RUN_STARTED: DailyRun(as_of=date(2026, 11, 18), detail=""),
    EventType.DAILY_RUN_FINISHED: DailyRun(as_of=date(2026, 11, 18), detail="ok"),
    EventType.APPROVAL_CREDENTIAL_REFUSED: ApprovalCredentialRefused(
        approver="alice", action="approve", reason="wrong passphrase"
    ),
}
STATE_SAMPLES: dict[EventType, Frozen] = {
    EventType.KILL_SWITCH_ACTIVATED: KillSwitchActivated(
        state=TradingState.HALTED, reason="x", by="ops"
    ),
    EventType.KILL_SWITCH_RELEASED: KillSwitchReleased(
        state=TradingState.ACTIVE, reason="x", by="mallory", market_at=EVALUATED_AT, mac="0" * 64
    ),
    EventType.CIRCUIT_BREAKER_TRIPPED: CircuitBreakerTripped(
        state=TradingState.HALTED,
        reason="x",
        by="circuit-breaker",
        account="PAPER1",
        nav=Decimal(94),
        peak=Decimal(100),
        drawdown=Decimal("0.06"),
        limit=Decimal("0.05"),
    ),
    EventType.APPROVER_ADDED: ApproverAdded(name="mallory", by=(), bootstrap=True, replaced=False),
    EventType.APPROVER_REMOVED: ApproverRemoved(name="alice", by=("mallory",)),
    EventType.PORTFOLIO_SNAPSHOT_TAKEN: PortfolioSnapshot(
        account="PAPER1",
        currency="USD",
        cash=Decimal(1),
        net_liquidation=Decimal(1),
        available_funds=Decimal(1),
        buying_power=Decimal(1),
        timestamp=EVALUATED_AT,
        broker="t",
    ),
}


def sample(type_: EventType) -> Frozen:
    """A valid payload of ``type_`` (for order events, one a forger could build)."""
    if type_ in UNGUARDED:
        return UNGUARDED[type_]
    if type_ in STATE_SAMPLES:
        return STATE_SAMPLES[type_]
    return payload_for(type_, INTENT)


def test_every_event_type_has_exactly_one_payload_model() -> None:
    """Each EventType maps to a payload model, and each sample validates as that model."""
    assert set(PAYLOADS) == set(EventType)
    for type_ in EventType:
        assert type(sample(type_)) is PAYLOADS[type_], type_


def test_every_event_type_is_either_guarded_or_has_a_generic_sample() -> None:
    """A new event type must be classified: guarded (authority/state) or generic."""
    assert set(GUARDED) | set(UNGUARDED) == set(EventType)
    assert not set(GUARDED) & set(UNGUARDED)


def test_events_that_carry_authority_or_state_are_guarded() -> None:
    """Grants, denials, submissions, fills, cancels, rejects, trading state, enrolment, NAV."""
    must = {
        EventType.APPROVAL_GRANTED, EventType.APPROVAL_DENIED, EventType.APPROVAL_EXPIRED,
        EventType.ORDER_SUBMITTED, EventType.ORDER_FILLED, EventType.ORDER_PARTIALLY_FILLED,
        EventType.ORDER_CANCELLED, EventType.ORDER_REJECTED, EventType.ORDER_CONFIRMED,
        EventType.RISK_GATE_EVALUATED, EventType.KILL_SWITCH_ACTIVATED,
        EventType.KILL_SWITCH_RELEASED, EventType.CIRCUIT_BREAKER_TRIPPED,
        EventType.APPROVER_ADDED, EventType.APPROVER_REMOVED, EventType.BROKER_ORDER_UPDATED,
        EventType.PORTFOLIO_SNAPSHOT_TAKEN,
    }  # fmt: skip
    assert must <= set(GUARDED)


@pytest.mark.parametrize("type_", sorted(GUARDED), ids=str)
def test_generic_append_refuses_every_guarded_type(log: AuditLog, type_: EventType) -> None:
    """AuditLog.append and Transaction.append refuse a guarded type, even with a valid payload,
    naming its write path; nothing is written."""
    payload = sample(type_)
    with pytest.raises(GuardedEventError, match="written only through lifecycle"):
        log.append(type_, payload, actor="mallory", proposal_id="p1")
    with pytest.raises(GuardedEventError), log.transaction() as tx:
        tx.append(type_, payload.model_dump(mode="json"), actor="mallory", proposal_id="p1")
    assert log.count() == 0


@pytest.mark.parametrize("type_", sorted(UNGUARDED), ids=str)
def test_generic_types_are_written_and_read_back_typed(log: AuditLog, type_: EventType) -> None:
    """An unguarded type is appended from its model or a mapping, and read back as its model."""
    payload = UNGUARDED[type_]
    log.append(type_, payload, actor="test")
    log.append(type_, payload.model_dump(mode="json"), actor="test")
    first, second = log.events()
    assert first.data == second.data == payload
    assert first.data_as(PAYLOADS[type_]) == payload
    with pytest.raises(AuditError, match="not a"):
        first.data_as(ToolCalled if type_ is not EventType.TOOL_CALLED else DailyRun)


def test_a_payload_missing_a_field_or_with_an_extra_one_is_refused(log: AuditLog) -> None:
    """Validation on write: a missing or unknown field is an AuditError and nothing is written."""
    with pytest.raises(AuditError, match="broker: Field required"):
        log.append(EventType.RECONCILIATION_RUN, {"submitted_without_broker_order": []}, actor="t")
    extra = {**UNGUARDED[EventType.TOOL_CALLED].model_dump(mode="json"), "approved": True}
    with pytest.raises(AuditError, match="approved: Extra inputs"):
        log.append(EventType.TOOL_CALLED, extra, actor="t")
    with pytest.raises(AuditError, match="takes a ToolCalled or a mapping"):
        log.append(EventType.TOOL_CALLED, UNGUARDED[EventType.DAILY_RUN_STARTED], actor="t")
    assert log.count() == 0


def test_a_stored_payload_that_does_not_validate_fails_on_read(log: AuditLog) -> None:
    """Validation on read: a well-chained event whose payload is not its model is an AuditError
    naming its seq (never a dict read with defaults)."""
    raw_insert(log, "ToolCalled", '{"tool":"t"}')
    raw_insert(log, "NoSuchType", "{}")
    assert log.verify().ok
    first, second = log.events()
    with pytest.raises(AuditError, match="event 1 \\(ToolCalled\\) does not validate"):
        first.data  # noqa: B018
    with pytest.raises(AuditError, match="unknown event type"):
        second.data  # noqa: B018


def test_only_the_transition_tables_call_the_log_writer() -> None:
    """The one writer of the events table (``Transaction._chain``) is called only by the generic
    append in audit.py and by the transition tables in lifecycle.py."""
    callers = set()
    for path in (ROOT / "workbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "_chain":
                callers.add(path.name)
    assert callers == {"audit.py", "lifecycle.py"}


def test_payloads_round_trip_through_canonical_json() -> None:
    """Every sample written as canonical JSON parses back to an equal model."""
    for type_ in EventType:
        payload = sample(type_)
        parsed = PAYLOADS[type_].model_validate_json(canonical.dumps(payload))
        assert parsed == payload, type_
