"""Orders of unknown outcome: found by reconcile, shown with what is known, blocking their symbol
at evaluate and at submit, until an approver resolves them against what the broker holds."""

from __future__ import annotations

import io
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import TRADING_NOW
from helpers import fake_resolution
from wbkit import (
    APPROVER,
    CREDENTIAL,
    PASSPHRASE,
    POLICIES,
    add_approver,
    approved,
    counter_ids,
    intent,
    open_wb,
    parent_orders,
)

from workbench import cli
from workbench.audit import EventType
from workbench.authority import Credential
from workbench.bridge import order_ref
from workbench.brokers.base import BrokerOrder, OrderRole, OrderStatus
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.errors import (
    ApprovalError,
    ConfigError,
    PermitRefusedError,
    UnresolvedOrderError,
)
from workbench.events import OrderResolved, Resolution
from workbench.lifecycle import OrderState, advance
from workbench.models import Decision, RuleId, Side
from workbench.workbench import Workbench

ALICE_WRONG = Credential(APPROVER, "not alice's passphrase")


def crash_after_spending(wb: Workbench, symbol: str = "SPY", qty: int = 10) -> str:
    """What a crash between the token's transaction and the broker call leaves: the token spent
    (OrderSubmitted recorded through the only code that spends tokens), the broker never called
    (tests/test_two_step_commit.py kills a real process at that point)."""
    pid, token = approved(wb, symbol, qty)
    assert wb.approvals is not None
    with wb.log.transaction() as tx:
        wb.approvals.consume(tx, pid, token, order_ref=order_ref(pid, is_propagated=False))
    return pid


def r13(decision: Any) -> str:
    (found,) = [v for v in decision.violations if v.rule_id is RuleId.R13_DUPLICATE_ORDER]
    assert found.severity == "BLOCKER"
    return str(found.message)


# -- reconcile: found, recorded, shown ---------------------------------------------------------


def test_reconcile_records_each_orphan_unknown_with_what_is_known(
    wb: Workbench, clock: FixedClock
) -> None:
    """The proposal, its order, account, orderRef, when its token was spent and what the broker
    says; recorded UNKNOWN (with the run), listed again until resolved, never re-sent."""
    pid = crash_after_spending(wb, "SPY", 10)
    clock.advance(timedelta(minutes=3))
    (orphan,) = wb.reconcile()
    assert (orphan.proposal_id, orphan.symbol, orphan.side, orphan.quantity) == (
        pid, "SPY", Side.BUY, Decimal(10),
    )  # fmt: skip
    assert (orphan.account, orphan.order_ref, orphan.state) == (
        wb.account, f"wb:{pid}", OrderState.UNKNOWN,
    )  # fmt: skip
    assert orphan.spent_at == TRADING_NOW
    assert orphan.broker_answer == f"nothing: it holds no order with orderRef wb:{pid}"
    assert wb.state(pid) is OrderState.UNKNOWN
    (unknown,) = wb.log.events(proposal_id=pid, types=(EventType.ORDER_OUTCOME_UNKNOWN,))
    assert unknown.payload["broker_answer"] == orphan.broker_answer
    assert [o.proposal_id for o in wb.reconcile()] == [pid]  # still there, recorded once
    assert len(wb.log.events(proposal_id=pid, types=(EventType.ORDER_OUTCOME_UNKNOWN,))) == 1
    assert wb.broker.orders() == ()


def test_a_permit_the_broker_refused_is_an_orphan_with_the_refusal_as_its_answer(
    wb: Workbench,
) -> None:
    """A spent token whose permit the broker refused (halted in between) is listed with the
    broker's reason."""
    pid, token = approved(wb)
    assert wb.approvals is not None
    with wb.log.transaction() as tx:
        permit = wb.approvals.consume(tx, pid, token, order_ref=f"wb:{pid}")
    wb.halt("drill", by="ops")
    with pytest.raises(PermitRefusedError, match="HALTED"):
        wb.broker.submit(permit)
    (orphan,) = wb.reconcile()
    assert orphan.broker_answer == "it refused the permit: trading is HALTED (drill)"


# -- blocked until resolved --------------------------------------------------------------------


def test_an_orphan_blocks_new_orders_on_its_symbol_at_evaluate_and_at_submit(
    wb: Workbench,
) -> None:
    """Any new order on the orphan's symbol, either side, any size, is refused naming it — when
    judged, and at submit for one approved before the orphan was found; other symbols trade."""
    early, early_token = approved(wb, "SPY", 3)
    pid = crash_after_spending(wb, "SPY", 10)
    wb.reconcile()
    for qty, side in ((5, Side.BUY), (10, Side.BUY), (1, Side.SELL)):
        outcome = wb.run(intent(wb, "SPY", qty, side, stop=side is Side.BUY), actor="test")
        assert outcome.decision is not None and outcome.decision.decision is Decision.REJECT
        message = r13(outcome.decision)
        assert pid in message and "workbench reconcile resolve" in message
    with pytest.raises(ApprovalError, match=f"R13_DUPLICATE_ORDER: {pid} "):
        wb.submit(early, early_token)
    assert wb.state(early) is OrderState.RISK_REJECTED
    other, other_token = approved(wb, "QQQ", 5)
    assert wb.submit(other, other_token) is OrderState.FILLED
    assert parent_orders(wb) == [other]


def test_cancel_of_an_orphan_says_how_it_is_resolved(wb: Workbench) -> None:
    """Not "unknown order": before reconcile, run reconcile; after it, resolve it first."""
    pid = crash_after_spending(wb)
    with pytest.raises(UnresolvedOrderError, match="workbench reconcile"):
        wb.cancel(pid, actor="ops")
    wb.reconcile()
    with pytest.raises(UnresolvedOrderError, match=r"outcome is unknown.*reconcile resolve"):
        wb.cancel(pid, actor="ops")
    assert wb.state(pid) is OrderState.UNKNOWN


# -- resolved by an approver ---------------------------------------------------------------------


def test_resolving_not_sent_needs_an_approver_and_unblocks_the_symbol(wb: Workbench) -> None:
    """A wrong passphrase changes nothing; alice's records NOT_SENT (MAC'd, final) and SPY
    trades again."""
    pid = crash_after_spending(wb)
    wb.reconcile()
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        wb.resolve(pid, ALICE_WRONG, Resolution.NOT_SENT, reason="checked")
    assert wb.state(pid) is OrderState.UNKNOWN
    assert wb.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="not in TWS") is (
        OrderState.NOT_SENT
    )
    (resolved,) = wb.log.events(proposal_id=pid, types=(EventType.ORDER_RESOLVED,))
    data = resolved.data_as(OrderResolved)
    assert (data.outcome, data.approver, data.reason, resolved.actor) == (
        Resolution.NOT_SENT, APPROVER, "not in TWS", APPROVER,
    )  # fmt: skip
    assert wb.reconcile() == []
    again, token = approved(wb, "SPY", 10)
    assert wb.submit(again, token) is OrderState.FILLED
    with pytest.raises(UnresolvedOrderError, match="not unknown"):
        wb.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="twice")


def test_an_orphan_found_by_resolve_itself_is_recorded_unknown_first(wb: Workbench) -> None:
    """Resolving before any reconcile records the UNKNOWN and the resolution together."""
    pid = crash_after_spending(wb)
    wb.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="not in TWS")
    kinds = [e.type for e in wb.log.events(proposal_id=pid)][-2:]
    assert kinds == ["OrderOutcomeUnknown", "OrderResolved"]


def test_only_an_order_of_unknown_outcome_is_resolved(wb: Workbench) -> None:
    """A filled order, an approved-unsent one and an unknown id are refused, nothing recorded."""
    sent, token = approved(wb)
    wb.submit(sent, token)
    waiting, _ = approved(wb, "QQQ", 5)
    before = wb.log.head()
    for pid in (sent, waiting):
        with pytest.raises(UnresolvedOrderError, match="not unknown"):
            wb.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="x")
    with pytest.raises(Exception, match="nope"):
        wb.resolve("nope", CREDENTIAL, Resolution.NOT_SENT, reason="x")
    assert wb.log.head() == before


class AckLost:
    """The outside world after a lost acknowledgement (an IB Gateway that received the order
    while the connection dropped): it holds orders the workbench never heard back about.
    Everything else is the real paper broker."""

    def __init__(self, real: PaperBroker) -> None:
        self.real = real
        self.received: list[BrokerOrder] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def orders(self) -> tuple[BrokerOrder, ...]:
        return (*self.real.orders(), *self.received)

    def receive(self, wb: Workbench, pid: str, order_id: str) -> None:
        intent_ = wb.intent(pid)
        self.received.append(
            BrokerOrder(
                order_id=order_id, proposal_id=pid, order_ref=f"wb:{pid}", account=wb.account,
                instrument=intent_.instrument, role=OrderRole.PARENT, side=intent_.side,
                quantity=intent_.quantity, order_type=intent_.order_type,
                limit_price=intent_.limit_price, time_in_force=intent_.time_in_force,
                status=OrderStatus.SUBMITTED, created_at=TRADING_NOW, updated_at=TRADING_NOW,
            )
        )  # fmt: skip


def test_sent_as_must_name_the_order_the_broker_holds_for_its_order_ref(
    home: Path, clock: FixedClock
) -> None:
    """Found unknown, then seen at the broker (IB42, with its orderRef): --not-sent is refused
    naming IB42, another proposal's order or a made-up id is refused, IB42 is accepted."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        other, token = approved(wb, "QQQ", 5)
        wb.submit(other, token)
        pid = crash_after_spending(wb)
        wb.reconcile()
    ack_lost = AckLost(PaperBroker.open(home, clock))
    opened = Workbench.open(
        home, ack_lost, policy_dir=POLICIES, clock=clock, log_clock=clock, ids=counter_ids("x")
    )
    with opened as wb, closing(ack_lost.real):
        ack_lost.receive(wb, pid, "IB42")
        (orphan,) = wb.reconcile()
        assert orphan.broker_answer == "it now holds order IB42 (Submitted)"
        with pytest.raises(UnresolvedOrderError, match=r"holds order IB42.*--sent-as IB42"):
            wb.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="x")
        theirs = next(o.order_id for o in ack_lost.real.orders() if o.proposal_id == other)
        for wrong in (theirs, "IB41"):
            with pytest.raises(UnresolvedOrderError, match=f"holds no order '{wrong}'"):
                wb.resolve(pid, CREDENTIAL, Resolution.SENT, broker_order_id=wrong, reason="x")
        assert wb.state(pid) is OrderState.UNKNOWN
        state = wb.resolve(pid, CREDENTIAL, Resolution.SENT, broker_order_id="IB42", reason="TWS")
        assert state is OrderState.CONFIRMED and wb.reconcile() == []
        twin = wb.run(intent(wb, "SPY", 10), actor="test")
        assert twin.decision is not None and f"was sent at 2026-11-18T15:30:00.000000Z ({pid})" in (
            r13(twin.decision)
        )


def test_a_resolution_written_without_the_key_leaves_the_symbol_blocked(wb: Workbench) -> None:
    """Through the public transition table, a resolution with a made-up MAC moves the recorded
    state, but the order stays unresolved: listed by reconcile, its symbol still refused."""
    pid = crash_after_spending(wb)
    wb.reconcile()
    with wb.log.transaction() as tx:
        advance(tx, pid, EventType.ORDER_RESOLVED, fake_resolution(f"wb:{pid}"), actor="mallory")
    assert wb.state(pid) is OrderState.NOT_SENT
    assert [o.proposal_id for o in wb.reconcile()] == [pid]
    outcome = wb.run(intent(wb, "SPY", 5), actor="test")
    assert pid in r13(outcome.decision)


def test_a_proposer_only_handle_cannot_resolve(
    home: Path, clock: FixedClock, wb: Workbench
) -> None:
    """The MCP server's handle holds no authority: resolve is refused before anything."""
    pid = crash_after_spending(wb)
    ro = Workbench.open(home, "paper", policy_dir=POLICIES, clock=clock, proposer_only=True)
    with ro, pytest.raises(ApprovalError, match="read-and-propose only"):
        ro.resolve(pid, CREDENTIAL, Resolution.NOT_SENT, reason="x")
    assert wb.state(pid) is OrderState.SUBMITTED


# -- the command -------------------------------------------------------------------------------


def test_the_reconcile_commands_list_and_resolve(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    wall_clock_at_trading_now: FixedClock,
) -> None:
    """`workbench reconcile` lists the orphan in 100 columns and exits 1; `reconcile resolve`
    with a wrong passphrase exits 1, with alice's exits 0; then reconcile is clean (exit 0)."""
    with open_wb(home, wall_clock_at_trading_now) as wb:
        add_approver(wb)
        pid = crash_after_spending(wb)
    where = ["--home", str(home)]
    assert cli.main(["reconcile", *where]) == 1
    out = capsys.readouterr().out
    assert all(len(line) <= 100 for line in out.splitlines())
    for part in (pid, "BUY 10 SPY", "UNKNOWN", f"orderRef wb:{pid}", "2026-11-18 10:30:00 EST"):
        assert part in out, part
    assert "reconcile resolve ID --not-sent" in out
    resolve = ["reconcile", *where, "resolve", pid, "--not-sent", "--approver", APPROVER]
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong passphrase\n"))
    assert cli.main([*resolve, "--passphrase-stdin"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSPHRASE + "\n"))
    assert cli.main([*resolve, "--passphrase-stdin"]) == 0
    assert f"{pid}: NOT_SENT" in capsys.readouterr().out
    assert cli.main(["reconcile", *where]) == 0


@pytest.mark.parametrize(
    ("pid", "order_id", "reason"),
    [("../../x", None, "r"), ("p" * 65, None, "r"), ("p1", "", "r"), ("p1", "B 1", "r"),
     ("p1", "B" * 65, "r"), ("p1", None, "   "), ("p1", None, "x" * 2001)],
)  # fmt: skip
def test_resolve_with_absurd_input_is_refused_before_anything(
    wb: Workbench, pid: str, order_id: str | None, reason: str
) -> None:
    """A malformed proposal or broker order id, an empty or huge reason: bad input, nothing
    recorded, no passphrase checked."""
    crash_after_spending(wb)
    before = wb.log.head()
    outcome = Resolution.NOT_SENT if order_id is None else Resolution.SENT
    with pytest.raises(ConfigError):
        wb.resolve(pid, CREDENTIAL, outcome, broker_order_id=order_id, reason=reason)
    assert wb.log.head() == before


@pytest.mark.parametrize(
    "args",
    [
        ["p1", "--approver", APPROVER],  # neither outcome
        ["p1", "--not-sent", "--sent-as", "B1", "--approver", APPROVER],  # both
        ["p1", "--not-sent"],  # no approver
        ["--not-sent", "--approver", APPROVER],  # no proposal
    ],
)
def test_reconcile_resolve_with_bad_arguments_is_bad_input(
    home: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing or contradictory arguments: exit 2 with argparse's one line, nothing read."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["reconcile", "resolve", *args, "--home", str(home)])
    assert exited.value.code == 2
