"""Canonical JSON: one text per value, whatever the spelling, process or key order."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench import canonical
from workbench.audit import GENESIS_HASH, chain_hash, event_text
from workbench.errors import CanonicalizationError
from workbench.intent_hash import intent_hash
from workbench.models import (
    Decision,
    Instrument,
    InstrumentType,
    IntentConstraints,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    ProtectiveStop,
    RiskDecision,
    RuleId,
    Severity,
    Side,
    Source,
    Violation,
)


def test_keys_sorted_and_compact() -> None:
    """Keys come out sorted with no whitespace."""
    assert canonical.dumps({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_text_round_trips_to_the_same_value(value: Decimal) -> None:
    """A Decimal's canonical string parses back to an equal Decimal."""
    assert Decimal(canonical.decimal_str(value)) == value


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_decimal_spelling_does_not_matter(value: Decimal) -> None:
    """Trailing zeros and exponents do not change the canonical text."""
    padded = value.quantize(Decimal("0.000001")) if abs(value) < 10**20 else value
    assert canonical.decimal_str(padded) == canonical.decimal_str(value)
    assert "E" not in canonical.decimal_str(value)


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(bad: object) -> None:
    """NaN and infinities cannot be written."""
    with pytest.raises(CanonicalizationError):
        canonical.dumps({"x": bad})


def test_times_are_utc_with_z() -> None:
    """An aware time in any zone is written as the same UTC instant."""
    ny = timezone(timedelta(hours=-5))
    a = datetime(2026, 11, 18, 10, 30, tzinfo=ny)
    b = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
    assert canonical.dumps(a) == canonical.dumps(b) == '"2026-11-18T15:30:00.000000Z"'


def test_naive_time_is_refused() -> None:
    """A datetime without a zone cannot be written."""
    with pytest.raises(CanonicalizationError):
        canonical.dumps(datetime(2026, 1, 1))


def test_unknown_types_are_refused() -> None:
    """An object with no canonical form raises instead of being stringified."""
    with pytest.raises(CanonicalizationError):
        canonical.dumps({"x": object()})


def test_non_ascii_is_escaped() -> None:
    """The output is pure ASCII so its bytes never depend on an encoding."""
    assert canonical.dumps("é") == '"\\u00e9"'


# -- golden bytes: the encoder may change, the text it writes may not --------------------------


def golden_values() -> dict[str, object]:
    """Representative values: a full intent, a decision, a quote, odd Decimals and zones."""
    intent = OrderIntent(
        account="DU123456",
        instrument=Instrument(
            type=InstrumentType.ETF, symbol="SPY", exchange="ARCA", con_id=756733
        ),
        side=Side.BUY,
        quantity=Decimal("12345678.000100"),
        order_type=OrderType.STP_LMT,
        limit_price=Decimal("1.0E+2"),
        stop_price=Decimal("99.99999999999999999999999999999999"),
        reason='golden \u00e9\u4e2d "quoted" \\ \n',
        strategy_tag="tag:1",
        constraints=IntentConstraints(
            max_slippage_bps=Decimal("2.50"), max_notional=Decimal("1E+6")
        ),
        protective_stop=ProtectiveStop(stop_price=Decimal("95.000"), limit_price=None),
        source=Source.LLM,
        is_propagated=True,
    )
    tokyo = ZoneInfo("Asia/Tokyo")
    decision = RiskDecision(
        decision=Decision.REVIEW,
        violations=(
            Violation(
                rule_id=RuleId.R12_PRICE_COLLAR,
                severity=Severity.MAJOR,
                message="collar",
                data={"limit": "100", "ratio": 0.5, "n": [1, None, True]},
            ),
        ),
        computed={"nav": "1000000.5", "z": {"b": 1, "a": -2}},
        policy_hash="ab" * 32,
        intent_hash=intent.intent_hash,
        evaluated_at=datetime(2026, 3, 8, 2, 30, 0, 123456, tzinfo=ZoneInfo("America/New_York")),
    )
    quote = MarketSnapshot(
        instrument=Instrument(type=InstrumentType.STK, symbol="BRK.B"),
        bid=Decimal("0.000000001"),
        ask=Decimal("123456789.5E-1"),
        last=None,
        close=Decimal("1E-28"),
        avg_daily_volume=Decimal("0E+3"),
        timestamp=datetime(2026, 11, 18, 23, 59, 59, 999999, tzinfo=tokyo),
        source="golden",
    )
    return {
        "intent": intent,
        "decision": decision,
        "quote": quote,
        "decimals": [
            Decimal("1E+30"),
            Decimal("-0.000"),
            Decimal("123.4500"),
            Decimal("-7E-30"),
            Decimal("3.141592653589793238462643383279502884197"),
            Decimal("10"),
            Decimal("0.1"),
        ],
        "times": [
            datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=45))),
            datetime(2026, 6, 30, 12, 0, tzinfo=UTC),
            date(2026, 2, 28),
            time(9, 30),
        ],
        "mixed": {
            "z": None,
            "a": [1, 2.5, -3, True, False],
            "\u00fc": "\u2603",
            "set": frozenset({"b", "a"}),
            "enum": Side.SELL,
            "nested": {"y": {"x": Decimal("5.0")}},
        },
    }


# sha256 and length of canonical.dumps(value), pinned from the encoder the log was written with.
GOLDEN = {
    "intent": ("c2f5429f9c4b2981f50cabb1c6f5d3b981d55694cfbbfa2937c76bbdf17bd63d", 526),
    "decision": ("87762f05d0e96a99143cb5dfbe1ccc574088ddfbf4b211d47ceb7c4dd35dfce8", 415),
    "quote": ("757a9ee22cb64fb42ad4a7c3e016f2393e3d03ba495c27047082bedbfe623fdf", 314),
    "decimals": ("35d037f3d0d8805b15e01abd42b453eb167fe728f55e95aa00ac4bacd7310579", 139),
    "times": ("8caa1b971ce9e3b3dfd783b880e50b41815b518508393e13e0b6390d69cc0c12", 85),
    "mixed": ("174b81c5624962a0c6ae303cef718303bf98300a5ca9ab5fcd7d9ae054d1de86", 109),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_canonical_bytes_are_pinned(name: str) -> None:
    """Models, many-digit Decimals, exponents and times in other zones give the pinned bytes."""
    text = canonical.dumps(golden_values()[name])
    assert (hashlib.sha256(text.encode("ascii")).hexdigest(), len(text)) == GOLDEN[name]


def test_canonical_text_of_plain_values_is_pinned() -> None:
    """The exact text of Decimals, times and a mixed mapping, byte for byte."""
    values = golden_values()
    assert canonical.dumps(values["decimals"]) == (
        '["1000000000000000000000000000000","0","123.45","-0.000000000000000000000000000007",'
        '"3.141592653589793238462643383279502884197","10","0.1"]'
    )
    assert canonical.dumps(values["times"]) == (
        '["2025-12-31T18:15:00.000000Z","2026-06-30T12:00:00.000000Z","2026-02-28","09:30:00"]'
    )
    assert canonical.dumps(values["mixed"]) == (
        '{"a":[1,2.5,-3,true,false],"enum":"SELL","nested":{"y":{"x":"5"}},"set":["a","b"],'
        '"z":null,"\\u00fc":"\\u2603"}'
    )


def test_event_hash_and_fast_intent_hash_are_pinned() -> None:
    """An event's chain hash and the specialised intent-hash writer give the pinned digests."""
    values = golden_values()
    payload = canonical.dumps(values["mixed"])
    text = event_text(
        7, "2026-11-18T15:30:00.000000Z", "ToolCalled", "p1", None, "act\u00e9", payload
    )
    assert chain_hash(GENESIS_HASH, text) == (
        "5db3e67f112765ceffcfd4b417111ae2151e1b1f1a9efff43872f6e01c286afe"
    )
    assert intent_hash(values["intent"]) == GOLDEN["intent"][0]
