"""Reusable test builders: intents, typed payloads, and proposals walked through the real lifecycle.

Every payload here is the real model of its event type; the proposals are walked with
``lifecycle.advance`` (the one write path) and approved and spent through the real ``Approvals``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from workbench import canonical
from workbench.audit import AuditLog, EventType, chain_hash, event_text
from workbench.authority import Authority, Credential
from workbench.events import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BrokerUpdate,
    OrderOutcomeUnknown,
    OrderProposed,
    OrderResolved,
    OrderSimulated,
    OrderSubmitted,
    OrderWithdrawn,
    Payload,
    Resolution,
    RiskGateEvaluated,
)
from workbench.lifecycle import advance
from workbench.models import (
    Decision,
    Instrument,
    InstrumentType,
    OrderIntent,
    OrderType,
    RuleId,
    Severity,
    Side,
    SimResult,
    Source,
    Violation,
)
from workbench.sessions import xnys

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
POLICY_HASH = "ab" * 32
EVALUATED_AT = datetime(2026, 11, 18, 15, 29, tzinfo=UTC)
ALICE, BOB = "alice", "bob"
ALICE_PW, BOB_PW = "correct horse battery", "staple paperclip 42"
ALICE_CRED, BOB_CRED = Credential(ALICE, ALICE_PW), Credential(BOB, BOB_PW)


def tool_called(tool: str = "t", **arguments: Any) -> dict[str, Any]:
    """A valid ToolCalled payload (a generic, unguarded event); ``arguments`` make it distinct
    (their JSON is the detail, its sha256 the digest)."""
    text = json.dumps(arguments, sort_keys=True, default=str)
    return {
        "tool": tool, "arguments_digest": hashlib.sha256(text.encode()).hexdigest(),
        "arguments_chars": len(text), "outcome": "ok", "detail": text, "proposal_id": None,
        "origin": {"client": "test", "client_version": None, "session": "s1", "transport": "stdio"},
        "limits_hash": "cd" * 32,
    }  # fmt: skip


def make_intent(**overrides: Any) -> OrderIntent:
    """A valid limit order to buy 10 SPY at 500 on a paper account, with any field overridden."""
    fields: dict[str, Any] = {
        "account": "DU123456",
        "instrument": Instrument(type=InstrumentType.ETF, symbol="SPY", exchange="ARCA"),
        "side": Side.BUY,
        "quantity": Decimal(10),
        "order_type": OrderType.LMT,
        "limit_price": Decimal(500),
        "source": Source.RULE,
        "reason": "test",
    }
    return OrderIntent(**{**fields, **overrides})


def proposed(intent: OrderIntent) -> OrderProposed:
    return OrderProposed(intent=intent, intent_hash=intent.intent_hash, broker="test")


def sim_result(intent: OrderIntent, notional: Decimal | None = None) -> SimResult:
    """A plausible simulation of ``intent`` with the given notional (default: qty × price)."""
    price = intent.limit_price or intent.stop_price or Decimal(100)
    notional = intent.quantity * price if notional is None else notional
    return SimResult(
        intent_hash=intent.intent_hash, currency="USD", reference_price=price, notional=notional,
        estimated_slippage=Decimal(0), fees=Decimal(1), cash_before=Decimal(1_000_000),
        cash_after=Decimal(1_000_000) - notional, nav_before=Decimal(1_000_000),
        nav_after=Decimal(1_000_000), position_before=Decimal(0), position_after=intent.quantity,
        exposure_by_symbol_after={intent.symbol: notional}, weight_after=Decimal("0.01"),
        concentration_after=Decimal("0.01"), gross_exposure_after=notional,
        net_exposure_after=notional, leverage_after=Decimal("0.01"), margin_impact=Decimal(0),
        positions_after=1, opens_or_increases=True,
    )  # fmt: skip


def gate(
    intent: OrderIntent,
    decision: str = "APPROVE",
    policy_hash: str = POLICY_HASH,
    *,
    transition: bool = True,
) -> RiskGateEvaluated:
    """A gate verdict on ``intent`` (a REVIEW carries one MAJOR finding)."""
    found = ()
    if decision == "REVIEW":
        found = (Violation(rule_id=RuleId.R17_PROPAGATED_SIGNAL, severity=Severity.MAJOR,
                           message="needs a person"),)  # fmt: skip
    return RiskGateEvaluated(
        decision=Decision(decision), violations=found, computed={}, policy_hash=policy_hash,
        intent_hash=intent.intent_hash, evaluated_at=EVALUATED_AT, transition=transition,
        market_ts=EVALUATED_AT, portfolio_ts=EVALUATED_AT, fault=None,
    )  # fmt: skip


def fake_grant(intent: OrderIntent, token_id: str = "0" * 32) -> ApprovalGranted:
    """A grant with a made-up MAC: what a forger can write without the approval key."""
    return ApprovalGranted(
        approvers=("mallory",), token_id=token_id, token_digest="1" * 64,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC), override_reason=None,
        decision=Decision.APPROVE, policy_hash=POLICY_HASH, intent_hash=intent.intent_hash,
        account=intent.account, notional=None, auto_commit=False, mac="2" * 64,
    )  # fmt: skip


def fake_submission(
    intent: OrderIntent, order_ref: str, token_id: str = "0" * 32
) -> OrderSubmitted:
    return OrderSubmitted(
        token_id=token_id, intent_hash=intent.intent_hash, order_ref=order_ref,
        approvers=("mallory",), spent_at=EVALUATED_AT,
    )  # fmt: skip


def fake_resolution(order_ref: str, outcome: Resolution = Resolution.NOT_SENT) -> OrderResolved:
    """A resolution with a made-up MAC: what a forger can write without the approval key."""
    return OrderResolved(
        outcome=outcome, broker_order_id=None if outcome is Resolution.NOT_SENT else "B1",
        order_ref=order_ref, broker="test", approver="mallory", reason="trust me", mac="3" * 64,
    )  # fmt: skip


def payload_for(type_: EventType, intent: OrderIntent, decision: str = "APPROVE") -> Payload:
    """A valid payload of ``type_`` for ``intent`` (grants and submissions are forged ones)."""
    builders: dict[EventType, Any] = {
        EventType.ORDER_PROPOSED: lambda: proposed(intent),
        EventType.ORDER_SIMULATED: lambda: OrderSimulated(result=sim_result(intent)),
        EventType.RISK_GATE_EVALUATED: lambda: gate(intent, decision),
        EventType.APPROVAL_REQUESTED: ApprovalRequested,
        EventType.APPROVAL_GRANTED: lambda: fake_grant(intent),
        EventType.APPROVAL_DENIED: lambda: ApprovalDenied(approver=ALICE, reason="no"),
        EventType.APPROVAL_EXPIRED: lambda: ApprovalExpired(reason="late", at=EVALUATED_AT),
        EventType.ORDER_SUBMITTED: lambda: fake_submission(intent, "wb:x"),
        EventType.ORDER_WITHDRAWN: lambda: OrderWithdrawn(by="test"),
        EventType.ORDER_OUTCOME_UNKNOWN: lambda: OrderOutcomeUnknown(
            order_ref="wb:x", broker="test", broker_answer="nothing", found_by="test"
        ),
        EventType.ORDER_RESOLVED: lambda: fake_resolution("wb:x"),
    }
    if type_ in builders:
        made: Payload = builders[type_]()
        return made
    return BrokerUpdate(
        order=None, fill=None, message="test", broker="test", cursor=None, order_ref="wb:x"
    )


def request_approval(
    log: AuditLog,
    proposal_id: str,
    intent: OrderIntent | None = None,
    *,
    decision: str = "APPROVE",
    policy_hash: str = POLICY_HASH,
    notional: Decimal | None = None,
) -> OrderIntent:
    """Walk a proposal to APPROVAL_REQUESTED: proposed, simulated, gated, approval requested."""
    intent = intent or make_intent()
    steps: list[tuple[EventType, Payload]] = [
        (EventType.ORDER_PROPOSED, proposed(intent)),
        (EventType.ORDER_SIMULATED, OrderSimulated(result=sim_result(intent, notional))),
        (EventType.RISK_GATE_EVALUATED, gate(intent, decision, policy_hash)),
        (EventType.APPROVAL_REQUESTED, ApprovalRequested()),
    ]
    with log.transaction() as tx:
        for type_, payload in steps:
            advance(tx, proposal_id, type_, payload, actor="test")
    return intent


def recheck(log: AuditLog, proposal_id: str, decision: str, policy_hash: str = POLICY_HASH) -> None:
    """Record a submit-time gate re-check that does not move the lifecycle state."""
    from workbench import records

    intent = records.load(log, proposal_id).intent
    payload = gate(intent, decision, policy_hash, transition=False)
    with log.transaction() as tx:
        advance(tx, proposal_id, EventType.RISK_GATE_EVALUATED, payload, actor="test")


def authority_with(log: AuditLog, home: Path, *people: Credential) -> Authority:
    """The home's Authority with ``people`` enrolled: the first bootstraps, each next is enrolled
    by the first."""
    authority = Authority(log, home, log.clock)
    for n, person in enumerate(people):
        if n == 0:
            authority.bootstrap(person)
        else:
            authority.enrol(person, by=people[0])
    return authority


def policies_with(folder: Path, *replacements: tuple[str, str]) -> Path:
    """A copy of the repository's policies with each (old, new) text replaced once."""
    shutil.copytree(POLICIES, folder)
    path = folder / "risk_policy.yaml"
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)
    return folder


def enabled_policies(tmp_path: Path) -> Path:
    """A copy of the repository's policies with auto-commit switched on."""
    return policies_with(tmp_path / "policies", ("    enabled: false\n", "    enabled: true\n"))


def raw_insert(log: AuditLog, type_: str, payload_json: str, pid: str | None = None) -> None:
    """Chain an event straight into the file (what code with raw file access can do)."""
    seq, prev = log.head()
    ts = canonical.utc_iso(datetime(2026, 11, 18, 15, 30, tzinfo=UTC))
    text = event_text(seq + 1, ts, type_, pid, None, "mallory", payload_json)
    raw = sqlite3.connect(log.path)
    raw.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq + 1, ts, type_, pid, None, "mallory", payload_json, prev, chain_hash(prev, text)),
    )
    raw.commit()
    raw.close()


def write_bars(path: Path, symbols: tuple[str, ...], end: date, sessions: int = 30) -> Path:
    """A user's daily bars file for ``symbols`` over the sessions ending on ``end``: closes
    near 100 + 10·n in a gentle zigzag, volume 2,000,000."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["date", "symbol", "open", "high", "low", "close", "volume"])
        for n, symbol in enumerate(symbols):
            for k, session in enumerate(xnys().ending(end, sessions)):
                close = Decimal(100 + 10 * n) + Decimal(k % 3)
                row = [close - 1, close + 2, close - 2, close]
                out.writerow([session.day.isoformat(), symbol, *row, 2_000_000])
    return path
