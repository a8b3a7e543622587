"""What the gate knows about the past: NAV points, recent submissions and working orders.

Pure data, handed to the gate (the gate never reads the audit log; ``workbench.trading_state``
builds a ``History`` from it). NAV arithmetic shared by the daily-loss rule and the circuit breaker
lives here too: both measure the day from the NAV at the previous session's close (the sessions come
from ``workbench.risk.calendar.trading_day``), never from a fixed 24 hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from workbench.clock import require_aware
from workbench.models import Side

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class NavPoint:
    """The account's net liquidation value at one moment."""

    at: datetime
    nav: Decimal

    def __post_init__(self) -> None:
        require_aware(self.at)
        if not isinstance(self.nav, Decimal) or not self.nav.is_finite():
            raise ValueError(f"nav must be a finite Decimal, got {self.nav!r}")


@dataclass(frozen=True, slots=True)
class Submission:
    """An order that was sent to a broker (an ``OrderSubmitted`` event)."""

    at: datetime
    symbol: str
    side: Side
    quantity: Decimal
    proposal_id: str | None = None

    def __post_init__(self) -> None:
        require_aware(self.at)


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """An order a broker may still fill (submitted and not yet filled, cancelled or rejected)."""

    symbol: str
    side: Side
    quantity: Decimal
    proposal_id: str | None = None


@dataclass(frozen=True)
class History:
    """NAV points (oldest first), the all-time NAV peak, recent submissions, working orders, and
    orders of unknown outcome: their token was spent but no broker acknowledged them (an orphan
    after a crash, an order lost in a reconnect) and no approver has resolved them yet."""

    nav_points: tuple[NavPoint, ...] = ()
    nav_peak: Decimal | None = None
    submissions: tuple[Submission, ...] = ()
    working_orders: tuple[WorkingOrder, ...] = ()
    unresolved: tuple[WorkingOrder, ...] = ()
    _memo: dict[tuple[str, datetime, datetime], Any] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        times = [p.at for p in self.nav_points]
        if times != sorted(times):
            raise ValueError("nav_points must be oldest first")
        if self.nav_peak is not None and not self.nav_peak.is_finite():
            raise ValueError("nav_peak must be finite")

    def _remember(self, key: tuple[str, datetime, datetime], compute: Callable[[], _T]) -> _T:
        """``compute()`` once per ``key`` (the history is frozen: its answers never change)."""
        if key not in self._memo:
            self._memo[key] = compute()
        result: _T = self._memo[key]
        return result

    def day_baseline(
        self, previous_open: datetime, open_: datetime, now: datetime
    ) -> Decimal | None:
        """NAV at the previous session's close (see :func:`close_baseline`), remembered."""
        return self._remember(
            ("baseline", open_, now),
            lambda: close_baseline(self.nav_points, previous_open, open_, now),
        )

    def peak(self) -> Decimal | None:
        """The highest NAV recorded: the larger of ``nav_peak`` and every point held."""
        held = [] if self.nav_peak is None else [self.nav_peak]
        return self._remember(
            ("peak", _EPOCH, _EPOCH),
            lambda: max([p.nav for p in self.nav_points] + held, default=None),
        )

    def sent_within(self, start: datetime, end: datetime) -> tuple[Submission, ...]:
        """Submissions with start < at <= end, remembered per window."""
        return self._remember(
            ("within", start, end),
            lambda: tuple(s for s in self.submissions if start < s.at <= end),
        )

    def sent_since(
        self, start: datetime, end: datetime
    ) -> dict[tuple[str, Side, Decimal], Submission]:
        """The latest submission per (symbol, side, quantity) with start <= at <= end."""

        def latest() -> dict[tuple[str, Side, Decimal], Submission]:
            ordered = sorted((s for s in self.submissions if start <= s.at <= end), key=_at)
            return {(s.symbol, s.side, s.quantity): s for s in ordered}

        return self._remember(("since", start, end), latest)


def _at(submission: Submission) -> datetime:
    return submission.at


def close_baseline(
    points: Sequence[NavPoint],
    previous_open: datetime,
    open_: datetime,
    now: datetime,
    since: datetime | None = None,
) -> Decimal | None:
    """The NAV at the previous session's close: the last point from ``previous_open`` on and
    before ``open_`` (the day's session open), else the day's first NAV (from ``open_`` on).

    Points later than ``now``, and at or before ``since`` (a person's resume), do not count;
    None when no point is left. ``points`` are oldest first.
    """
    at_close: Decimal | None = None
    first_of_day: Decimal | None = None
    for point in points:
        if point.at > now:
            break
        if since is not None and point.at <= since:
            continue
        if previous_open <= point.at < open_:
            at_close = point.nav
        elif point.at >= open_ and first_of_day is None:
            first_of_day = point.nav
    return at_close if at_close is not None else first_of_day


def day_peak(
    points: Sequence[NavPoint],
    previous_open: datetime,
    open_: datetime,
    now: datetime,
    since: datetime | None = None,
) -> Decimal | None:
    """The trading day's highest NAV: the :func:`close_baseline` and every point from ``open_``
    to ``now`` after ``since``; None when there is none."""
    navs = [p.nav for p in points if open_ <= p.at <= now and (since is None or p.at > since)]
    baseline = close_baseline(points, previous_open, open_, now, since)
    if baseline is not None:
        navs.append(baseline)
    return max(navs, default=None)


def drawdown(peak: Decimal, nav: Decimal) -> Decimal:
    """(peak − nav) / peak; a non-positive peak counts as a total loss (1)."""
    if peak <= 0:
        return Decimal(1)
    return (peak - nav) / peak
