"""Builders for broker tests: intents, and permits backed by a real walk through the lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from helpers import ALICE_CRED, POLICIES, request_approval

from workbench.approval import Approvals
from workbench.audit import AuditLog
from workbench.authority import Authority
from workbench.brokers.base import Broker
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.keys import ApprovalKey
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

    def intent(
        self, symbol: str = "SPY", quantity: int | str = 10, **overrides: Any
    ) -> OrderIntent:
        """:func:`intent` on this broker's account."""
        return intent(symbol, quantity, **{"account": self.account, **overrides})


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


def approvals_for(log: AuditLog) -> Approvals:
    """The real approval service on ``log``'s home, with alice enrolled (bootstrap)."""
    authority = Authority(log, log.path.parent, log.clock)
    if not authority.approvers():
        authority.bootstrap(ALICE_CRED)
    return Approvals(log, authority, log.clock, policy_dir=POLICIES)


def permit_for(log: AuditLog, proposal_id: str, order: OrderIntent) -> SubmitPermit:
    """A permit made the only way there is: the proposal walked to a gate APPROVE, approved by
    an enrolled approver, and its one-time token spent in the transaction that records it."""
    approvals = approvals_for(log)
    request_approval(log, proposal_id, order, policy_hash=POLICY_HASH)
    grant = approvals.approve(proposal_id, ALICE_CRED)
    with log.transaction() as tx:
        return approvals.consume(tx, proposal_id, grant.token, order_ref=f"wb:{proposal_id}")


def with_stop(order: OrderIntent, stop_price: Decimal) -> OrderIntent:
    """``order`` with a protective stop attached."""
    return order.model_copy(update={"protective_stop": ProtectiveStop(stop_price=stop_price)})


def paper_harness(home: Path, clock: FixedClock) -> Iterator[Harness]:
    """The embedded paper broker on a fresh home."""
    path = home / "workbench.sqlite"
    log = AuditLog(path, clock=clock)
    broker = PaperBroker(log, key=ApprovalKey(home))
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
        harness.broker = PaperBroker(harness.log, key=ApprovalKey(home))

    harness.move_to, harness.restart = move_to, restart
    yield harness
    harness.log.close()


def ibkr_harness(home: Path, clock: FixedClock) -> Iterator[Harness]:
    """The IBKR adapter talking over a real socket to the loopback gateway, whose clock (and
    synthetic market) moves with the test's."""
    from ibkrkit import IbkrWorld

    with IbkrWorld(home, clock) as world:
        harness = Harness(world.broker, world.log, clock, world.broker.account,
                          world.move_to, lambda: None)  # fmt: skip

        def restart() -> None:
            world.restart()
            harness.broker, harness.log = world.broker, world.log

        harness.restart = restart
        yield harness


# Every broker the contract runs against: the embedded paper broker and the IBKR adapter.
BROKERS: dict[str, Callable[[Path, FixedClock], Iterator[Harness]]] = {
    "paper": paper_harness,
    "ibkr": ibkr_harness,
}
