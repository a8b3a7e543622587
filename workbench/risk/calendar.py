"""Regular trading sessions from ``exchange_calendars``, cached (calendars are slow to build).

Only regular-session calendars (XNYS and the like) are meant here: a session is the exchange-local
calendar day's open to close, with holidays, early closes and DST as the calendar knows them.
"""

from __future__ import annotations

import functools
import warnings
from datetime import date, datetime
from typing import Any

import exchange_calendars as xcals

Bounds = tuple[datetime, datetime]


@functools.cache
def _calendar(code: str, year: int) -> Any:
    """The calendar ``code`` covering ``year`` (and one year either side)."""
    with warnings.catch_warnings():  # pandas deprecation chatter from inside exchange_calendars
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar(code, start=f"{year - 1}-01-01", end=f"{year + 1}-12-31")


@functools.cache
def _timezone(code: str, year: int) -> Any:
    return _calendar(code, year).tz


def local_date(code: str, now: datetime) -> date:
    """The exchange-local calendar date at ``now``."""
    return now.astimezone(_timezone(code, now.year)).date()


@functools.lru_cache(maxsize=4096)
def session_bounds(code: str, day: date) -> Bounds | None:
    """(open, close) in UTC of the session on ``day``, or None when the exchange is closed."""
    cal = _calendar(code, day.year)
    label = day.isoformat()
    if not cal.is_session(label):
        return None
    return cal.session_open(label).to_pydatetime(), cal.session_close(label).to_pydatetime()


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
