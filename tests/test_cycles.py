"""One proposal per cycle, symbol and side, even with two cycles running at once on one home."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import enabled_policies
from wbkit import POLICIES, counter_ids, intent, open_wb, parent_orders

from workbench.audit import EventType
from workbench.brokers.base import OrderRole
from workbench.clock import FixedClock
from workbench.models import OrderIntent, Side
from workbench.workbench import Workbench

DAY = "daily:2026-11-18"
# Liquid ETFs the auto-commit allowlist holds, each small enough (< 0.5% of NAV) to auto-commit.
BASKET = (("SPY", 3), ("GLD", 4), ("TLT", 5), ("AGG", 6), ("IEF", 5), ("VEA", 9))


def _cycle_when_released(
    home: str, policies: str, now: str, intents: list[OrderIntent], start: Any, results: Any
) -> None:
    clock = FixedClock(datetime.fromisoformat(now))
    ids = counter_ids(f"w{mp.current_process().pid}-")
    with Workbench.open(
        home, "paper", policy_dir=policies, clock=clock, log_clock=clock, ids=ids
    ) as wb:
        start.wait()
        outcomes = wb.run_cycle(intents, actor="daily-cycle", correlation_id=DAY)
        results.put([(o.intent.symbol, o.state.value) for o in outcomes])


def _race(home: Path, policies: Path, clock: FixedClock, intents: list[OrderIntent]) -> list[Any]:
    """Run the same cycle in two processes released together by a barrier."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    args = (str(home), str(policies), clock.now().isoformat(), intents, start, results)
    procs = [ctx.Process(target=_cycle_when_released, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    done = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return done


def _basket(wb: Workbench) -> list[OrderIntent]:
    buys = [intent(wb, symbol, qty) for symbol, qty in BASKET]
    return [*buys, intent(wb, "SPY", 1, Side.SELL, stop=False)]  # a seventh key: SPY/SELL


def test_two_cycles_at_once_on_one_home_make_one_set_of_proposals(
    home: Path, clock: FixedClock
) -> None:
    """Two processes run the same day's cycle at the same moment: every symbol and side is
    proposed once, by one of them; the other skips it."""
    with open_wb(home, clock) as wb:
        intents = _basket(wb)
    done = _race(home, POLICIES, clock, intents)
    assert sum(len(d) for d in done) == len(intents)
    with open_wb(home, clock, counter_ids(start=100)) as wb:
        proposed = wb.log.events(types=(EventType.ORDER_PROPOSED,), correlation_id=DAY)
        assert len(proposed) == len(intents)
        keys = sorted((o.symbol, o.side.value) for o in intents)
        assert sorted(zip(wb.proposals()["symbol"], wb.proposals()["side"], strict=True)) == keys
        assert wb.log.verify().ok


def test_two_cycles_at_once_with_auto_commit_send_one_order_per_symbol(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """With auto-commit on, the same race sends each symbol's order once: one parent order per
    symbol at the broker, never a duplicate fill."""
    policies = enabled_policies(tmp_path)
    with open_wb(home, clock, policies=policies) as wb:
        buys = [intent(wb, symbol, qty) for symbol, qty in BASKET]
    _race(home, policies, clock, buys)
    with open_wb(home, clock, counter_ids(start=100), policies=policies) as wb:
        parents = [o for o in wb.broker.orders() if o.role is OrderRole.PARENT]
        assert sorted(o.instrument.symbol for o in parents) == sorted(s for s, _ in BASKET)
        assert sorted(o.proposal_id for o in parents) == sorted(parent_orders(wb))
        assert wb.log.verify().ok


@pytest.mark.parametrize("twice", [1, 3])
def test_an_intent_repeated_within_one_cycle_is_proposed_once(wb: Workbench, twice: int) -> None:
    """The same symbol and side listed several times in one call is proposed once."""
    intents = [intent(wb, "SPY", 2)] * twice + [intent(wb, "QQQ", 2)]
    outcomes = wb.run_cycle(intents, actor="daily", correlation_id=DAY)
    assert [o.intent.symbol for o in outcomes] == ["SPY", "QQQ"]
