"""Auto-commit of trivial rebalances: off by default, and inside every bound only when on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import enabled_policies
from wbkit import POLICIES, add_approver, intent, open_wb, parent_orders

from workbench.audit import EventType
from workbench.autocommit import refusal
from workbench.clock import FixedClock
from workbench.errors import ApprovalError
from workbench.lifecycle import OrderState
from workbench.models import InstrumentType, OrderType, Source, TradingState
from workbench.policy import AutoCommitRules
from workbench.workbench import Workbench

RULES = AutoCommitRules(
    enabled=True,
    allowed_symbols=frozenset({"SPY", "IEF"}),
    max_pct_of_nav=Decimal("0.005"),
    window_start=time(10, 0),
    window_end=time(15, 30),
    timezone="America/New_York",
)
IN_WINDOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # 10:30 in New York


def judge(intent_obj: Any, **overrides: Any) -> str | None:
    args: dict[str, Any] = {
        "decision": "APPROVE",
        "severities": ["MINOR"],
        "notional": Decimal(4000),
        "nav": Decimal(1_000_000),
        "state": TradingState.ACTIVE,
        "now": IN_WINDOW,
    }
    args.update(overrides)
    rules = args.pop("rules", RULES)
    return refusal(rules, intent_obj, **args)


@pytest.fixture
def wb(home: Path, clock: FixedClock) -> Iterator[Workbench]:
    """The real facade with the shipped policies (auto-commit off)."""
    with open_wb(home, clock) as bench:
        yield bench


def test_a_trivial_rebalance_passes_every_bound(wb: Any) -> None:
    """A small rule-based LIMIT buy of an allowlisted ETF inside the window qualifies."""
    assert judge(intent(wb, "SPY", 5)) is None


@pytest.mark.parametrize(
    ("change", "overrides", "why"),
    [
        ({}, {"rules": RULES.model_copy(update={"enabled": False})}, "off"),
        ({"source": Source.LLM}, {}, "rule-based"),
        ({"is_propagated": True}, {}, "propagated"),
        ({"symbol": "GLD"}, {}, "allowlist"),
        ({}, {"decision": "REVIEW"}, "REVIEW"),
        ({}, {"severities": ["MAJOR"]}, "review"),
        ({}, {"state": TradingState.REDUCING}, "REDUCING"),
        ({}, {"now": datetime(2026, 11, 18, 20, 45, tzinfo=UTC)}, "outside the window"),
        ({}, {"notional": Decimal(5001)}, "above"),
        ({}, {"nav": Decimal(0)}, "NAV"),
    ],
)
def test_any_bound_broken_means_a_person_decides(
    wb: Any, change: dict[str, Any], overrides: dict[str, Any], why: str
) -> None:
    """Each bound on its own stops auto-commit, with a reason naming it."""
    symbol = change.pop("symbol", "SPY")
    order = intent(wb, symbol, 5, **change)
    reason = judge(order, **overrides)
    assert reason is not None and why in reason


def test_only_etfs_and_limit_orders_qualify(wb: Any) -> None:
    """A stock or a non-LIMIT order never auto-commits, even when allowlisted."""
    order = intent(wb, "SPY", 5)
    stock = order.model_copy(
        update={"instrument": order.instrument.model_copy(update={"type": InstrumentType.STK})}
    )
    stop_limit = order.model_copy(
        update={"order_type": OrderType.STP_LMT, "stop_price": order.limit_price}
    )
    assert "ETF" in (judge(stock) or "")
    assert "LIMIT" in (judge(stop_limit) or "")


def test_off_by_default_so_a_person_must_approve(wb: Any) -> None:
    """With the shipped policy a trivial rebalance waits for a person and nothing is sent."""
    assert wb.policy.approval.auto_commit.enabled is False
    outcome = wb.run(intent(wb, "SPY", 5), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED
    assert parent_orders(wb) == []
    assert not wb.log.events(types=(EventType.APPROVAL_GRANTED,))


def test_enabled_trivial_rebalance_is_sent_and_audited_as_auto_commit(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """When on, a trivial rebalance is approved as auto-commit, submitted and filled."""
    with open_wb(home, clock, policies=enabled_policies(tmp_path)) as wb:
        outcome = wb.run(intent(wb, "SPY", 5), actor="test")
        assert outcome.state is OrderState.FILLED
        assert parent_orders(wb) == [outcome.proposal_id]
        grant = wb.log.events(proposal_id=outcome.proposal_id, types=(EventType.APPROVAL_GRANTED,))[
            0
        ]
        assert grant.actor == "auto-commit"
        assert grant.payload["auto_commit"] is True and grant.payload["approvers"] == [
            "auto-commit"
        ]
        assert wb.log.verify().ok


def test_enabled_but_too_large_waits_for_a_person(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """An order above 0.5% of NAV is not auto-committed even when auto-commit is on."""
    with open_wb(home, clock, policies=enabled_policies(tmp_path)) as wb:
        outcome = wb.run(intent(wb, "SPY", 20), actor="test")  # ~13,000 > 5,000
        assert outcome.state is OrderState.APPROVAL_REQUESTED
        assert parent_orders(wb) == []
        with pytest.raises(ApprovalError, match="auto-commit refused"):
            wb.approvals.auto_approve(outcome.proposal_id)


def test_enabled_but_halted_sends_nothing(home: Path, clock: FixedClock, tmp_path: Path) -> None:
    """While HALTED the gate rejects, so nothing is auto-committed or sent."""
    with open_wb(home, clock, policies=enabled_policies(tmp_path)) as wb:
        wb.halt("test", by="ops")
        outcome = wb.run(intent(wb, "SPY", 5), actor="test")
        assert outcome.state is OrderState.RISK_REJECTED
        assert parent_orders(wb) == []


def test_nobody_may_register_as_auto_commit(wb: Any) -> None:
    """The auto-commit approver name is reserved: a person cannot pose as it."""
    with pytest.raises(ApprovalError, match="reserved"):
        add_approver(wb, "auto-commit")


def test_caller_rules_cannot_switch_auto_commit_on(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """No constructor takes rules from a caller; a facade handed a policy object with auto-commit
    on while the file says off still waits for a person; and with the file on, a decision made
    under a hand-edited policy (another hash) is refused."""
    from workbench.approval import Approvals

    with open_wb(home, clock) as wb:
        assert wb.authority is not None
        with pytest.raises(TypeError):
            Approvals(wb.log, wb.authority, clock, policy_dir=POLICIES, auto_commit=RULES)  # type: ignore[call-arg]
        approval = wb.policy.approval.model_copy(update={"auto_commit": RULES})
        wb.policy = wb.policy.model_copy(update={"approval": approval})
        outcome = wb.run(intent(wb, "SPY", 5), actor="test")
        assert outcome.state is OrderState.APPROVAL_REQUESTED and parent_orders(wb) == []
        assert wb.approvals is not None
        with pytest.raises(ApprovalError, match="auto-commit is off"):
            wb.approvals.auto_approve(outcome.proposal_id)
    with open_wb(tmp_path / "other", clock, policies=enabled_policies(tmp_path)) as wb:
        limits = wb.policy.limits.model_copy(update={"max_positions": 29})
        wb.policy = wb.policy.model_copy(update={"limits": limits})
        outcome = wb.run(intent(wb, "SPY", 5), actor="test")
        assert outcome.state is OrderState.APPROVAL_REQUESTED and parent_orders(wb) == []
        assert wb.approvals is not None
        with pytest.raises(ApprovalError, match="another policy than the one on file"):
            wb.approvals.auto_approve(outcome.proposal_id)
