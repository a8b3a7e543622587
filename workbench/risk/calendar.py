"""The gate's view of exchange calendars: session bounds by exchange code and instant.

The sessions themselves come from :mod:`workbench.sessions` (``exchange_calendars``, cached per
exchange); this module only memoises the lookups the gate repeats for every intent.
"""

from __future__ import annotations

import functools
from datetime import date, datetime

from workbench.sessions import calendar

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
