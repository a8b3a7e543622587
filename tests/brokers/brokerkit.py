"""Builders for broker tests: intents, and permits backed by a real walk through the lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from workbench.audit import AuditLog, EventType
from workbench.brokers.base import Broker
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.lifecycle import advance
from workbench.models import (
    Instrument,
    InstrumentType,
    OrderIntent,
    OrderType,
    ProtectiveStop,
    Side,
    Source,
    SubmitPermit,
)

POLICY_HASH = "cd" * 32
ACCOUNT = "PAPER1"
TRADING_NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # as in tests/conftest.py


@dataclass
class Harness:
    """A broker under test, its audit log and clock, and the hooks a test needs to drive it."""

    broker: Broker
    log: AuditLog
    clock: FixedClock
    account: str
    move_to: Callable[[datetime], None]  # move the clock and let the broker catch up
    restart: Callable[[], None]  # close and reopen the home: broker and log are replaced


def intent(symbol: str = "SPY", quantity: int | str = 10, **overrides: Any) -> OrderIntent:
    """A DAY market order to buy ``quantity`` of ``symbol`` on the paper account."""
    fields: dict[str, Any] = {
        "account": ACCOUNT,
        "instrument": Instrument(type=InstrumentType.ETF, symbol=symbol),
        "side": Side.BUY,
        "quantity": Decimal(quantity),
        "order_type": OrderType.MKT,
        "source": Source.RULE,
        "reason": "broker test",
    }
    return OrderIntent(**{**fields, **overrides})


def walk_to_submitted(log: AuditLog, proposal_id: str, order: OrderIntent, order_ref: str) -> int:
    """Record OrderProposed … OrderSubmitted for ``order``; return the OrderSubmitted seq."""
    digest = order.intent_hash
    steps: list[tuple[EventType, dict[str, Any]]] = [
        (EventType.ORDER_PROPOSED, {"intent": order}),
        (EventType.ORDER_SIMULATED, {}),
        (EventType.RISK_GATE_EVALUATED,
         {"decision": "APPROVE", "policy_hash": POLICY_HASH, "intent_hash": digest}),
        (EventType.APPROVAL_REQUESTED, {}),
        (EventType.APPROVAL_GRANTED, {"intent_hash": digest}),
        (EventType.ORDER_SUBMITTED, {"intent_hash": digest, "order_ref": order_ref}),
    ]  # fmt: skip
    with log.transaction() as tx:
        for type_, payload in steps:
            event = advance(tx, proposal_id, type_, payload, actor="test")
    return event.seq


def permit_for(log: AuditLog, proposal_id: str, order: OrderIntent) -> SubmitPermit:
    """A permit exactly as the approval module makes one, after the lifecycle walk."""
    order_ref = f"wb:{proposal_id}"
    seq = walk_to_submitted(log, proposal_id, order, order_ref)
    return SubmitPermit(
        proposal_id=proposal_id,
        intent=order,
        intent_hash=order.intent_hash,
        submitted_seq=seq,
        order_ref=order_ref,
        protective_stop=order.protective_stop,
    )


def with_stop(order: OrderIntent, stop_price: Decimal) -> OrderIntent:
    """``order`` with a protective stop attached."""
    return order.model_copy(update={"protective_stop": ProtectiveStop(stop_price=stop_price)})


def paper_harness(home: Path, clock: FixedClock) -> Iterator[Harness]:
    """The embedded paper broker on a fresh home."""
    path = home / "workbench.sqlite"
    log = AuditLog(path, clock=clock)
    broker = PaperBroker(log)
    harness = Harness(broker, log, clock, "PAPER1", lambda when: None, lambda: None)

    def move_to(when: datetime) -> None:
        clock.set(when)
        paper = harness.broker
        assert isinstance(paper, PaperBroker)
        paper.process()

    def restart() -> None:
        harness.broker.close()
        harness.log.close()
        harness.log = AuditLog(path, clock=clock)
        harness.broker = PaperBroker(harness.log)

    harness.move_to, harness.restart = move_to, restart
    yield harness
    harness.log.close()


# Every broker the contract runs against; the IBKR adapter (loopback gateway) joins here.
BROKERS: dict[str, Callable[[Path, FixedClock], Iterator[Harness]]] = {"paper": paper_harness}
