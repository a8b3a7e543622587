"""The trade simulator: exact, deterministic, and refusing to invent prices or divide by zero."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal

import pytest
from gatekit import COSTS, D, intent, portfolio, position, quote, stock
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import canonical
from workbench.errors import MarketDataError, SimulationError
from workbench.exposures import ExposureAfter
from workbench.fastpath import per_object
from workbench.intent_hash import intent_hash, intent_json, plain_decimal
from workbench.models import (
    IntentConstraints,
    OrderIntent,
    OrderType,
    ProtectiveStop,
    Side,
    SimResult,
    Source,
)
from workbench.sim import _prices, fees, simulate, slippage_per_share


def test_buy_moves_cash_position_and_exposure() -> None:
    """A BUY pays notional, fees and slippage from cash and adds the position at the reference."""
    sim = simulate(intent(), portfolio(), quote(), COSTS)
    assert sim.reference_price == D(100)
    assert sim.notional == D("2002.00")  # 20 x limit 100.10, the worst price for a buy
    assert sim.fees == D("1.00") and sim.estimated_slippage == D("1.00")
    assert sim.cash_after == D(250000) - D("2002.00") - D(2)
    assert sim.position_before == 0 and sim.position_after == 20
    assert sim.exposure_by_symbol_after["AAPL"] == D(2000)
    assert sim.exposure_by_symbol_after["MSFT"] == D(20000)
    assert sim.positions_after == 3 and sim.opens_or_increases
    assert sim.nav_after == D(290000) - D(2) - D(2)  # fees+slippage and the 0.10 paid over mid
    assert sim.concentration_after == D(20000) / sim.nav_after
    assert sim.leverage_after == D(42000) / sim.nav_after


def test_same_inputs_give_the_same_result() -> None:
    """Two simulations of the same inputs are equal, down to their canonical JSON."""
    a = simulate(intent(), portfolio(), quote(), COSTS)
    b = simulate(intent(), portfolio(), quote(), COSTS)
    assert a == b and canonical.dumps(a) == canonical.dumps(b)


def test_constructed_result_equals_a_validated_one() -> None:
    """The hot-path SimResult (``model_construct``) sets every field, equals the same figures
    validated by pydantic, and is frozen."""
    sim = simulate(intent(), portfolio(), quote(), COSTS)
    validated = SimResult.model_validate(sim.model_dump())
    assert sim == validated and sim.model_dump() == validated.model_dump()
    with pytest.raises(Exception, match="frozen"):
        sim.notional = D(0)  # type: ignore[misc]
    assert sim.model_fields_set == set(SimResult.model_fields)


def test_sell_more_than_held_goes_short() -> None:
    """Selling 70 MSFT with 50 held leaves -20, counts as opening, and needs margin."""
    order = intent(
        instrument=stock("MSFT"), side=Side.SELL, quantity=D(70), limit_price=D(399),
        protective_stop=None,
    )  # fmt: skip
    sim = simulate(order, portfolio(), quote("MSFT", "399.90", "400.10"), COSTS)
    assert sim.position_after == -20 and sim.opens_or_increases
    assert sim.cash_after > sim.cash_before  # a sale brings cash in, at the worst price 399
    assert sim.exposure_by_symbol_after["MSFT"] == D(-20) * D(400)
    assert sim.margin_impact == COSTS.initial_margin_rate * (D(8000) - D(20000))


def test_reducing_sell_does_not_count_as_opening() -> None:
    """Selling part of a long position reduces it and is not an opening order."""
    order = intent(instrument=stock("MSFT"), side=Side.SELL, limit_price=D(400))
    sim = simulate(order, portfolio(), quote("MSFT", "399.90", "400.10"), COSTS)
    assert sim.position_after == 30 and not sim.opens_or_increases
    assert sim.margin_impact < 0


@pytest.mark.parametrize(
    ("quantity", "notional", "expected"),
    [
        ("10", "1000", "1.00"),  # 0.05 per share, raised to the 1.00 minimum
        ("1000", "100000", "5.00"),  # 0.005 x 1000
        ("1", "50", "0.50"),  # the 1% cap applies last: 0.50 < 1.00 minimum
    ],
)
def test_fees_per_share_with_min_and_cap(quantity: str, notional: str, expected: str) -> None:
    """Fees are per share, at least the minimum, at most 1% of notional, to the cent."""
    assert fees(D(quantity), D(notional), COSTS) == D(expected)


def test_fees_round_half_up_to_the_cent() -> None:
    """A fee of exactly half a cent rounds up."""
    costs = COSTS.model_copy(update={"per_share": D("0.335"), "min_per_order": D(0)})
    assert fees(D(3), D(10000), costs) == D("1.01")  # 1.005 -> 1.01


def test_slippage_uses_market_impact_when_it_exceeds_half_spread() -> None:
    """With thin volume, k·notional/volume per share beats half the spread."""
    thin = quote(avg_daily_volume=D(1000))
    sim = simulate(intent(), portfolio(), thin, COSTS)
    per_share = COSTS.slippage_k * D("2002.00") / D(1000)
    assert sim.estimated_slippage == (D(20) * per_share).quantize(D("0.01"))


def test_slippage_without_volume_uses_the_spread_alone() -> None:
    """No average volume: the slippage is half the spread per share."""
    sim = simulate(intent(), portfolio(), quote(avg_daily_volume=None), COSTS)
    assert sim.estimated_slippage == D("1.00")


def test_no_spread_and_no_volume_is_a_market_data_error() -> None:
    """A last-only quote without volume cannot price slippage: MarketDataError."""
    bare = quote(bid=None, ask=None, last=D(100), avg_daily_volume=None)
    with pytest.raises(MarketDataError, match="slippage"):
        simulate(intent(), portfolio(), bare, COSTS)


def test_missing_quote_is_a_market_data_error() -> None:
    """A quote with no bid, ask, last or close raises MarketDataError, never a made-up price."""
    with pytest.raises(MarketDataError, match="no reference price"):
        simulate(intent(), portfolio(), quote(bid=None, ask=None), COSTS)


def test_quote_for_another_symbol_is_a_market_data_error() -> None:
    """Simulating AAPL against an MSFT quote raises MarketDataError."""
    with pytest.raises(MarketDataError, match="quote is for MSFT"):
        simulate(intent(), portfolio(), quote("MSFT"), COSTS)


@pytest.mark.parametrize("nav", ["0", "-1000"])
def test_zero_or_negative_nav_is_a_simulation_error(nav: str) -> None:
    """NAV at or below zero raises SimulationError instead of dividing by it."""
    with pytest.raises(SimulationError, match="NAV"):
        simulate(intent(), portfolio(nav=nav), quote(), COSTS)


def test_account_and_currency_mismatch_are_simulation_errors() -> None:
    """An intent for another account, or in another currency, is not simulated."""
    with pytest.raises(SimulationError, match="account"):
        simulate(intent(account="DU999"), portfolio(), quote(), COSTS)
    eur = intent(instrument=stock("AAPL", currency="EUR"))
    with pytest.raises(SimulationError, match="FX"):
        simulate(eur, portfolio(), quote(instrument=stock("AAPL", currency="EUR")), COSTS)


texts = st.text(max_size=40)
money = st.decimals(min_value=D("0.01"), max_value=D(100000), places=4)


@settings(max_examples=300, deadline=None)
@given(
    reason=texts,
    quantity=st.decimals(min_value=D("0.0001"), max_value=D(10**6), places=4),
    limit=money,
    stop=st.none() | money,
    slip=st.none() | st.decimals(min_value=0, max_value=10000, places=2),
    propagated=st.booleans(),
    tag=st.from_regex(r"[A-Za-z0-9_.:\-]{0,20}", fullmatch=True),
    con_id=st.none() | st.integers(min_value=1, max_value=10**12),
)
def test_fast_intent_json_matches_canonical_json(
    reason: str,
    quantity: Decimal,
    limit: Decimal,
    stop: Decimal | None,
    slip: Decimal | None,
    propagated: bool,
    tag: str,
    con_id: int | None,
) -> None:
    """The simulator's intent writer produces exactly the canonical JSON the intent hash uses."""
    order = intent(
        reason=reason, quantity=quantity, order_type=OrderType.STP_LMT, limit_price=limit,
        stop_price=limit, protective_stop=None if stop is None else ProtectiveStop(stop_price=stop),
        constraints=IntentConstraints(max_slippage_bps=slip), is_propagated=propagated,
        strategy_tag=tag, instrument=stock("BRK.B", con_id=con_id), source=Source.LLM,
    )  # fmt: skip
    assert intent_json(order) == canonical.dumps(order)
    assert intent_hash(order) == order.intent_hash


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_plain_decimal_matches_canonical(value: Decimal) -> None:
    """The fast decimal writer agrees with canonical.decimal_str on every finite Decimal."""
    assert plain_decimal(value) == canonical.decimal_str(value)


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(Side),
    quantity=st.integers(min_value=1, max_value=500),
    offset=st.integers(min_value=-10, max_value=10),
    symbol=st.sampled_from(["AAPL", "MSFT", "SPY"]),
)
def test_cash_identity_and_determinism(side: Side, quantity: int, offset: int, symbol: str) -> None:
    """Cash after = cash ∓ quantity × worst price − fees − slippage, the same on every run."""
    book = portfolio(positions=(position("MSFT", "50", "400"), position("SPY", "40", "500")))
    market = quote(symbol)
    ref = market.reference_price
    assert ref is not None
    limit = ref * (1 + D(offset) / 100)
    order = intent(instrument=stock(symbol), side=side, quantity=D(quantity), limit_price=limit)
    sim = simulate(order, book, market, COSTS)
    worst = max(ref, limit) if side is Side.BUY else min(ref, limit)
    expected = book.cash - side.sign * D(quantity) * worst - sim.fees - sim.estimated_slippage
    assert sim.cash_after == expected
    assert sim == simulate(order, book, market, COSTS)


def _slow_prices(order: OrderIntent, ref: Decimal) -> tuple[Decimal, Decimal]:
    """The simulator's worst/high prices written the plain way (max/min over a list)."""
    prices = [ref] + [p for p in (order.limit_price, order.stop_price) if p is not None]
    return (max(prices) if order.side is Side.BUY else min(prices)), max(prices)


# Values equal in amount but written differently (100 vs 100.0 vs 1.00E+2) must tie the same way.
tied = st.sampled_from(["100", "100.0", "100.00", "1.00E+2", "99.99", "100.01", "80", "125"])


@settings(max_examples=300, deadline=None)
@given(ref=tied, limit=st.none() | tied, stop=st.none() | tied, side=st.sampled_from(Side))
def test_price_pick_matches_max_and_min(
    ref: str, limit: str | None, stop: str | None, side: Side
) -> None:
    """Worst and highest prices are max/min over [ref, limit, stop], the first kept on ties."""
    kind = {(False, False): OrderType.MKT, (True, False): OrderType.LMT,
            (False, True): OrderType.STP, (True, True): OrderType.STP_LMT}[
        (limit is not None, stop is not None)]  # fmt: skip
    order = intent(
        side=side, order_type=kind, limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop),
    )  # fmt: skip
    fast = _prices(order, D(ref), side is Side.BUY)
    slow = _slow_prices(order, D(ref))
    assert [str(p) for p in fast] == [str(p) for p in slow]


@settings(max_examples=300, deadline=None)
@given(
    spread=st.none() | st.sampled_from(["0", "0.02", "0.10", "0.1", "1"]),
    volume=st.none() | st.sampled_from([0, 1, 1000, 50_000_000]),
    notional=st.sampled_from(["0.01", "2002.00", "2000", "20000.0", "1e6"]),
)
def test_slippage_is_the_larger_term(spread: str | None, volume: int | None, notional: str) -> None:
    """Slippage per share is max(spread/2, k·notional/volume) as written, the spread on a tie."""
    bid = D(100)
    ask = None if spread is None else bid + D(spread)
    market = quote(bid=None if ask is None else str(bid), ask=None if ask is None else str(ask),
                   last=bid, avg_daily_volume=None if volume is None else D(volume))  # fmt: skip
    terms = [] if market.spread is None else [market.spread / 2]
    if market.avg_daily_volume:
        terms.append(COSTS.slippage_k * D(notional) / market.avg_daily_volume)
    if not terms:
        with pytest.raises(MarketDataError):
            slippage_per_share(market, bid, D(notional), COSTS)
        return
    assert str(slippage_per_share(market, bid, D(notional), COSTS)) == str(max(terms))


def test_per_object_memory_is_by_identity_and_bounded() -> None:
    """Equal but distinct objects are computed apart; a full memory starts afresh."""
    calls: list[object] = []

    def compute(obj: object) -> int:
        calls.append(obj)
        return len(calls)

    remember = per_object(compute, size=2)
    a, b, c = [1.5], [1.5], [2.5]
    assert remember(a) == remember(a) == 1
    assert remember(b) == 2 and remember(c) == 3  # c overflows: the memory was dropped
    assert remember(a) == 4


@settings(max_examples=200, deadline=None)
@given(
    held=st.dictionaries(
        st.sampled_from(["AAPL", "MSFT", "SPY", "IEF", "BRK.B"]),
        st.integers(min_value=-300, max_value=300).filter(bool),
        max_size=5,
    ),
    symbol=st.sampled_from(["AAPL", "MSFT", "SPY", "QQQ"]),
    side=st.sampled_from(Side),
    quantity=st.integers(min_value=1, max_value=400),
)
def test_shared_exposures_equal_the_full_dict(
    held: dict[str, int], symbol: str, side: Side, quantity: int
) -> None:
    """The shared exposure view equals the full per-symbol dict, in dumps, JSON and round trips."""
    held_positions = tuple(position(s, str(q), "250") for s, q in held.items())
    book = portfolio(positions=held_positions, cash="1000000")
    market = quote(symbol)
    order = intent(instrument=stock(symbol), side=side, quantity=D(quantity))
    sim = simulate(order, book, market, COSTS)
    full = {p.instrument.symbol: p.quantity * p.market_price for p in book.positions}
    full[symbol] = sim.position_after * sim.reference_price
    view = sim.exposure_by_symbol_after
    assert dict(view) == full and view == full and full == view
    assert list(view) == list(full) and len(view) == len(full) and symbol in view
    old = SimResult.model_validate({**sim.model_dump(), "exposure_by_symbol_after": full})
    assert canonical.dumps(sim) == canonical.dumps(old)
    assert sim.model_dump() == old.model_dump()
    assert sim.model_dump(mode="json") == old.model_dump(mode="json")
    assert sim.model_dump_json() == old.model_dump_json()
    assert SimResult.model_validate(sim.model_dump()) == sim == old


def test_shared_exposures_are_read_only() -> None:
    """The exposure view cannot be changed, and the portfolio's shared exposures stay untouched."""
    book = portfolio()
    first = simulate(intent(), book, quote(), COSTS).exposure_by_symbol_after
    sell = intent(instrument=stock("MSFT"), side=Side.SELL, quantity=D(50), protective_stop=None)
    second = simulate(sell, book, quote("MSFT", "399.95", "400.05"), COSTS)
    assert second.exposure_by_symbol_after["MSFT"] == 0 and first["MSFT"] == D(20000)
    assert "AAPL" not in second.exposure_by_symbol_after
    assert isinstance(first, ExposureAfter)
    with pytest.raises(AttributeError):
        first._exposure = D(0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        first["AAPL"] = D(0)  # type: ignore[index]
    assert copy.deepcopy(first) == pickle.loads(pickle.dumps(first)) == first
