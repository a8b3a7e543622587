"""Domain models: round-trips, strict rejections and a stable intent hash."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from workbench.models import (
    Instrument,
    InstrumentType,
    LiveSignal,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    Position,
    RiskDecision,
    RuleId,
    Severity,
    Side,
    SimResult,
    Source,
    SubmitPermit,
    Violation,
)

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
SPY = Instrument(type=InstrumentType.ETF, symbol="SPY", exchange="SMART", currency="USD")


def intent(**changes: Any) -> OrderIntent:
    base: dict[str, Any] = {
        "account": "PAPER1",
        "instrument": SPY,
        "side": "BUY",
        "quantity": "10",
        "order_type": "LMT",
        "limit_price": "450.25",
        "source": "rule",
        "reason": "rebalance",
        "strategy_tag": "rebal_v1",
    }
    base.update(changes)
    return OrderIntent.model_validate(base)


decimals = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)

intents = st.builds(
    lambda side, qty, price, tif, src, prop: intent(
        side=side,
        quantity=qty,
        limit_price=price,
        time_in_force=tif,
        source=src,
        is_propagated=prop,
    ),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(min_value=1, max_value=10**6).map(Decimal),
    decimals,
    st.sampled_from(["DAY", "GTC", "IOC"]),
    st.sampled_from([s.value for s in Source]),
    st.booleans(),
)


@given(intents)
def test_intent_round_trips_through_json(order: OrderIntent) -> None:
    """An intent written as JSON and read back is equal and hashes the same."""
    back = OrderIntent.model_validate_json(order.model_dump_json())
    assert back == order
    assert back.intent_hash == order.intent_hash


@given(intents)
def test_intent_round_trips_through_canonical_json(order: OrderIntent) -> None:
    """Canonical JSON is itself a valid input that reproduces the intent."""
    assert OrderIntent.model_validate_json(order.canonical_json()) == order


BAD_NUMBERS = st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "sNaN"])


@given(field=st.sampled_from(["quantity", "limit_price"]), bad=BAD_NUMBERS)
def test_intent_rejects_non_finite_numbers_naming_the_field(field: str, bad: str) -> None:
    """NaN and infinities are refused, and the error names the field."""
    with pytest.raises(ValidationError) as info:
        intent(**{field: bad})
    assert field in str(info.value)


@given(st.decimals(max_value=Decimal(0), allow_nan=False, allow_infinity=False))
def test_intent_rejects_non_positive_quantity(qty: Decimal) -> None:
    """Zero and negative quantities are refused, naming the quantity."""
    with pytest.raises(ValidationError, match="quantity"):
        intent(quantity=qty)


@given(st.decimals(min_value=Decimal("1E+9") + 1, allow_nan=False, allow_infinity=False))
def test_intent_rejects_absurd_quantity(qty: Decimal) -> None:
    """A quantity beyond a billion units is treated as garbage."""
    with pytest.raises(ValidationError, match="quantity"):
        intent(quantity=qty)


@given(st.decimals(max_value=Decimal(0), allow_nan=False, allow_infinity=False))
def test_intent_rejects_non_positive_limit_price(price: Decimal) -> None:
    """A zero or negative limit price is refused, naming the field."""
    with pytest.raises(ValidationError, match="limit_price"):
        intent(limit_price=price)


@given(
    field=st.sampled_from(["side", "order_type", "time_in_force", "source"]),
    bad=st.text(min_size=1, max_size=8).filter(
        lambda s: (
            s not in {"BUY", "SELL", "MKT", "LMT", "STP", "STP_LMT", "DAY", "GTC", "IOC"}
            and s not in {x.value for x in Source}
        )
    ),
)
def test_intent_rejects_unknown_enum_values(field: str, bad: str) -> None:
    """An unknown enum value is refused and the error names the field."""
    with pytest.raises(ValidationError) as info:
        intent(**{field: bad})
    assert field in str(info.value)


@given(key=st.text(min_size=1, max_size=12).filter(lambda k: k not in OrderIntent.model_fields))
def test_intent_rejects_unknown_keys(key: str) -> None:
    """Extra keys are refused rather than silently dropped."""
    with pytest.raises(ValidationError, match="Extra inputs"):
        intent(**{key: "x"})


def test_intent_is_frozen() -> None:
    """An intent cannot be changed after validation."""
    order = intent()
    with pytest.raises(ValidationError):
        order.quantity = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"order_type": "LMT", "limit_price": None}, "limit_price"),
        ({"order_type": "MKT"}, "limit_price"),
        ({"order_type": "STP", "limit_price": None}, "stop_price"),
        ({"order_type": "STP_LMT"}, "stop_price"),
    ],
)
def test_intent_prices_must_match_order_type(changes: dict[str, Any], field: str) -> None:
    """Limit and stop prices are required exactly when the order type uses them."""
    with pytest.raises(ValidationError, match=field):
        intent(**changes)


def test_intent_hash_ignores_decimal_spelling() -> None:
    """Equal values written differently (10 vs 10.00) hash the same."""
    assert intent(quantity="10").intent_hash == intent(quantity="10.00").intent_hash
    assert intent(limit_price="450.25").intent_hash == intent(limit_price="450.250").intent_hash


def test_intent_hash_changes_with_any_field() -> None:
    """A different side, quantity or account gives a different hash."""
    base = intent().intent_hash
    assert intent(side="SELL").intent_hash != base
    assert intent(quantity="11").intent_hash != base
    assert intent(account="PAPER2").intent_hash != base


HASH_SCRIPT = """
from workbench.models import OrderIntent
print(OrderIntent.model_validate_json({payload!r}).intent_hash)
"""


def test_intent_hash_identical_across_processes() -> None:
    """Two fresh interpreters (different hash seeds) compute the same intent hash."""
    order = intent(is_propagated=True, reason="naïve ünïcode reason")
    script = HASH_SCRIPT.format(payload=order.model_dump_json())
    hashes = {
        subprocess.run(
            [sys.executable, "-c", script],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {order.intent_hash}


def test_intent_hash_is_pinned() -> None:
    """The canonical form and hash of a fixed intent never change between releases."""
    order = intent()
    assert order.canonical_json().startswith('{"account":"PAPER1","constraints":{')
    assert '"limit_price":"450.25"' in order.canonical_json()
    assert order.intent_hash == "1920fd0a691b11f172c51e572cb9b94a91b89174c8885faf22f92eb4fee836f4"


def test_market_snapshot_rejects_crossed_quote() -> None:
    """A bid above the ask is refused."""
    with pytest.raises(ValidationError, match="bid"):
        MarketSnapshot(instrument=SPY, bid=Decimal(11), ask=Decimal(10), timestamp=NOW, source="t")


def test_market_snapshot_requires_aware_time() -> None:
    """A naive timestamp is refused."""
    with pytest.raises(ValidationError, match="timestamp"):
        MarketSnapshot(instrument=SPY, last=Decimal(10), timestamp=datetime(2026, 1, 1), source="t")


def test_market_snapshot_reference_price_prefers_mid() -> None:
    """Mid beats last beats close; no quote at all gives None."""
    both = MarketSnapshot(
        instrument=SPY, bid=Decimal(10), ask=Decimal(12), last=Decimal(9), timestamp=NOW, source="t"
    )
    assert both.reference_price == Decimal(11)
    last = MarketSnapshot(
        instrument=SPY, last=Decimal(9), close=Decimal(8), timestamp=NOW, source="t"
    )
    assert last.reference_price == Decimal(9)
    assert MarketSnapshot(instrument=SPY, timestamp=NOW, source="t").reference_price is None


def test_portfolio_snapshot_rejects_duplicate_positions() -> None:
    """A snapshot listing the same symbol twice is refused."""
    pos = Position(
        instrument=SPY, quantity=Decimal(1), avg_cost=Decimal(1), market_price=Decimal(1)
    )
    with pytest.raises(ValidationError, match="positions"):
        PortfolioSnapshot(
            account="A",
            currency="USD",
            positions=(pos, pos),
            cash=Decimal(0),
            net_liquidation=Decimal(1),
            available_funds=Decimal(0),
            buying_power=Decimal(0),
            timestamp=NOW,
            broker="t",
        )


def test_portfolio_snapshot_keeps_time_zone_and_money_as_decimal() -> None:
    """Snapshot money stays Decimal and times stay aware through a JSON round trip."""
    tz = timezone(timedelta(hours=-5))
    snap = PortfolioSnapshot(
        account="A",
        currency="USD",
        cash="100.10",
        net_liquidation="100.10",
        available_funds="100.10",
        buying_power="100.10",
        timestamp=datetime(2026, 1, 2, 9, 30, tzinfo=tz),
        broker="t",
    )
    back = PortfolioSnapshot.model_validate_json(snap.model_dump_json())
    assert isinstance(back.cash, Decimal) and back.cash == Decimal("100.10")
    assert back.timestamp == snap.timestamp


def test_currency_must_be_three_letter_code() -> None:
    """A currency that is not an upper-case ISO code is refused."""
    with pytest.raises(ValidationError, match="currency"):
        Instrument(type=InstrumentType.STK, symbol="AAPL", currency="usd")


def test_violation_and_decision_round_trip() -> None:
    """A decision with violations survives JSON and keeps its rule ids typed."""
    decision = RiskDecision(
        decision="REJECT",
        violations=(
            Violation(
                rule_id=RuleId.R1_MAX_NOTIONAL,
                severity=Severity.BLOCKER,
                message="too big",
                data={"notional": "30000"},
            ),
        ),
        computed={"notional": "30000"},
        policy_hash="a" * 64,
        intent_hash="b" * 64,
        evaluated_at=NOW,
    )
    back = RiskDecision.model_validate_json(decision.model_dump_json())
    assert back == decision
    assert back.violations[0].rule_id is RuleId.R1_MAX_NOTIONAL


def test_live_signal_rejects_weight_out_of_range() -> None:
    """A target weight above 1 is refused, naming the weight."""
    with pytest.raises(ValidationError, match="weight"):
        LiveSignal(
            ticker="SPY",
            weight=Decimal("1.5"),
            direction=Side.BUY,
            atr_per_share=Decimal(2),
            entry_price=Decimal(100),
        )


def test_submit_permit_refuses_mismatched_hash() -> None:
    """A permit whose intent hash does not match its intent cannot be built."""
    with pytest.raises(ValidationError, match="intent_hash"):
        SubmitPermit(
            proposal_id="p1", intent=intent(), intent_hash="0" * 64, submitted_seq=1, order_ref="p1"
        )


def test_sim_result_rejects_nan() -> None:
    """A simulation result with a NaN figure is refused."""
    fields = {name: Decimal(1) for name in SimResult.model_fields}
    fields.update(
        intent_hash="a" * 64,
        currency="USD",
        exposure_by_symbol_after={},
        positions_after=1,
        opens_or_increases=True,
        notional=Decimal("NaN"),
    )
    with pytest.raises(ValidationError, match="notional"):
        SimResult.model_validate(fields)


def test_order_type_enum_matches_spec() -> None:
    """The order types are exactly those the SPEC names."""
    assert {t.value for t in OrderType} == {"MKT", "LMT", "STP", "STP_LMT"}


@pytest.mark.parametrize("quantity", ["10.0000000000000000000000000001", "0.000000001"])
def test_quantity_finer_than_eight_places_is_refused(quantity: str) -> None:
    """A quantity with more than 8 decimal places is garbage, refused by the model itself."""
    with pytest.raises(ValidationError, match="decimal places"):
        intent(quantity=quantity)


def test_quantity_trailing_zeros_are_not_places() -> None:
    """10.5000000000 has one decimal place and 12.00000000000 none: both are accepted."""
    assert intent(quantity="10.5000000000").quantity == Decimal("10.5")
    assert intent(quantity="12.00000000000").quantity == 12
