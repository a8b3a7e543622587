"""Daily historical bars for the loopback gateway (reqHistoricalData, bar size "1 day" only).

The bars are the workbench's seeded synthetic bars (``workbench.marketdata``), scaled so that the
last completed session closes at the symbol's current close in the book, so history and quotes
tell one story. As IB does during a session, the bar of the session still trading is included
(its open, the range so far, the last price): a client must drop it not to look ahead. Anything
else (another bar size, keepUpToDate, an unreadable duration or end) is refused with error 322; a
symbol without synthetic history gets IB's 162 "no data".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from workbench.errors import MarketDataError
from workbench.marketdata import SyntheticBars
from workbench.sessions import Session, xnys
from workbench.testing.book import Quote
from workbench.testing.wire import Field, Message, message

CENT = Decimal("0.01")
UNITS = {"D": 1, "W": 7, "M": 31, "Y": 366}
NO_DATA = "Historical Market Data Service error message:HMDS query returned no data"
_DURATION = re.compile(r"^(\d{1,4}) ([DWMY])$")
_SOURCE = SyntheticBars()


class HistoryError(ValueError):
    """A historical-data request the gateway answers with an error ``code``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True, slots=True)
class DayBar:
    day: str  # YYYYMMDD
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int

    def scaled(self, factor: Decimal) -> DayBar:
        def move(price: Decimal) -> Decimal:
            return (price * factor).quantize(CENT, ROUND_HALF_UP)

        return DayBar(self.day, move(self.open), move(self.high), move(self.low),
                      move(self.close), self.volume)  # fmt: skip


def parse_end(text: str, now: datetime) -> datetime:
    """IB's endDateTime: empty (now), ``YYYYMMDD HH:MM:SS[ zone]`` or ``YYYYMMDD-HH:MM:SS``
    (read as UTC); never later than now."""
    cleaned = text.strip()
    if not cleaned:
        return now
    try:
        stamp = datetime.strptime(cleaned.replace("-", " ")[:17], "%Y%m%d %H:%M:%S")
    except ValueError:
        raise HistoryError(322, f"cannot read endDateTime {text!r}") from None
    return min(stamp.replace(tzinfo=UTC), now)


def span(duration: str) -> timedelta:
    """IB's durationStr (``N D``, ``N W``, ``N M``, ``N Y``) as calendar time."""
    found = _DURATION.match(duration.strip())
    if found is None:
        raise HistoryError(322, f"cannot read durationStr {duration!r}")
    return timedelta(days=int(found.group(1)) * UNITS[found.group(2)])


def daily_bars(symbol: str, end: datetime, duration: str, quote: Quote | None) -> list[DayBar]:
    """The bars of the sessions in (end - duration, end], the one still trading last."""
    sessions = [s for s in xnys().between(end - span(duration), end) if s.open <= end]
    if not sessions:
        raise HistoryError(162, NO_DATA)
    closed = [_bar(symbol, s) for s in sessions if s.close <= end]
    reference = None if quote is None else quote.close or quote.last
    factor = reference / closed[-1].close if closed and reference else Decimal(1)
    bars = [b.scaled(factor) for b in closed]
    if sessions[-1].close > end:
        bars.append(_partial(_bar(symbol, sessions[-1]).scaled(factor), quote))
    return bars


def _bar(symbol: str, session: Session) -> DayBar:
    try:
        bar = _SOURCE.bar(symbol, session)
    except MarketDataError:
        raise HistoryError(162, NO_DATA) from None
    day = session.day.strftime("%Y%m%d")
    return DayBar(day, bar.open, bar.high, bar.low, bar.close, bar.volume)


def _partial(bar: DayBar, quote: Quote | None) -> DayBar:
    """Today's bar so far: its open, then the last price (the session is not over)."""
    last = quote.last if quote is not None and quote.last is not None else bar.open
    return DayBar(bar.day, bar.open, max(bar.open, last), min(bar.open, last), last, 0)


def historical_data(req_id: int, end: datetime, duration: str, bars: list[DayBar]) -> Message:
    """historicalData (msg 17, no version field): each bar with its WAP and bar count."""
    start = (end - span(duration)).strftime("%Y%m%d %H:%M:%S")
    fields: list[Field] = [req_id, start, end.strftime("%Y%m%d %H:%M:%S"), len(bars)]
    for b in bars:
        wap = ((b.high + b.low + b.close) / 3).quantize(CENT, ROUND_HALF_UP)
        fields += [b.day, b.open, b.high, b.low, b.close, b.volume, wap, 1]
    return message("historicalData", 17, *fields)
