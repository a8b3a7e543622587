"""Canonical JSON: one text per value, whatever the spelling, process or key order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench import canonical
from workbench.errors import CanonicalizationError


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
