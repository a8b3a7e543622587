"""Market data: seeded synthetic bars, NYSE sessions, quotes, ATR, and the user's own bars file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from workbench.errors import BarsFormatError, MarketDataError, UnknownSymbolError
from workbench.marketdata import (
    SYNTHETIC_SOURCE,
    Bar,
    CsvBars,
    MarketData,
    SyntheticBars,
    atr,
    canonical_bars,
    synthetic_bar,
    universe,
)
from workbench.sessions import xnys

# Computed once from this code and pinned: any machine must reproduce these bytes exactly.
CHECKSUM_SEED_0 = "7e4db88ea3f403e9bec7f7d3d00ac2ee9d77f086c370dd738ec2233f8793d311"
CHECKSUM_SEED_7_SPY = "bb1c9e550023e0b29979af86a225d6bf0827ac0ecaca1726ecde090e282046db"
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
HEADER = "date,symbol,open,high,low,close,volume\n"


def _fixed_bars(seed: int, symbols: tuple[str, ...]) -> list[Bar]:
    days = [s.day for s in xnys().ending(date(2026, 11, 20), 15)]
    return [synthetic_bar(seed, sym, d) for sym in symbols for d in days]


def test_same_seed_and_dates_give_the_pinned_checksum() -> None:
    """The canonical bars for fixed symbols and dates hash to the checksum stored here."""
    assert canonical_bars(_fixed_bars(0, ("SPY", "AAPL", "TLT", "NVDA"))) == CHECKSUM_SEED_0
    assert canonical_bars(_fixed_bars(7, ("SPY",))) == CHECKSUM_SEED_7_SPY


def test_bars_are_the_same_in_a_fresh_process() -> None:
    """Another interpreter (fresh hash seed, fresh caches) computes the same checksum."""
    code = (
        "from tests.test_marketdata import _fixed_bars; from workbench.marketdata import"
        " canonical_bars; print(canonical_bars(_fixed_bars(0, ('SPY','AAPL','TLT','NVDA'))))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == CHECKSUM_SEED_0, out.stderr


def test_a_dates_bar_does_not_depend_on_the_range_asked() -> None:
    """The bar of a date is the same whether asked alone, in a short range or a long one."""
    md = MarketData()
    day = date(2026, 11, 18)
    assert md.bars("SPY", day, 3)[-1] == md.bars("SPY", day, 200)[-1] == md.bar("SPY", day)


def test_different_seeds_and_symbols_give_different_walks() -> None:
    """The seed and the symbol both change the bars."""
    day = date(2026, 11, 18)
    assert synthetic_bar(0, "SPY", day) != synthetic_bar(1, "SPY", day)
    assert synthetic_bar(0, "SPY", day).close != synthetic_bar(0, "VTI", day).close


def test_bars_exist_only_on_nyse_sessions() -> None:
    """Bars skip weekends and holidays (Thanksgiving 2026); asking for one is an error."""
    md = MarketData()
    days = [b.day for b in md.bars("SPY", date(2026, 11, 30), 5)]
    assert days == [date(2026, 11, d) for d in (23, 24, 25, 27, 30)]
    with pytest.raises(MarketDataError, match="not a trading day"):
        md.bar("SPY", date(2026, 11, 26))


def test_bars_are_labelled_synthetic_and_priced_in_cents() -> None:
    """Synthetic bars say so, and every price is a positive Decimal with two decimals."""
    for bar in MarketData().bars("NVDA", date(2026, 11, 20), 30):
        assert bar.synthetic and bar.source == SYNTHETIC_SOURCE
        for price in (bar.open, bar.high, bar.low, bar.close):
            assert price > 0 and price == price.quantize(Decimal("0.01"))
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


def test_universe_ships_a_few_dozen_liquid_names() -> None:
    """The shipped universe holds the liquid ETFs and stocks the issue lists."""
    names = set(universe())
    assert {"SPY", "QQQ", "TLT", "GLD", "XLK", "AAPL", "NVDA", "JPM", "KO"} <= names
    assert len(names) >= 36


def test_quote_in_session_follows_the_days_path_with_a_spread() -> None:
    """In session the quote is the open-to-close path at that time, bid below ask, synthetic."""
    md = MarketData()
    session = xnys().session_at(NOW)
    assert session is not None
    bar = md.bar("SPY", session.day)
    snap = md.quote("SPY", NOW)
    assert snap.synthetic and snap.source == SYNTHETIC_SOURCE and snap.timestamp == NOW
    assert snap.bid is not None and snap.ask is not None and snap.bid < snap.ask
    assert min(bar.open, bar.close) <= snap.last <= max(bar.open, bar.close)  # type: ignore[operator]
    assert md.quote("SPY", session.open).last == bar.open


@pytest.mark.parametrize(
    ("when", "session_day"),
    [
        (datetime(2026, 11, 18, 13, 0, tzinfo=UTC), date(2026, 11, 17)),  # before the open
        (datetime(2026, 11, 18, 22, 0, tzinfo=UTC), date(2026, 11, 18)),  # after the close
        (datetime(2026, 11, 21, 15, 30, tzinfo=UTC), date(2026, 11, 20)),  # Saturday
        (datetime(2026, 11, 26, 15, 30, tzinfo=UTC), date(2026, 11, 25)),  # Thanksgiving
    ],
    ids=["pre-open", "after-close", "saturday", "holiday"],
)
def test_quote_outside_hours_is_the_last_close_with_its_time(
    when: datetime, session_day: date
) -> None:
    """Outside trading hours the quote is the last close, stamped with that close's time."""
    md = MarketData()
    snap = md.quote("SPY", when)
    session = xnys().session(session_day)
    assert session is not None
    assert snap.bid is None and snap.ask is None
    assert snap.last == snap.close == md.bar("SPY", session_day).close
    assert snap.timestamp == session.close


def test_unknown_symbol_is_a_typed_error() -> None:
    """Asking for a symbol outside the universe raises UnknownSymbolError, not a made-up price."""
    with pytest.raises(UnknownSymbolError):
        MarketData().quote("ZZZZ", NOW)


def test_simple_atr_is_the_mean_true_range() -> None:
    """ATR is the mean of the last n true ranges, each max(H-L, |H-Cprev|, |L-Cprev|)."""
    bars = [
        Bar(symbol="X", day=date(2026, 11, d), open=Decimal(o), high=Decimal(h), low=Decimal(lo),
            close=Decimal(c), volume=1, synthetic=False, source="test")
        for d, o, h, lo, c in [(16, 10, 11, 9, 10), (17, 12, 13, 11, 12), (18, 11, 12, 7, 8)]
    ]  # fmt: skip
    # true ranges: max(2, 3, 1) = 3 and max(5, 0, 5) = 5
    assert atr(bars) == Decimal("4.0000")
    md = MarketData()
    assert md.atr("SPY", date(2026, 11, 20), 14) == atr(md.bars("SPY", date(2026, 11, 20), 15))


def test_avg_daily_volume_is_the_mean_of_recent_volumes() -> None:
    """The liquidity proxy is the mean volume over the last n sessions."""
    md = MarketData()
    bars = md.bars("SPY", date(2026, 11, 20), 20)
    assert md.avg_daily_volume("SPY", date(2026, 11, 20)) == Decimal(
        sum(b.volume for b in bars)
    ) / Decimal(20)


def test_user_csv_bars_replace_the_synthetic_ones(tmp_path: Path) -> None:
    """A valid CSV feeds bars, quotes and ATR, labelled with the file, not synthetic."""
    path = tmp_path / "bars.csv"
    path.write_text(
        HEADER + "2026-11-17,SPY,600,610,595,605,1000\n2026-11-18,SPY,605,612,600,611.5,2000\n"
    )
    md = MarketData(CsvBars(path))
    assert md.bar("SPY", date(2026, 11, 18)).close == Decimal("611.5")
    snap = md.quote("SPY", datetime(2026, 11, 18, 22, 0, tzinfo=UTC))
    assert not snap.synthetic and snap.source == "file bars.csv"
    assert md.atr("SPY", date(2026, 11, 18), 1) == Decimal("12.0000")
    with pytest.raises(MarketDataError, match="no bar"):
        md.bar("SPY", date(2026, 11, 19))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("date,symbol,open,high,low,close\n", "header"),
        (HEADER + "2026-11-18,SPY,600,610,595,605\n", "expected 7 fields"),
        (HEADER + "18/11/2026,SPY,600,610,595,605,1\n", "Invalid isoformat"),
        (HEADER + "2026-11-18,spy!,600,610,595,605,1\n", "symbol"),
        (HEADER + "2026-11-18,SPY,abc,610,595,605,1\n", "open: 'abc' is not a number"),
        (HEADER + "2026-11-18,SPY,-1,610,595,605,1\n", "greater than 0"),
        (HEADER + "2026-11-18,SPY,NaN,610,595,605,1\n", "finite"),
        (HEADER + "2026-11-18,SPY,600,590,595,605,1\n", "high/low"),
        (HEADER + "2026-11-18,SPY,600,610,595,605,1.5\n", "whole number"),
        (HEADER + "2026-11-21,SPY,600,610,595,605,1\n", "not a XNYS session"),
        (HEADER + "2026-11-18,SPY,600,610,595,605,1\n" * 2, "second bar"),
    ],
    ids=["header", "short", "date", "symbol", "price", "negative", "nan", "range", "volume",
         "weekend", "duplicate"],
)  # fmt: skip
def test_bad_bar_rows_raise_a_typed_error_with_the_line(
    tmp_path: Path, body: str, fragment: str
) -> None:
    """Each broken row is refused with BarsFormatError naming the file, line and reason."""
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(BarsFormatError, match=fragment) as info:
        CsvBars(path)
    assert info.value.path == str(path) and info.value.line >= 1


def test_synthetic_source_knows_its_universe() -> None:
    """The synthetic source's symbols are the shipped universe."""
    assert SyntheticBars().symbols() == frozenset(universe())
