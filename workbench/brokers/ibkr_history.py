"""IB's historical-data pacing, kept by the adapter on its injected clock. No I/O, no ib_async.

IB refuses (error 162, a pacing violation) identical historical-data requests within 15 seconds
and more than 60 requests in any 10 minutes. :class:`HistoryPacing` answers an identical request
made within 15 s from the answer already received (nothing is asked again), and refuses a
request that would be the 61st in 10 minutes with a :class:`MarketDataError` saying when the
next one may go — before anything is sent, so IB never sees a violation. The two counting rules
are IB's own and run on the adapter's clock (a test's, or the wall clock), which is why they are
these few lines and not a wall-clock rate-limiting library.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from workbench import fmt
from workbench.clock import Clock
from workbench.errors import MarketDataError

T = TypeVar("T")
IDENTICAL = timedelta(seconds=15)
WINDOW = timedelta(minutes=10)
MAX_REQUESTS = 60


class HistoryPacing(Generic[T]):
    """Which historical-data requests may go to IB now (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: deque[datetime] = deque()
        self._answers: dict[Hashable, tuple[datetime, T]] = {}

    def recent(self, key: Hashable) -> T | None:
        """The answer to an identical request made less than 15 s ago, else None."""
        now = self._clock.now()
        with self._lock:
            found = self._answers.get(key)
        if found is None or now - found[0] >= IDENTICAL:
            return None
        return found[1]

    def admit(self, symbol: str) -> None:
        """Count a request about to be sent; refused when it would be the 61st in 10 minutes."""
        now = self._clock.now()
        with self._lock:
            while self._sent and now - self._sent[0] >= WINDOW:
                self._sent.popleft()
            if len(self._sent) >= MAX_REQUESTS:
                free = fmt.ny(self._sent[0] + WINDOW)
                raise MarketDataError(
                    symbol,
                    f"IB's historical-data pacing: {MAX_REQUESTS} requests in the last 10 minutes"
                    f" already; not asked (IB would refuse it); the next may go at {free}",
                )
            self._sent.append(now)

    def answered(self, key: Hashable, answer: T) -> None:
        with self._lock:
            self._answers[key] = (self._clock.now(), answer)
