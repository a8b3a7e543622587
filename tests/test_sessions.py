"""Exchange sessions and the trading day that R7 and the circuit breaker measure over."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from workbench.errors import MarketDataError
from workbench.risk.calendar import trading_day
from workbench.sessions import xnys


def opened(day: date) -> datetime:
    session = xnys().session(day)
    assert session is not None
    return session.open


@pytest.mark.parametrize(
    ("when", "day", "previous"),
    [
        (datetime(2026, 11, 17, 15, 30, tzinfo=UTC), date(2026, 11, 17), date(2026, 11, 16)),
        (datetime(2026, 11, 17, 21, 30, tzinfo=UTC), date(2026, 11, 17), date(2026, 11, 16)),
        (datetime(2026, 11, 18, 13, 0, tzinfo=UTC), date(2026, 11, 17), date(2026, 11, 16)),
        (datetime(2026, 11, 22, 12, 0, tzinfo=UTC), date(2026, 11, 20), date(2026, 11, 19)),
        (datetime(2026, 11, 26, 15, 30, tzinfo=UTC), date(2026, 11, 25), date(2026, 11, 24)),
        (datetime(2026, 11, 27, 15, 30, tzinfo=UTC), date(2026, 11, 27), date(2026, 11, 25)),
    ],
    ids=["in-session", "after-close", "before-open", "sunday", "thanksgiving", "day-after"],
)
def test_trading_day_runs_from_one_open_to_the_next(
    when: datetime, day: date, previous: date
) -> None:
    """Evenings, nights, weekends and holidays belong to the last session that opened."""
    found = trading_day(when)
    assert (found.open, found.previous_open) == (opened(day), opened(previous))


def test_next_and_previous_sessions_skip_weekends_and_holidays() -> None:
    """Around Thanksgiving 2026 the neighbours of Thursday are Wednesday and Friday."""
    cal = xnys()
    assert cal.next_after(date(2026, 11, 26)).day == date(2026, 11, 27)
    assert cal.last_on_or_before(date(2026, 11, 29)).day == date(2026, 11, 27)
    friday = cal.session(date(2026, 11, 27))
    assert friday is not None and cal.previous(friday).day == date(2026, 11, 25)


def test_outside_the_calendar_is_a_market_data_error() -> None:
    """An instant past the calendar's range is refused, never guessed."""
    with pytest.raises(MarketDataError):
        trading_day(datetime(2045, 1, 3, 15, 0, tzinfo=UTC))
