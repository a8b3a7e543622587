"""The gateway's own clock and scheduler.

In tests the clock stands still until ``advance(seconds)`` moves it, running whatever falls due in
time order: a delayed fill or a refused-connections window is released deterministically, with no
wall-clock sleep. A demo runs the same clock in real time (``realtime=True``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(order=True)
class _Job:
    due: datetime
    seq: int
    action: Callable[[], None] = field(compare=False)


class VirtualClock:
    """Now = start + time advanced (+ wall time elapsed, when ``realtime``)."""

    def __init__(self, start: datetime | None = None, realtime: bool = False) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("the gateway clock needs a timezone-aware start")
        self._start = start.astimezone(UTC)
        self._offset = 0.0
        self.realtime = realtime
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        elapsed = self._offset + (time.monotonic() - self._t0 if self.realtime else 0.0)
        return self._start + timedelta(seconds=elapsed)

    def move_to(self, when: datetime) -> None:
        """Move forward to ``when`` (never backwards)."""
        delta = (when - self.now()).total_seconds()
        if delta > 0:
            self._offset += delta


class Scheduler:
    """Jobs due at gateway-clock times; ``run_due`` runs them in order of time, then of arrival."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self.on_change: Callable[[], None] | None = None

    def call_later(self, seconds: float, action: Callable[[], None]) -> None:
        due = self.clock.now() + timedelta(seconds=max(0.0, seconds))
        heapq.heappush(self._jobs, _Job(due, next(self._seq), action))
        if self.on_change:
            self.on_change()

    def next_due(self) -> datetime | None:
        return self._jobs[0].due if self._jobs else None

    def run_due(self) -> int:
        """Run every job due now (jobs scheduled meanwhile too, if due); returns how many ran."""
        ran = 0
        while self._jobs and self._jobs[0].due <= self.clock.now():
            heapq.heappop(self._jobs).action()
            ran += 1
        return ran

    def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` forward, running each job at its own due time."""
        if seconds < 0:
            raise ValueError("the gateway clock only moves forward")
        target = self.clock.now() + timedelta(seconds=seconds)
        ran = 0
        while self._jobs and self._jobs[0].due <= target:
            job = heapq.heappop(self._jobs)
            self.clock.move_to(job.due)
            job.action()
            ran += 1
        self.clock.move_to(target)
        return ran

    def clear(self) -> None:
        self._jobs.clear()
