"""Daily bars, intraday quotes, ATR and liquidity, from seeded synthetic data or the user's file.

Synthetic bars are a pure function of (seed, symbol, date): a log-price random walk over calendar
days, built as a dyadic Brownian bridge pinned at 2026-01-02 (the universe's anchor price), so any
date's bar costs ~15 hashes and never depends on the range asked. Normals come from sha256 bytes
(Irwin–Hall sum of 12 uniforms: integer arithmetic and exact float steps) and prices from
``Decimal.exp`` (correctly rounded), so every machine computes the same cents. Everything they feed
is labelled ``synthetic`` with source ``"synthetic (seeded)"``.

ATR here is the *simple* ATR: the mean of the last ``n`` true ranges (not Wilder's smoothing).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Protocol, Self

from pydantic import Field, StringConstraints, ValidationError, model_validator

from workbench.errors import BarsFormatError, MarketDataError, UnknownSymbolError, problems
from workbench.models import Frozen, Instrument, InstrumentType, MarketSnapshot, Price, Symbol
from workbench.sessions import Session, SessionCalendar, xnys

SYNTHETIC_SOURCE = "synthetic (seeded)"
BAR_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
ANCHOR = date(2026, 1, 2)
HALF_SPAN = 2**15  # days each side of the anchor the walk covers (~89 years)
CENT = Decimal("0.01")
_CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)
_CALENDAR_SCALE = math.sqrt(252 / 365)  # daily vol is per trading day; the walk steps calendar days


class Bar(Frozen):
    """One daily OHLCV bar; ``synthetic`` is True for generated data."""

    symbol: Symbol
    day: date
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[int, Field(ge=0)]
    synthetic: bool
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _range_holds(self) -> Self:
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError("high/low: need low <= open, close <= high")
        return self


@dataclass(frozen=True, slots=True)
class UniverseEntry:
    """One row of the shipped universe: the instrument and the walk's parameters."""

    instrument: Instrument
    name: str
    price: Decimal
    daily_vol: float
    avg_volume: int


@cache
def universe() -> dict[str, UniverseEntry]:
    """The shipped universe (``workbench/data/universe.csv``), by symbol."""
    text = resources.files("workbench").joinpath("data/universe.csv").read_text("utf-8")
    entries = {}
    for row in csv.DictReader(text.splitlines()):
        instrument = Instrument(
            type=InstrumentType(row["type"]),
            symbol=row["symbol"],
            primary_exchange=row["primary_exchange"],
        )
        entries[row["symbol"]] = UniverseEntry(
            instrument, row["name"], Decimal(row["price"]), float(row["daily_vol"]),
            int(row["avg_volume"]),
        )  # fmt: skip
    return entries


class BarSource(Protocol):
    """Where daily bars come from."""

    label: str
    synthetic: bool

    def symbols(self) -> frozenset[str]: ...

    def bar(self, symbol: str, session: Session) -> Bar: ...


# -- synthetic bars ------------------------------------------------------------------------------


def _gauss(*key: object) -> float:
    """A standard-normal-ish draw from sha256(key): Irwin–Hall over 12 16-bit uniforms."""
    digest = hashlib.sha256("|".join(map(str, key)).encode("utf-8")).digest()
    total = sum(int.from_bytes(digest[i : i + 2], "big") for i in range(0, 24, 2))
    return (total + 6) / 65536 - 6


def _walk(seed: int, symbol: str, t: int) -> float:
    """W(t) of a Brownian motion with W(0) = 0, one unit of variance per day, built top-down."""
    if t == 0:
        return 0.0
    branch, t = ("f" if t > 0 else "b"), abs(t)
    if t > HALF_SPAN:
        raise MarketDataError(symbol, f"{t} days from {ANCHOR} is beyond the synthetic range")
    lo, hi = 0, HALF_SPAN
    w_lo, w_hi = 0.0, math.sqrt(HALF_SPAN) * _gauss(seed, symbol, branch, HALF_SPAN)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        w_mid = (w_lo + w_hi) / 2 + math.sqrt((hi - lo) / 4) * _gauss(seed, symbol, branch, mid)
        if t == mid:
            return w_mid
        lo, hi, w_lo, w_hi = (mid, hi, w_mid, w_hi) if t > mid else (lo, mid, w_lo, w_mid)
    return w_hi if t == hi else w_lo


def _price(base: Decimal, log_move: float) -> Decimal:
    return max(CENT, (base * _CTX.exp(Decimal(log_move))).quantize(CENT, ROUND_HALF_EVEN))


@lru_cache(maxsize=200_000)
def synthetic_bar(seed: int, symbol: str, day: date) -> Bar:
    """The seeded bar of ``symbol`` on ``day`` (any date; the caller decides if it is a session)."""
    entry = universe().get(symbol)
    if entry is None:
        raise UnknownSymbolError(symbol)
    t = (day - ANCHOR).days
    sigma = entry.daily_vol * _CALENDAR_SCALE
    log_close = sigma * _walk(seed, symbol, t)
    log_open = sigma * _walk(seed, symbol, t - 1) + 0.25 * sigma * _gauss(seed, symbol, "gap", t)
    open_, close = _price(entry.price, log_open), _price(entry.price, log_close)
    high_move = max(log_open, log_close) + 0.5 * sigma * abs(_gauss(seed, symbol, "hi", t))
    low_move = min(log_open, log_close) - 0.5 * sigma * abs(_gauss(seed, symbol, "lo", t))
    volume = Decimal(entry.avg_volume) * _CTX.exp(Decimal(0.3 * _gauss(seed, symbol, "vol", t)))
    return Bar(
        symbol=symbol,
        day=day,
        open=open_,
        high=max(_price(entry.price, high_move), open_, close),
        low=min(_price(entry.price, low_move), open_, close),
        close=close,
        volume=int(volume),
        synthetic=True,
        source=SYNTHETIC_SOURCE,
    )


class SyntheticBars:
    """Seeded synthetic bars for the shipped universe."""

    synthetic = True
    label = SYNTHETIC_SOURCE

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def symbols(self) -> frozenset[str]:
        return frozenset(universe())

    def bar(self, symbol: str, session: Session) -> Bar:
        return synthetic_bar(self.seed, symbol, session.day)


# -- the user's bars -----------------------------------------------------------------------------


class CsvBars:
    """Bars from the user's CSV (or Parquet) file with exactly the columns ``BAR_COLUMNS``."""

    synthetic = False

    def __init__(self, path: str | Path, calendar: SessionCalendar | None = None) -> None:
        self.path = Path(path)
        self.label = f"file {self.path.name}"
        self._bars = _load_bars(self.path, calendar or xnys(), self.label)
        self._symbols = frozenset(symbol for symbol, _ in self._bars)

    def symbols(self) -> frozenset[str]:
        return self._symbols

    def bar(self, symbol: str, session: Session) -> Bar:
        found = self._bars.get((symbol, session.day))
        if found is None:
            if symbol not in self.symbols():
                raise UnknownSymbolError(symbol)
            raise MarketDataError(symbol, f"no bar for {session.day} in {self.path.name}")
        return found


def _rows(path: Path) -> Iterator[list[str]]:
    if path.suffix.lower() in (".parquet", ".pq"):
        yield from _parquet_rows(path)
        return
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.reader(handle)


def _parquet_rows(path: Path) -> Iterator[list[str]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        hint = "reading Parquet needs the parquet extra: pip install 'workbench[parquet]'"
        raise BarsFormatError(str(path), 0, hint) from exc
    yield [str(c) for c in frame.columns]
    for values in frame.astype(str).itertuples(index=False):
        yield list(values)


def _load_bars(path: Path, calendar: SessionCalendar, label: str) -> dict[tuple[str, date], Bar]:
    try:
        return _read_bars(path, calendar, label)
    except FileNotFoundError:
        raise BarsFormatError(str(path), 0, "no such bars file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BarsFormatError(str(path), 0, f"cannot read the bars file: {exc}") from None


def _read_bars(path: Path, calendar: SessionCalendar, label: str) -> dict[tuple[str, date], Bar]:
    rows = _rows(path)
    header = next(rows, None)
    if header is None or tuple(header) != BAR_COLUMNS:
        raise BarsFormatError(str(path), 1, f"header must be {','.join(BAR_COLUMNS)}")
    bars: dict[tuple[str, date], Bar] = {}
    for line, row in enumerate(rows, start=2):
        bar = _parse_row(path, line, row, label)
        if (bar.symbol, bar.day) in bars:
            raise BarsFormatError(str(path), line, f"second bar for {bar.symbol} on {bar.day}")
        if calendar.session(bar.day) is None:
            raise BarsFormatError(str(path), line, f"{bar.day} is not a {calendar.name} session")
        bars[(bar.symbol, bar.day)] = bar
    return bars


def _parse_row(path: Path, line: int, row: Sequence[str], label: str) -> Bar:
    if len(row) != len(BAR_COLUMNS):
        raise BarsFormatError(str(path), line, f"expected {len(BAR_COLUMNS)} fields")
    fields = dict(zip(BAR_COLUMNS, row, strict=True))
    try:
        if not fields["volume"].isdigit():
            raise ValueError(f"volume: {fields['volume']!r} is not a whole number")
        return Bar(
            symbol=fields["symbol"],
            day=date.fromisoformat(fields["date"]),
            **{k: _number(k, fields[k]) for k in ("open", "high", "low", "close")},
            volume=int(fields["volume"]),
            synthetic=False,
            source=label,
        )
    except (ValueError, ValidationError) as exc:
        raise BarsFormatError(str(path), line, _reason(exc)) from exc


def _number(name: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{name}: {text!r} is not a number") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return problems(exc, "row")
    return str(exc)


# -- the facade ----------------------------------------------------------------------------------


def true_ranges(bars: Sequence[Bar]) -> list[Decimal]:
    """True range of each bar after the first: max(H-L, |H-prev C|, |L-prev C|)."""
    return [
        max(b.high - b.low, abs(b.high - prev.close), abs(b.low - prev.close))
        for prev, b in itertools.pairwise(bars)
    ]


def atr(bars: Sequence[Bar]) -> Decimal:
    """Simple ATR: the mean true range over ``bars`` (n + 1 bars give n true ranges)."""
    ranges = true_ranges(bars)
    if not ranges:
        raise MarketDataError(bars[0].symbol if bars else "?", "ATR needs at least two bars")
    return (sum(ranges, Decimal(0)) / len(ranges)).quantize(Decimal("0.0001"))


class MarketData:
    """Bars, quotes, ATR and volume from one bar source on the NYSE calendar."""

    def __init__(
        self,
        source: BarSource | None = None,
        *,
        calendar: SessionCalendar | None = None,
        spread_bps: Decimal = Decimal(2),
    ) -> None:
        self.source: BarSource = source if source is not None else SyntheticBars()
        self.calendar = calendar or xnys()
        self.spread_bps = spread_bps

    @property
    def label(self) -> str:
        return self.source.label

    def symbols(self) -> frozenset[str]:
        return self.source.symbols()

    def instrument(self, symbol: str) -> Instrument:
        """The instrument for ``symbol``; unknown symbols raise :class:`UnknownSymbolError`."""
        if symbol not in self.source.symbols():
            raise UnknownSymbolError(symbol)
        entry = universe().get(symbol)
        return entry.instrument if entry else Instrument(type=InstrumentType.STK, symbol=symbol)

    def bar(self, symbol: str, day: date) -> Bar:
        session = self.calendar.session(day)
        if session is None:
            raise MarketDataError(symbol, f"{day} is not a trading day")
        return self.source.bar(symbol, session)

    def bars(self, symbol: str, end: date, n: int) -> tuple[Bar, ...]:
        """The ``n`` daily bars of the sessions ending on ``end`` (inclusive), oldest first."""
        return tuple(self.source.bar(symbol, s) for s in self.calendar.ending(end, n))

    def atr(self, symbol: str, end: date, n: int = 14) -> Decimal:
        """Simple ATR over the ``n`` sessions ending on ``end``."""
        return atr(self.bars(symbol, end, n + 1))

    def avg_daily_volume(self, symbol: str, end: date, n: int = 20) -> Decimal:
        """Mean volume of the ``n`` sessions ending on ``end``: the liquidity proxy."""
        volumes = [b.volume for b in self.bars(symbol, end, n)]
        return Decimal(sum(volumes)) / n

    def _known_volume(self, symbol: str, end: date) -> Decimal | None:
        """The quote's liquidity proxy, or None (never a guess) when history is too short."""
        try:
            return self.avg_daily_volume(symbol, end)
        except MarketDataError:
            return None

    def mid_at(self, bar: Bar, session: Session, when: datetime) -> Decimal:
        """The day's path: open to close, linear over the session, to the cent."""
        elapsed = (min(max(when, session.open), session.close) - session.open).total_seconds()
        span = (session.close - session.open).total_seconds()
        frac = Decimal(int(elapsed)) / Decimal(int(span))
        return (bar.open + (bar.close - bar.open) * frac).quantize(CENT, ROUND_HALF_EVEN)

    def bid_ask(self, mid: Decimal) -> tuple[Decimal, Decimal]:
        """Bid and ask around ``mid``: ``spread_bps`` wide, at least a cent each side."""
        half = max(CENT, (mid * self.spread_bps / 20000).quantize(CENT, ROUND_CEILING))
        return max(CENT, (mid - half).quantize(CENT, ROUND_FLOOR)), mid + half

    def quote(self, symbol: str, when: datetime) -> MarketSnapshot:
        """The quote at ``when``; outside trading hours the last close with its own time."""
        instrument = self.instrument(symbol)
        session = self.calendar.session_at(when)
        if session is None:
            return self._closed_quote(instrument, self.calendar.last_closed(when))
        bar = self.source.bar(symbol, session)
        mid = self.mid_at(bar, session, when)
        bid, ask = self.bid_ask(mid)
        previous = self.calendar.last_closed(session.open)
        return MarketSnapshot(
            instrument=instrument,
            bid=bid,
            ask=ask,
            last=mid,
            close=self.source.bar(symbol, previous).close,
            avg_daily_volume=self._known_volume(symbol, previous.day),
            timestamp=when,
            synthetic=self.source.synthetic,
            source=self.label,
        )

    def _closed_quote(self, instrument: Instrument, session: Session) -> MarketSnapshot:
        bar = self.source.bar(instrument.symbol, session)
        return MarketSnapshot(
            instrument=instrument,
            last=bar.close,
            close=bar.close,
            avg_daily_volume=self._known_volume(instrument.symbol, session.day),
            timestamp=session.close,
            synthetic=self.source.synthetic,
            source=self.label,
        )


def canonical_bars(bars: Iterable[Bar]) -> str:
    """sha256 of the canonical JSON of ``bars`` (what the cross-machine checksum pins)."""
    from workbench import canonical

    return canonical.digest(list(bars))
