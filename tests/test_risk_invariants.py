"""Hypothesis invariants: whatever the order, an APPROVE never breaks a limit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from unittest import mock

from gatekit import COSTS, NOW, POLICY, D, history, intent, portfolio, position, quote, stock, tweak
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from workbench.errors import SimulationError
from workbench.models import (
    Decision,
    InstrumentType,
    OrderType,
    ProtectiveStop,
    RuleId,
    Side,
    TradingState,
)
from workbench.risk import evaluate, gate
from workbench.sim import simulate

SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "ES"]
PRICES = {"AAPL": D(100), "MSFT": D(400), "SPY": D(500), "QQQ": D(450), "ES": D(5000)}
BOOK = portfolio(
    positions=(position("MSFT", "50", "400"), position("SPY", "40", "500")),
    cash="250000",
)


@st.composite
def scenes(draw: st.DrawFn) -> dict[str, Any]:
    """A random order on a random symbol, state and policy variant."""
    symbol = draw(st.sampled_from(SYMBOLS))
    kinds = [InstrumentType.STK, InstrumentType.ETF] * 3 + list(InstrumentType)
    kind = InstrumentType.FUT if symbol == "ES" else draw(st.sampled_from(kinds))
    ref = PRICES[symbol]
    side = draw(st.sampled_from(Side))
    order_type = draw(st.sampled_from([OrderType.LMT, OrderType.MKT, OrderType.STP_LMT]))
    offset = D(draw(st.integers(-4, 4) | st.integers(-30, 30))) / 100
    price = (ref * (1 + offset)).quantize(D("0.01"))
    gap = D(draw(st.integers(min_value=1, max_value=20))) / 100
    usual = min(ref, price) * (1 - gap) if side is Side.BUY else max(ref, price) * (1 + gap)
    odd = max(ref, price) * (1 + gap) if side is Side.BUY else min(ref, price) * (1 - gap)
    stop_price = draw(st.sampled_from([usual] * 4 + [odd, None]))
    order = intent(
        instrument=stock(symbol, type=kind),
        side=side,
        quantity=D(draw(st.integers(min_value=1, max_value=80) | st.integers(1, 400))),
        order_type=order_type,
        limit_price=None if order_type is OrderType.MKT else price,
        stop_price=price if order_type is OrderType.STP_LMT else None,
        protective_stop=None if stop_price is None else ProtectiveStop(stop_price=stop_price),
        is_propagated=draw(st.sampled_from([False] * 9 + [True])),
    )
    policy = tweak(
        POLICY,
        limits__allow_shorts=draw(st.booleans()),
        limits__allow_margin=draw(st.booleans()),
        limits__max_positions=draw(st.integers(min_value=2, max_value=30)),
        orders__allowed_order_types=["LMT", "STP_LMT", "MKT"],
        orders__require_limit_orders=draw(st.booleans()),
        orders__price_collar_pct=D("0.25"),
    )
    state = draw(st.sampled_from([TradingState.ACTIVE] * 3 + list(TradingState)))
    market = quote(symbol, str(ref - D("0.05")), str(ref + D("0.05")), instrument=order.instrument)
    return {"intent": order, "policy": policy, "state": state, "market": market}


def decide(scene: dict[str, Any]) -> tuple[Any, Any]:
    """Simulate and evaluate a scene (skipping inputs the simulator rightly refuses)."""
    try:
        sim = simulate(scene["intent"], BOOK, scene["market"], COSTS)
    except SimulationError:
        assume(False)
        raise
    decision = evaluate(
        scene["intent"], sim, BOOK, scene["market"], scene["policy"], scene["state"], history(), NOW
    )
    return sim, decision


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_an_approve_never_breaks_a_limit(scene: dict[str, Any]) -> None:
    """On APPROVE: notional, weight, positions within limits; instrument allowed; state allows it;
    cash not negative unless margin is allowed."""
    sim, decision = decide(scene)
    if decision.decision is not Decision.APPROVE:
        return
    policy, order = scene["policy"], scene["intent"]
    assert sim.notional <= policy.limits.max_notional_per_trade
    assert abs(sim.weight_after) <= policy.limits.max_position_weight
    assert sim.positions_after <= max(policy.limits.max_positions, 2)  # 2 held before
    assert order.instrument.type in policy.instruments.allowed_types
    assert order.instrument.exchange in policy.instruments.allowed_exchanges
    assert order.instrument.currency in policy.instruments.allowed_currencies
    assert scene["state"] is TradingState.ACTIVE or (
        scene["state"] is TradingState.REDUCING and not sim.opens_or_increases
    )
    assert sim.cash_after >= 0 or policy.limits.allow_margin
    assert sim.position_after >= 0 or policy.limits.allow_shorts
    assert not order.is_propagated


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenes(),
    st.sampled_from(list(RuleId)),
    st.sampled_from([ValueError, KeyError, ZeroDivisionError, ArithmeticError]),
)
def test_a_gate_fed_a_rule_that_raises_never_approves(
    scene: dict[str, Any], broken_rule: RuleId, error: type[Exception]
) -> None:
    """Whichever rule raises, whatever it raises, the decision is REJECT under that rule's id."""

    def broken(_: object) -> tuple[()]:
        raise error("injected fault")

    rules = tuple((rid, broken if rid is broken_rule else f) for rid, f in gate.RULES)
    with mock.patch.object(gate, "RULES", rules):
        _, decision = decide(scene)
    assert decision.decision is Decision.REJECT
    assert any(v.rule_id is broken_rule and "raised" in v.message for v in decision.violations)


def test_max_positions_invariant_counts_only_new_positions() -> None:
    """Adding to a held position passes even at the position cap (guards the invariant above)."""
    order = intent(instrument=stock("MSFT"), quantity=Decimal(5), limit_price=D(400),
                   protective_stop=ProtectiveStop(stop_price=D(380)))  # fmt: skip
    market = quote("MSFT", "399.90", "400.10")
    sim = simulate(order, BOOK, market, COSTS)
    policy = tweak(POLICY, limits__max_positions=2)
    decision = evaluate(order, sim, BOOK, market, policy, TradingState.ACTIVE, history(), NOW)
    assert decision.decision is Decision.APPROVE
