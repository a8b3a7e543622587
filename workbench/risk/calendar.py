"""The gate's view of exchange calendars: session bounds by exchange code and instant.

The sessions themselves come from :mod:`workbench.sessions` (``exchange_calendars``, cached per
exchange); this module only memoises the lookups the gate repeats for every intent.

A *trading day* is what the daily-loss rule (R7) and the circuit breaker measure over: the day's
loss counts from the NAV at the previous session's close, so overnight, weekend and holiday gaps
count, whatever their length in hours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime

from workbench.sessions import calendar

DAY_CALENDAR = "XNYS"  # the calendar whose sessions delimit an account's trading day

Bounds = tuple[datetime, datetime]


def local_date(code: str, now: datetime) -> date:
    """The exchange-local calendar date at ``now``."""
    return calendar(code).local_date(now)


@functools.lru_cache(maxsize=4096)
def session_bounds(code: str, day: date) -> Bounds | None:
    """(open, close) in UTC of the session on ``day``, or None when the exchange is closed."""
    session = calendar(code).session(day)
    return None if session is None else (session.open, session.close)


_AT: dict[tuple[str, datetime], tuple[date, Bounds | None]] = {}


def session_at(code: str, now: datetime) -> tuple[date, Bounds | None]:
    """The exchange-local date at ``now`` and that day's session bounds (None if no session)."""
    hit = _AT.get((code, now))
    if hit is None:
        if len(_AT) > 4096:
            _AT.clear()
        day = local_date(code, now)
        hit = _AT[(code, now)] = (day, session_bounds(code, day))
    return hit


@dataclass(frozen=True, slots=True)
class TradingDay:
    """The trading day an instant belongs to: that of the newest session opened at or before it.

    Its evening, the night and any weekend or holiday after it belong to it until the next session
    opens. Its baseline is the NAV at the previous session's close: the last NAV taken from the
    previous session's open (``previous_open``) and before this session's ``open``; the NAVs
    taken from ``open`` on are the day's own.
    """

    previous_open: datetime
    open: datetime


@functools.lru_cache(maxsize=4096)
def trading_day(now: datetime, code: str = DAY_CALENDAR) -> TradingDay:
    """The :class:`TradingDay` of ``now`` on exchange calendar ``code``."""
    cal = calendar(code)
    current = cal.latest_opened(now)
    return TradingDay(cal.previous(current).open, current.open)
