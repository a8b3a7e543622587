"""The reviewer's view behind ``notebooks/review.ipynb``: the audit log over a date range.

Read-only: it opens the log read-only (an archived, read-only copy works too), verifies the
chain and builds frames — NAV and its one-day drawdown, events by type, gate decisions by rule,
fills with realised P&L, open orders (working stops included) and the trading-state history. It
never writes an event, and never creates a home. ``review_report`` shows these frames as tables
and charts.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from workbench.audit import AuditLog, EventType, VerifyResult
from workbench.errors import ConfigError, WorkbenchError
from workbench.events import BrokerUpdate, KillSwitchReleased, RiskGateEvaluated
from workbench.fmt import NEW_YORK
from workbench.home import DB_NAME, require_home, resolve_policy_dir
from workbench.models import PortfolioSnapshot
from workbench.orders import ACTIVE_STATES, BrokerOrder, OrderRole
from workbench.policy import (
    CircuitBreakerConfig,
    RiskPolicy,
    StrategyParams,
    load_policy,
    load_strategy_params,
)
from workbench.replay import market_today
from workbench.risk.calendar import trading_day
from workbench.risk.history import NavPoint
from workbench.risk.state import StatePayload, judge_breaker, state_of
from workbench.trading_state import LAG

FILL_TYPES = (
    EventType.ORDER_FILLED,
    EventType.ORDER_PARTIALLY_FILLED,
    EventType.BROKER_ORDER_UPDATED,
)
STATE_TYPES = (
    EventType.KILL_SWITCH_ACTIVATED,
    EventType.KILL_SWITCH_RELEASED,
    EventType.CIRCUIT_BREAKER_TRIPPED,
)
RELEASED = EventType.KILL_SWITCH_RELEASED
FILL_COLUMNS = [
    "time",
    "proposal_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "commission",
    "realized_pnl",
    "pnl_pct",
    "currency",
    "broker",
]


def _day(text: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"dates must be YYYY-MM-DD, got {text!r}") from None


def _time(when: str | datetime) -> datetime:
    """A recorded time (an event's ts, or a typed payload's datetime) in UTC."""
    at = datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else when
    return at.astimezone(UTC)


def cost_basis(
    side: str, quantity: Decimal, price: Decimal, commission: Decimal, pnl: Decimal
) -> Decimal:
    """What the shares a fill closed had cost: realised P&L is net of the closing commission,
    so a SELL closed q·avg = q·price − P&L − fee, a BUY (closing a short) q·price + P&L + fee."""
    sign = 1 if side == "SELL" else -1
    return quantity * price - sign * (pnl + commission)


@dataclass
class Review:
    """The audit log from ``since`` (inclusive) to ``until`` (exclusive), New York days."""

    log: AuditLog
    since: datetime
    until: datetime
    policy: RiskPolicy
    params: StrategyParams

    @classmethod
    def open(
        cls, *, home: str = "", since: str = "", until: str = "", policy_dir: str = ""
    ) -> Review:
        """Open the home's log read-only for the range (default: the last 30 days)."""
        today = market_today()
        start = _day(since, today - timedelta(days=30))
        end = _day(until, today + timedelta(days=1))
        if end <= start:
            raise ConfigError(f"until ({end}) must be after since ({start})")
        folder = resolve_policy_dir(policy_dir or None)
        policy, params = load_policy(folder), load_strategy_params(folder)
        lower = datetime.combine(start, time(), tzinfo=NEW_YORK)
        upper = datetime.combine(end, time(), tzinfo=NEW_YORK)
        path = require_home(home or None)  # never creates one; a read-only copy is fine
        return cls(AuditLog(path / DB_NAME, read_only=True), lower, upper, policy, params)

    def close(self) -> None:
        self.log.close()

    def _events(self, *types: EventType) -> list[Any]:
        return self.log.events(types=types, since=self.since, until=self.until)

    def chain(self) -> VerifyResult:
        """Verify the whole chain (not just the range)."""
        return self.log.verify()

    # -- NAV ---------------------------------------------------------------------------------

    def nav(self) -> pd.DataFrame:
        """Every NAV recorded in the range with its one-day drawdown, as the circuit breaker
        read it (see :func:`one_day_drawdowns`): NAVs from the session before the range count
        as the first day's baseline but are not listed."""
        rows = []
        events = self.log.events(
            types=(EventType.PORTFOLIO_SNAPSHOT_TAKEN,), since=self._nav_from(), until=self.until
        )
        for e in events:
            p = e.data_as(PortfolioSnapshot)
            rows.append(
                {
                    "time": _time(p.timestamp),
                    "account": p.account,
                    "currency": p.currency,
                    "nav": p.net_liquidation,
                    "listed": _time(e.ts) >= self.since,
                }
            )
        columns = ["time", "account", "currency", "nav", "drawdown_1d"]
        frame = pd.DataFrame(rows, columns=[*columns, "listed"])
        frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
        releases = [  # market time, as the breaker reads them (as recorded: no key here)
            _time(e.data_as(KillSwitchReleased).market_at)
            for e in self.log.events(types=(RELEASED,))
        ]
        drawdowns: list[Decimal | None] = [None] * len(frame)
        for _, part in frame.groupby("account", sort=False):
            found = one_day_drawdowns(
                [pd.Timestamp(t).to_pydatetime() for t in part["time"]],
                list(part["nav"]),
                releases=releases,
                breaker=self.params.circuit_breaker,
            )
            for i, value in zip(part.index, found, strict=True):
                drawdowns[i] = value
        frame["drawdown_1d"] = pd.Series(drawdowns, index=frame.index, dtype=object)
        return frame[frame["listed"].astype(bool)][columns].reset_index(drop=True)

    def _nav_from(self) -> datetime:
        """Where the NAVs the range's first day is measured from begin: the open of the session
        before the range's first trading day, less the lag a snapshot may have (as the breaker
        reads them); the range's own start when the calendar does not reach back so far."""
        try:
            return min(self.since, trading_day(self.since).previous_open - LAG)
        except WorkbenchError:
            return self.since

    def limits(self) -> dict[str, Decimal]:
        """The drawdown levels the chart draws: the breaker's limit and the warning level (the
        gate's daily-loss limit R7, where it starts allowing only risk-reducing orders)."""
        return {
            "breaker": self.params.circuit_breaker.max_1d_drawdown_pct,
            "warning": self.policy.losses.max_daily_loss_pct,
        }

    # -- events and decisions ----------------------------------------------------------------

    def events_by_type(self) -> pd.DataFrame:
        """How many events of each type fell in the range."""
        frame = self.log.between(self.since, self.until)
        return frame["type"].value_counts().rename_axis("type").reset_index(name="events")

    def decisions(self) -> pd.DataFrame:
        """Gate decisions in the range by outcome (APPROVE / REVIEW / REJECT)."""
        outcomes = Counter(
            e.data_as(RiskGateEvaluated).decision.value
            for e in self._events(EventType.RISK_GATE_EVALUATED)
        )
        return pd.DataFrame(sorted(outcomes.items()), columns=["decision", "decisions"])

    def rejects_by_rule(self) -> pd.DataFrame:
        """How often each rule stopped or flagged an order, as a share of all decisions."""
        decisions = self._events(EventType.RISK_GATE_EVALUATED)
        total = len(decisions)
        by_rule: Counter[tuple[str, str]] = Counter()
        for event in decisions:
            decision = event.data_as(RiskGateEvaluated)
            for v in decision.violations:
                by_rule[(v.rule_id.value, v.severity.value)] += 1
            if decision.fault:
                by_rule[("FAULT", "BLOCKER")] += 1
        rows = [
            {"rule_id": rule, "severity": sev, "count": n, "rate": n / total if total else 0.0}
            for (rule, sev), n in sorted(by_rule.items())
        ]
        return pd.DataFrame(rows, columns=["rule_id", "severity", "count", "rate"])

    # -- fills and orders --------------------------------------------------------------------

    def fills(self) -> pd.DataFrame:
        """Every fill in the range with its commission, realised P&L and that P&L as a share of
        what the closed shares cost (blank for fills that only open)."""
        rows = []
        for event in self._events(*FILL_TYPES):
            update = event.data_as(BrokerUpdate)
            fill = update.fill
            if fill is None:
                continue
            qty, price, fee, pnl = fill.quantity, fill.price, fill.commission, fill.realized_pnl
            basis = cost_basis(fill.side.value, qty, price, fee, pnl)
            rows.append(
                {
                    "time": _time(fill.time),
                    "proposal_id": fill.proposal_id,
                    "symbol": fill.instrument.symbol,
                    "side": fill.side.value,
                    "quantity": qty,
                    "price": price,
                    "commission": fee,
                    "realized_pnl": pnl,
                    "pnl_pct": pnl / basis if pnl != 0 and basis > 0 else None,
                    "currency": fill.currency,
                    "broker": update.broker,
                }
            )
        return pd.DataFrame(rows, columns=FILL_COLUMNS)

    def open_orders(self) -> pd.DataFrame:
        """Orders the broker still holds at the end of the record (working stops included),
        from the latest update of each order in the whole log."""
        latest: dict[str, BrokerOrder] = {}
        for event in self.log.events(types=(*FILL_TYPES, *_ORDER_TYPES)):
            data = event.data
            if isinstance(data, BrokerUpdate) and data.order is not None:
                latest[data.order.order_id] = data.order
        rows = [
            {
                "order_id": o.order_id,
                "proposal_id": o.proposal_id,
                "role": "protective stop" if o.role is OrderRole.PROTECTIVE_STOP else o.role.value,
                "side": o.side.value,
                "quantity": o.remaining,
                "symbol": o.instrument.symbol,
                "type": o.order_type.value,
                "limit": o.limit_price,
                "stop": o.stop_price,
                "tif": o.time_in_force.value,
                "status": o.status.value,
                "since": _time(o.updated_at),
            }
            for o in latest.values()
            if o.status in ACTIVE_STATES
        ]
        columns = ["order_id", "proposal_id", "role", "side", "quantity", "symbol", "type",
                   "limit", "stop", "tif", "status", "since"]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    # -- trading state -----------------------------------------------------------------------

    def trading_states(self) -> pd.DataFrame:
        """Every trading-state change recorded in the range: when, to what, by whom and why.

        As recorded: this read-only view holds no approval key, so it cannot tell a release that
        verifies from one that does not (``workbench status`` and ``doctor`` can)."""
        rows = []
        for e in self._events(*STATE_TYPES):
            data = _state_payload(e)
            rows.append(
                {
                    "time": _time(e.ts),
                    "event": e.type,
                    "state": state_of(data).value,
                    "by": data.by,
                    "reason": data.reason,
                }
            )
        return pd.DataFrame(rows, columns=["time", "event", "state", "by", "reason"])

    def state_before(self) -> str:
        """The trading state recorded as in force when the range starts."""
        before = self.log.events(types=STATE_TYPES, until=self.since, newest_first=True, limit=1)
        return state_of(_state_payload(before[0])).value if before else "ACTIVE"


def _state_payload(event: Any) -> StatePayload:
    data = event.data
    assert isinstance(data, StatePayload)
    return data


_ORDER_TYPES = (
    EventType.ORDER_SUBMITTED,
    EventType.ORDER_CONFIRMED,
    EventType.ORDER_CANCELLED,
    EventType.ORDER_REJECTED,
    EventType.ORDER_PENDING_CONFIRMATION,
)


def one_day_drawdowns(
    times: Sequence[datetime],
    navs: Sequence[Decimal],
    *,
    releases: Sequence[datetime] = (),
    breaker: CircuitBreakerConfig,
) -> list[Decimal]:
    """For each NAV of one account (oldest first), the drawdown the circuit breaker read when
    it was recorded — the breaker's own :func:`~workbench.risk.state.judge_breaker` over the
    trading day of :func:`~workbench.risk.calendar.trading_day`: from the NAV at the previous
    session's close and the peak since, so overnight, weekend and holiday gaps count; only
    NAVs after the last resume before it (``releases``) count, as for the breaker."""
    if list(times) != sorted(times):
        raise ValueError("one_day_drawdowns needs the NAVs oldest first")
    points = [NavPoint(at, nav) for at, nav in zip(times, navs, strict=True)]
    resumed = sorted(releases)
    out: list[Decimal] = []
    for i, point in enumerate(points):
        day = trading_day(point.at)
        first = bisect.bisect_left(times, day.previous_open)  # the breaker reads from there
        k = bisect.bisect_right(resumed, point.at)
        since = resumed[k - 1] if k else None
        check = judge_breaker(breaker, points[first : i + 1], point.nav, point.at, since, day)
        if check.drawdown is None:  # the breaker always reads one; a None is a fault
            raise WorkbenchError(f"no drawdown for the NAV at {point.at.isoformat()}")
        out.append(check.drawdown)
    return out
