"""The per-batch facts: reused only for the very same inputs, and never changing a decision."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from gatekit import COSTS, NOW, POLICY, D, history, intent, portfolio, quote, stock, tweak
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.models import Decision, ProtectiveStop, RuleId, Side, TradingState
from workbench.risk import History, NavPoint, Submission, WorkingOrder, evaluate
from workbench.risk import facts as facts_module
from workbench.risk.calendar import trading_day
from workbench.risk.facts import facts_for
from workbench.risk.history import close_baseline, drawdown
from workbench.sim import simulate

SYMBOLS = ["AAPL", "MSFT", "SPY"]


def test_facts_are_reused_only_for_the_very_same_batch() -> None:
    """Same objects and instant: the same facts; an equal copy, other zone or state: fresh ones."""
    book, past = portfolio(), history()
    first = facts_for(POLICY, book, past, NOW, TradingState.ACTIVE)
    assert facts_for(POLICY, book, past, NOW, TradingState.ACTIVE) is first
    assert facts_for(POLICY, book, past, NOW + timedelta(0), TradingState.ACTIVE) is first
    for other in (
        facts_for(POLICY, portfolio(), past, NOW, TradingState.ACTIVE),
        facts_for(POLICY, book, history(), NOW, TradingState.ACTIVE),
        facts_for(tweak(POLICY), book, past, NOW, TradingState.ACTIVE),
        facts_for(POLICY, book, past, NOW.astimezone(timezone(timedelta(hours=-5))),
                  TradingState.ACTIVE),
        facts_for(POLICY, book, past, NOW, TradingState.REDUCING),
    ):  # fmt: skip
        assert other is not first


def test_facts_match_the_history_arithmetic() -> None:
    """Daily loss and drawdown are the history functions' figures, to the digit."""
    past = History(
        nav_points=(NavPoint(NOW - timedelta(hours=25), D(300000)),
                    NavPoint(NOW - timedelta(hours=2), D(310000))),
        nav_peak=D(320000),
    )  # fmt: skip
    book = portfolio()
    facts = facts_for(POLICY, book, past, NOW, TradingState.ACTIVE)
    day = trading_day(NOW)
    baseline = close_baseline(past.nav_points, day.previous_open, day.open, NOW)
    assert baseline is not None and facts.daily_loss is not None
    assert facts.daily_loss.loss == drawdown(baseline, book.net_liquidation)
    assert facts.drawdown.loss == drawdown(D(320000), book.net_liquidation)
    assert facts.portfolio_age == (NOW - book.timestamp).total_seconds()


def test_a_failing_figure_fails_its_rule_every_time() -> None:
    """An unknown calendar raises inside R11 on every order; the failure is never remembered."""
    policy = tweak(POLICY, trading_window__calendars={"SMART": "NOPE"})
    book, past, market = portfolio(), history(), quote()
    for qty in (20, 21):
        order = intent(quantity=D(qty))
        sim = simulate(order, book, market, COSTS)
        decision = evaluate(order, sim, book, market, policy, TradingState.ACTIVE, past, NOW)
        assert decision.decision is Decision.REJECT
        assert any(
            v.rule_id is RuleId.R11_TRADING_WINDOW and "raised" in v.message
            for v in decision.violations
        )


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    """A batch (history, state, policy) with losses, submissions and working orders in play."""
    navs = draw(st.lists(st.integers(250_000, 330_000), min_size=0, max_size=4))
    points = tuple(
        NavPoint(NOW - timedelta(hours=30 - 7 * k), D(nav)) for k, nav in enumerate(navs)
    )
    sent = tuple(
        Submission(NOW - timedelta(seconds=draw(st.integers(-5, 900))),
                   draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(Side)),
                   D(draw(st.sampled_from([10, 20]))), "p")
        for _ in range(draw(st.integers(0, 12)))
    )  # fmt: skip
    working = tuple(
        WorkingOrder(draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(Side)),
                     D(draw(st.sampled_from([10, 20]))), "w")
        for _ in range(draw(st.integers(0, 3)))
    )  # fmt: skip
    peak = draw(st.none() | st.integers(250_000, 400_000).map(D))
    policy = tweak(
        POLICY,
        flow__max_submits_per_minute=draw(st.integers(1, 5)),
        losses__max_daily_loss_pct=D(draw(st.sampled_from(["0.01", "0.05"]))),
        losses__max_drawdown_pct=D(draw(st.sampled_from(["0.05", "0.2"]))),
    )
    return {
        "past": History(nav_points=points, nav_peak=peak, submissions=sent,
                        working_orders=working),
        "state": draw(st.sampled_from(TradingState)),
        "policy": policy,
        "now": NOW + timedelta(hours=draw(st.sampled_from([0, 0, 6, 72]))),
        "orders": [
            (draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(Side)),
             draw(st.sampled_from([10, 20, 30])))
            for _ in range(draw(st.integers(1, 4)))
        ],
    }  # fmt: skip


def _order(symbol: str, side: Side, qty: int) -> Any:
    stop = ProtectiveStop(stop_price=D(95)) if side is Side.BUY else None
    return intent(instrument=stock(symbol), side=side, quantity=D(qty), protective_stop=stop)


@settings(max_examples=150, deadline=None)
@given(batches())
def test_remembered_facts_never_change_a_decision(batch: dict[str, Any]) -> None:
    """Each order of a batch gets the same decision from warm (shared) facts as from cold ones."""
    now, policy, state, past = batch["now"], batch["policy"], batch["state"], batch["past"]
    book = portfolio(at=now - timedelta(seconds=30))
    facts_module._LAST.clear()
    for symbol, side, qty in batch["orders"]:
        warm = facts_for(policy, book, past, now, state)
        market = quote(symbol, "99.95", "100.05", timestamp=now - timedelta(seconds=5))
        order = _order(symbol, side, qty)
        sim = simulate(order, book, market, COSTS)
        shared = evaluate(order, sim, book, market, policy, state, past, now)
        assert facts_for(policy, book, past, now, state) is warm
        facts_module._LAST.clear()
        fresh = evaluate(order, sim, book, market, policy, state, past, now)
        assert shared == fresh and shared.model_dump() == fresh.model_dump()
