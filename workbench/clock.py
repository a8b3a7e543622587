"""Injected clocks: every timestamp the workbench writes comes from one of these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as a timezone-aware datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to (tests, replays, backfills)."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = require_aware(when)

    def advance(self, delta: timedelta) -> datetime:
        self._now = self._now + delta
        return self._now


def require_aware(when: datetime) -> datetime:
    """Return ``when`` unchanged, or raise if it has no timezone."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()} has no timezone")
    return when


def replay_clock(iso_time: str) -> FixedClock:
    """A fixed clock from an ISO time with a zone (replaying a session, tests)."""
    try:
        when = datetime.fromisoformat(iso_time)
    except ValueError:
        raise ValueError(f"clock time must be ISO-8601 with a zone, got {iso_time!r}") from None
    return FixedClock(when)


def describe(clock: Clock) -> str:
    """What a report should say about the clock it ran on."""
    if isinstance(clock, FixedClock):
        return f"replay clock fixed at {clock.now().isoformat()}"
    return "wall clock"
