"""What the rules need that does not depend on the intent, worked out once per batch of intents.

A batch is one (policy, portfolio snapshot, history, now, trading state): the daily cycle judges
many intents against the same ones. Each figure is computed on first use, inside the rule that
uses it, so a figure that raises still fails that rule under its own id (and is not remembered).
All inputs are frozen, so a remembered figure stays true while the batch is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property

from workbench.models import PortfolioSnapshot, Side, TradingState
from workbench.policy import RiskPolicy, policy_hash
from workbench.risk.calendar import Bounds, session_at, trading_day
from workbench.risk.history import History, Submission, WorkingOrder, drawdown

ONE_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class LossFigure:
    """A loss against a reference NAV: the loss, its text for the decision, and the cap."""

    reference: Decimal
    loss: Decimal
    text: str
    cap: Decimal

    @property
    def breached(self) -> bool:
        return self.loss >= self.cap


@dataclass(frozen=True, slots=True)
class Session:
    """The calendar verdict for one exchange now: its code, local day and bounds (None: closed)."""

    code: str | None
    day: date | None = None
    bounds: Bounds | None = None
    open_now: bool = False


def _same_time(a: datetime, b: datetime) -> bool:
    """The same object, or equal wall time in the very same zone (so the same instant)."""
    return a is b or (a == b and a.tzinfo is b.tzinfo and a.fold == b.fold)


class Facts:
    """The intent-independent figures of one batch; see the module doc."""

    def __init__(
        self,
        policy: RiskPolicy,
        portfolio: PortfolioSnapshot,
        history: History,
        now: datetime,
        state: TradingState,
    ) -> None:
        self.policy, self.portfolio, self.history = policy, portfolio, history
        self.now, self.state = now, state
        self.state_text: str = state.value
        self._sessions: dict[str, Session] = {}

    def same_batch(
        self,
        policy: RiskPolicy,
        portfolio: PortfolioSnapshot,
        history: History,
        now: datetime,
        state: TradingState,
    ) -> bool:
        """The very same inputs (identity), and ``now`` the same instant written the same way."""
        return (
            self.portfolio is portfolio
            and self.policy is policy
            and self.history is history
            and self.state is state
            and _same_time(self.now, now)
        )

    @cached_property
    def policy_hash(self) -> str:
        return policy_hash(self.policy)

    @cached_property
    def portfolio_age(self) -> float:
        """Seconds since the portfolio snapshot was taken."""
        return (self.now - self.portfolio.timestamp).total_seconds()

    @cached_property
    def max_skew(self) -> float:
        """How far in the future (seconds) a snapshot may be."""
        return timedelta(seconds=self.policy.freshness.max_clock_skew_seconds).total_seconds()

    @cached_property
    def daily_loss(self) -> LossFigure | None:
        """R7: the loss from the NAV at the previous session's close; None without NAV history."""
        day = trading_day(self.now)
        baseline = self.history.day_baseline(day.previous_open, day.open, self.now)
        if baseline is None:
            return None
        loss = drawdown(baseline, self.portfolio.net_liquidation)
        cap = self.policy.losses.max_daily_loss_pct
        return LossFigure(baseline, loss, format(loss, ".6f"), cap)

    @cached_property
    def drawdown(self) -> LossFigure:
        """R9: the drawdown from the highest NAV recorded (or now, if higher)."""
        nav = self.portfolio.net_liquidation
        peak = max(self.history.peak() or Decimal(0), nav)
        dd = drawdown(peak, nav)
        return LossFigure(peak, dd, format(dd, ".6f"), self.policy.losses.max_drawdown_pct)

    def session(self, exchange: str) -> Session:
        """R11: the session verdict for ``exchange`` now."""
        hit = self._sessions.get(exchange)
        if hit is None:
            hit = self._sessions[exchange] = self._session(exchange)
        return hit

    def _session(self, exchange: str) -> Session:
        code = self.policy.trading_window.calendars.get(exchange)
        if code is None:
            return Session(None)
        day, bounds = session_at(code, self.now)
        is_open = bounds is not None and bounds[0] <= self.now < bounds[1]
        return Session(code, day, bounds, is_open)

    @cached_property
    def sent_in_window(self) -> dict[tuple[str, Side, Decimal], Submission]:
        """R13: the latest submission per (symbol, side, quantity) within the duplicate window."""
        since = self.now - timedelta(seconds=self.policy.flow.duplicate_window_seconds)
        return self.history.sent_since(since, self.now)

    @cached_property
    def sent_pairs(self) -> frozenset[tuple[str, Side]]:
        """R13: the (symbol, side) pairs of ``sent_in_window``: most intents match none, and this
        lookup spares hashing the intent's quantity."""
        return frozenset((symbol, side) for symbol, side, _ in self.sent_in_window)

    @cached_property
    def working(self) -> dict[tuple[str, Side], WorkingOrder]:
        """R13: the first working order per (symbol, side), in the history's order."""
        first: dict[tuple[str, Side], WorkingOrder] = {}
        for w in self.history.working_orders:
            first.setdefault((w.symbol, w.side), w)
        return first

    @cached_property
    def unresolved(self) -> dict[str, WorkingOrder]:
        """R13: the first order of unknown outcome per symbol (any side), in the history's order."""
        first: dict[str, WorkingOrder] = {}
        for u in self.history.unresolved:
            first.setdefault(u.symbol, u)
        return first

    @cached_property
    def sent_last_minute(self) -> int:
        """R14: how many orders were sent in the last minute."""
        return len(self.history.sent_within(self.now - ONE_MINUTE, self.now))


_LAST: list[Facts] = []


def facts_for(
    policy: RiskPolicy,
    portfolio: PortfolioSnapshot,
    history: History,
    now: datetime,
    state: TradingState,
) -> Facts:
    """The batch's facts: the last ones again when the inputs are the same, else fresh ones."""
    last = _LAST[0] if _LAST else None
    if last is not None and last.same_batch(policy, portfolio, history, now, state):
        return last
    facts = Facts(policy, portfolio, history, now, state)
    _LAST[:] = [facts]
    return facts
