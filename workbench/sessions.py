"""Exchange trading sessions from ``exchange_calendars``, built once per exchange, kept in memory.

Building an exchange calendar takes a fraction of a second, so :func:`calendar` caches one per
exchange code covering 2000–2040 as plain Python lists; every lookup after that is a bisect.
Holidays, early closes and daylight-saving changes come from the calendar, never from hand-written
rules. :func:`xnys` is the New York Stock Exchange's.
"""

from __future__ import annotations

import bisect
import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo

from workbench.clock import require_aware
from workbench.errors import MarketDataError

CALENDAR = "XNYS"
FIRST_DAY = date(2000, 1, 3)
LAST_DAY = date(2040, 12, 31)


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day: its date and its open and close as aware UTC datetimes."""

    day: date
    open: datetime
    close: datetime

    def contains(self, when: datetime) -> bool:
        """True while the market is open: ``open <= when < close``."""
        return self.open <= when < self.close


class SessionCalendar:
    """Sessions of one exchange, looked up by date or by instant."""

    def __init__(self, name: str, sessions: Sequence[Session], tz: tzinfo = UTC) -> None:
        self.name = name
        self.tz = tz
        self._sessions = tuple(sessions)
        self._days = [s.day for s in self._sessions]
        self._opens = [s.open for s in self._sessions]
        self._closes = [s.close for s in self._sessions]

    def _check_day(self, day: date) -> None:
        if not self._days[0] <= day <= self._days[-1]:
            raise MarketDataError(self.name, f"{day} is outside the calendar's range")

    def local_date(self, when: datetime) -> date:
        """The exchange-local calendar date at ``when``."""
        return require_aware(when).astimezone(self.tz).date()

    def session(self, day: date) -> Session | None:
        """The session on ``day``, or None when the exchange is closed all day."""
        self._check_day(day)
        i = bisect.bisect_left(self._days, day)
        return self._sessions[i] if i < len(self._days) and self._days[i] == day else None

    def session_at(self, when: datetime) -> Session | None:
        """The session open at ``when``, or None outside trading hours."""
        self._check_day(require_aware(when).astimezone(UTC).date())
        i = bisect.bisect_right(self._opens, when) - 1
        return self._sessions[i] if i >= 0 and self._sessions[i].contains(when) else None

    def last_closed(self, when: datetime) -> Session:
        """The newest session whose close is at or before ``when``."""
        self._check_day(require_aware(when).astimezone(UTC).date())
        i = bisect.bisect_right(self._closes, when) - 1
        if i < 0:
            raise MarketDataError(self.name, f"no session closed before {when.isoformat()}")
        return self._sessions[i]

    def ending(self, day: date, n: int) -> tuple[Session, ...]:
        """The ``n`` sessions ending on ``day`` (inclusive), oldest first."""
        self._check_day(day)
        stop = bisect.bisect_right(self._days, day)
        if n < 1 or stop < n:
            raise MarketDataError(self.name, f"fewer than {n} sessions end on {day}")
        return self._sessions[stop - n : stop]

    def next_open(self, when: datetime) -> Session:
        """The first session opening after ``when`` (the next time the market opens)."""
        self._check_day(require_aware(when).astimezone(UTC).date())
        i = bisect.bisect_right(self._opens, when)
        if i >= len(self._sessions):
            raise MarketDataError(self.name, f"no session after {when.isoformat()}")
        return self._sessions[i]

    def latest_opened(self, when: datetime) -> Session:
        """The newest session whose open is at or before ``when`` (the current trading day's,
        or, before today's open, the last one's)."""
        self._check_day(require_aware(when).astimezone(UTC).date())
        i = bisect.bisect_right(self._opens, when) - 1
        if i < 0:
            raise MarketDataError(self.name, f"no session opened before {when.isoformat()}")
        return self._sessions[i]

    def previous(self, session: Session, n: int = 1) -> Session:
        """The session ``n`` sessions before ``session``."""
        i = bisect.bisect_left(self._days, session.day) - n
        if i < 0:
            raise MarketDataError(self.name, f"no session {n} before {session.day}")
        return self._sessions[i]

    def next_after(self, day: date) -> Session:
        """The first session strictly after ``day``."""
        self._check_day(day)
        i = bisect.bisect_right(self._days, day)
        if i >= len(self._sessions):
            raise MarketDataError(self.name, f"no session after {day} in the calendar")
        return self._sessions[i]

    def last_on_or_before(self, day: date) -> Session:
        """The newest session on or before ``day``."""
        self._check_day(day)
        i = bisect.bisect_right(self._days, day) - 1
        if i < 0:
            raise MarketDataError(self.name, f"no session on or before {day}")
        return self._sessions[i]

    def between(self, start: datetime, end: datetime) -> tuple[Session, ...]:
        """Sessions overlapping ``[start, end]``: closing after ``start``, opening by ``end``."""
        first = bisect.bisect_right(self._closes, start)
        stop = bisect.bisect_right(self._opens, end)
        return self._sessions[first:stop]


@functools.cache
def calendar(code: str) -> SessionCalendar:
    """The regular sessions of exchange ``code`` (e.g. XNYS), built once per process."""
    import exchange_calendars  # slow to import: only when first needed

    with warnings.catch_warnings():  # its pandas deprecation notices are not ours to act on
        warnings.simplefilter("ignore")
        cal = exchange_calendars.get_calendar(code, start=FIRST_DAY, end=LAST_DAY)
        schedule = cal.schedule
    sessions = [
        Session(day.date(), _utc(row.open), _utc(row.close))
        for day, row in zip(schedule.index, schedule.itertuples(), strict=True)
    ]
    return SessionCalendar(code, sessions, ZoneInfo(str(cal.tz)))


def xnys() -> SessionCalendar:
    """The New York Stock Exchange calendar."""
    return calendar(CALENDAR)


def _utc(stamp: object) -> datetime:
    when = stamp.to_pydatetime()  # type: ignore[attr-defined]
    assert isinstance(when, datetime)
    return when.astimezone(UTC)
