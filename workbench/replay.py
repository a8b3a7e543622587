"""Which day a run is for, where it runs and on which clock: today live, a past day in a sandbox.

Today's run (the default) runs in the home on the wall clock. A past session is *replayed* in its
own sandbox home inside the main one (``<home>/replay/<YYYY-MM-DD>/``, see ``workbench.home``),
on the paper broker only, with market time fixed at 10:30 New York that day. The audit log still
stamps every event with the wall-clock time it was written; market time lives in the payloads
(snapshot, quote and fill times, the gate's ``evaluated_at``). A future date, or a day without a
session, is refused, naming the sessions around it. The approval panel's and the explore lab's
replay clocks open the same sandbox, never the live home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from workbench.clock import Clock, FixedClock, SystemClock
from workbench.errors import ConfigError, MarketDataError
from workbench.fmt import NEW_YORK
from workbench.home import replay_home, require_home, resolve_home
from workbench.sessions import xnys

REPLAY_TIME = time(10, 30)


class ReplayDateError(ConfigError):
    """A replay asked for a day that cannot be replayed (the future, or no session that day)."""


def market_today(now: datetime | None = None) -> date:
    """Today's date in New York, where the US market keeps its calendar (at ``now``, else on
    the wall clock)."""
    return (now or SystemClock().now()).astimezone(NEW_YORK).date()


@dataclass(frozen=True)
class DayPlan:
    """One run's day, the main home, the home it writes to, and whether it is a replay."""

    day: date
    home: Path
    run_home: Path
    replay: bool

    @property
    def report_dir(self) -> Path:
        """Where the report goes: ``<home>/<day>/`` today, the sandbox itself for a replay."""
        return self.run_home if self.replay else self.home / self.day.isoformat()

    def clock(self) -> Clock:
        """Market time: the wall clock today, 10:30 New York on the replayed day."""
        return replay_clock_of(self.run_home) if self.replay else SystemClock()

    def describe(self) -> str:
        if not self.replay:
            return f"{self.day.isoformat()} live in {self.home}"
        return f"replay of {self.day.isoformat()} in its sandbox {self.run_home}"


def replay_clock_of(sandbox: Path) -> FixedClock:
    """The market clock of a replay sandbox ``…/replay/<day>``: 10:30 New York that day."""
    day = date.fromisoformat(Path(sandbox).name)
    return FixedClock(datetime.combine(day, REPLAY_TIME, tzinfo=NEW_YORK))


def check_replay_day(day: date, today: date) -> None:
    """Refuse a day that cannot be replayed: after ``today``, or one without an XNYS session."""
    cal = xnys()
    try:
        if day > today:
            latest = cal.last_on_or_before(today).day
            raise ReplayDateError(
                f"--as-of {day} is in the future (today is {today} in New York): a replay runs"
                f" a past session only; the latest is {latest}"
            )
        if cal.session(day) is None:
            before, after = cal.last_on_or_before(day).day, cal.next_after(day).day
            raise ReplayDateError(
                f"--as-of {day} is not an XNYS session (a weekend or holiday): the previous"
                f" session is {before}, the next {after}"
            )
    except MarketDataError as exc:
        raise ReplayDateError(f"--as-of {day}: {exc.reason}") from None


def plan_day(
    as_of: date | None, home: str | os.PathLike[str] | None, *, today: date | None = None
) -> DayPlan:
    """Today (``as_of`` None or today) live in the home; a past session as a replay in its
    sandbox. Nothing is checked on disk and nothing is created."""
    today = today or market_today()
    main = resolve_home(home)
    day = as_of or today
    if day == today:
        return DayPlan(day, main, main, replay=False)
    check_replay_day(day, today)
    return DayPlan(day, main, replay_home(main, day), replay=True)


def notebook_home(home: str, clock_at: str) -> tuple[str | Path | None, Clock]:
    """Where a notebook's facade opens and on which market clock, from its ``home`` and
    ``clock_at`` parameters: the home (or the default one) on the wall clock, or for a replay
    time the sandbox of that day on a fixed clock (:func:`replay_at`), never the live home."""
    if clock_at:
        return replay_at(clock_at, home or None)
    return home or None, SystemClock()


def replay_at(
    clock_at: str, home: str | os.PathLike[str] | None, *, now: datetime | None = None
) -> tuple[Path, FixedClock]:
    """The sandbox home and fixed clock for a panel's or lab's replay time ``clock_at`` (ISO
    with a zone): a past instant, whose day's sandbox ``workbench daily --as-of`` created."""
    try:
        when = datetime.fromisoformat(clock_at)
        clock = FixedClock(when)
    except ValueError:
        raise ConfigError(f"clock_at must be ISO-8601 with a zone, got {clock_at!r}") from None
    wall = now or SystemClock().now()
    if when > wall:
        raise ReplayDateError(f"clock_at {clock_at} is in the future: a replay runs the past")
    day = when.astimezone(NEW_YORK).date()
    sandbox = replay_home(home, day)
    try:
        return require_home(sandbox), clock
    except ConfigError:
        raise ReplayDateError(
            f"no replay sandbox for {day} at {sandbox}: a replay clock never opens the live home;"
            f" create the sandbox with `workbench daily --as-of {day}`"
        ) from None
