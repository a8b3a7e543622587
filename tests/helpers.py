"""Reusable test builders: intents, and proposals walked through the real lifecycle."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from workbench.audit import AuditLog, EventType
from workbench.lifecycle import advance
from workbench.models import Instrument, InstrumentType, OrderIntent, OrderType, Side, Source
from workbench.sessions import xnys

POLICY_HASH = "ab" * 32


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


def request_approval(
    log: AuditLog,
    proposal_id: str,
    intent: OrderIntent | None = None,
    *,
    decision: str = "APPROVE",
    policy_hash: str = POLICY_HASH,
    simulated: dict[str, Any] | None = None,
) -> OrderIntent:
    """Walk a proposal to APPROVAL_REQUESTED: proposed, simulated, gated, approval requested."""
    intent = intent or make_intent()
    gate = {"decision": decision, "policy_hash": policy_hash, "intent_hash": intent.intent_hash}
    with log.transaction() as tx:
        advance(tx, proposal_id, EventType.ORDER_PROPOSED, {"intent": intent}, actor="test")
        advance(tx, proposal_id, EventType.ORDER_SIMULATED, simulated or {}, actor="test")
        advance(tx, proposal_id, EventType.RISK_GATE_EVALUATED, gate, actor="test")
        advance(tx, proposal_id, EventType.APPROVAL_REQUESTED, {}, actor="test")
    return intent


def recheck(log: AuditLog, proposal_id: str, decision: str, policy_hash: str = POLICY_HASH) -> None:
    """Record a submit-time gate re-check that does not move the lifecycle state."""
    payload = {"decision": decision, "policy_hash": policy_hash, "transition": False}
    log.append(EventType.RISK_GATE_EVALUATED, payload, actor="test", proposal_id=proposal_id)


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
