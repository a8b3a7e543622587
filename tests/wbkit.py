"""Builders for facade tests: a real Workbench on the paper broker, approvers and valid intents.

Everything here is the real thing — the SQLite home, the paper broker, the policies in
``policies/`` — so a test that uses it exercises the same path a notebook or the CLI does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from workbench.authority import Credential
from workbench.brokers.base import OrderRole
from workbench.clock import FixedClock
from workbench.lifecycle import OrderState
from workbench.models import OrderIntent, OrderType, ProtectiveStop, Side, Source
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
APPROVER, PASSPHRASE = "alice", "correct horse battery"
CREDENTIAL = Credential(APPROVER, PASSPHRASE)
CENT = Decimal("0.01")


def counter_ids(prefix: str = "p", start: int = 1) -> Callable[[], str]:
    """Deterministic proposal ids ``p1``, ``p2``, … (readable in failure messages)."""
    numbers = itertools.count(start)
    return lambda: f"{prefix}{next(numbers)}"


def open_wb(
    home: Path, clock: FixedClock, ids: Callable[[], str] | None = None, policies: Path = POLICIES
) -> Workbench:
    """The real facade on ``home`` (created if missing) with the paper broker and the
    repository's policies; ``clock`` is both market time and the log's clock (a test's)."""
    return Workbench.open(
        home,
        "paper",
        policy_dir=policies,
        clock=clock,
        log_clock=clock,
        ids=ids or counter_ids(),
        create=True,
    )


def add_approver(wb: Workbench, name: str = APPROVER, passphrase: str = PASSPHRASE) -> None:
    """Enrol an approver on the workbench's home: the first bootstraps it, later ones are
    enrolled by ``APPROVER`` (who must be the first)."""
    assert wb.authority is not None
    new = Credential(name, passphrase)
    if not wb.authority.approvers():
        wb.authority.bootstrap(new)
    else:
        wb.authority.enrol(new, by=CREDENTIAL)


def intent(
    wb: Workbench,
    symbol: str = "SPY",
    quantity: int = 10,
    side: Side = Side.BUY,
    *,
    stop: bool = True,
    is_propagated: bool = False,
    source: Source = Source.RULE,
) -> OrderIntent:
    """A limit order the gate approves: priced at the touch, a stop 3% away when ``stop``."""
    quote = wb.market_snapshot(symbol, record=False)
    assert quote.bid is not None and quote.ask is not None
    touch = quote.ask if side is Side.BUY else quote.bid
    away = Decimal("0.97") if side is Side.BUY else Decimal("1.03")
    protective = ProtectiveStop(stop_price=(touch * away).quantize(CENT, ROUND_HALF_UP))
    return OrderIntent(
        account=wb.account,
        instrument=wb.instrument(symbol),
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.LMT,
        limit_price=touch.quantize(CENT, ROUND_HALF_UP),
        protective_stop=protective if stop else None,
        source=source,
        is_propagated=is_propagated,
        reason="facade test",
    )


def approved(
    wb: Workbench, symbol: str = "SPY", qty: int = 10, side: Side = Side.BUY
) -> tuple[str, str]:
    """Run an intent the gate approves to APPROVAL_REQUESTED and approve it as ``APPROVER``
    (a buy with its stop): (proposal id, token)."""
    outcome = wb.run(intent(wb, symbol, qty, side, stop=side is Side.BUY), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED, outcome
    grant = wb.approve(outcome.proposal_id, CREDENTIAL)
    return outcome.proposal_id, grant.token


def parent_orders(wb: Workbench) -> list[str]:
    """Proposal ids of the parent orders the broker has received, in the order it got them."""
    return [
        o.proposal_id
        for o in wb.broker.orders()
        if o.role is OrderRole.PARENT and o.proposal_id is not None
    ]
