"""Trading state and circuit-breaker logic, pure: folding events and judging a drawdown.

The I/O side (reading and writing the audit log) is ``workbench.trading_state``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from workbench.models import TradingState
from workbench.policy import CircuitBreakerConfig
from workbench.risk.calendar import TradingDay
from workbench.risk.history import NavPoint, day_peak, drawdown

# Event types (values of ``audit.EventType``) that carry a trading state in their payload.
KILL_SWITCH_ACTIVATED = "KillSwitchActivated"
KILL_SWITCH_RELEASED = "KillSwitchReleased"
CIRCUIT_BREAKER_TRIPPED = "CircuitBreakerTripped"
STATE_EVENTS = (KILL_SWITCH_ACTIVATED, KILL_SWITCH_RELEASED, CIRCUIT_BREAKER_TRIPPED)


@dataclass(frozen=True, slots=True)
class StateChange:
    """The trading state after one event, who set it and why."""

    state: TradingState
    reason: str
    by: str
    ts: str | None = None
    seq: int | None = None


INITIAL = StateChange(TradingState.ACTIVE, "no trading-state event recorded", "workbench")


def state_of(type_: str, payload: Mapping[str, Any]) -> TradingState:
    """The state one state event sets; a malformed event raises ValueError (never ACTIVE)."""
    if type_ == CIRCUIT_BREAKER_TRIPPED:
        return TradingState.HALTED
    state = TradingState(str(payload["state"]))
    if type_ == KILL_SWITCH_RELEASED and state is not TradingState.ACTIVE:
        raise ValueError(f"a release must set ACTIVE, not {state}")
    if type_ == KILL_SWITCH_ACTIVATED and state is TradingState.ACTIVE:
        raise ValueError("an activation must set REDUCING or HALTED")
    return state


def fold(events: Iterable[tuple[str, Mapping[str, Any], str | None, int | None]]) -> StateChange:
    """The state after (type, payload, ts, seq) state events, oldest first; ACTIVE if none."""
    current = INITIAL
    for type_, payload, ts, seq in events:
        if type_ not in STATE_EVENTS:
            continue
        state = state_of(type_, payload)
        current = StateChange(state, str(payload.get("reason", "")), str(payload["by"]), ts, seq)
    return current


@dataclass(frozen=True, slots=True)
class BreakerCheck:
    """The breaker's reading at one snapshot: peak, drawdown and whether it trips."""

    nav: Decimal
    peak: Decimal | None
    drawdown: Decimal | None
    limit: Decimal
    trips: bool


def judge_breaker(
    config: CircuitBreakerConfig,
    points: Iterable[NavPoint],
    nav: Decimal,
    now: datetime,
    since: datetime | None,
    day: TradingDay,
) -> BreakerCheck:
    """Trip when NAV is ``max_1d_drawdown_pct`` or more below the trading day's peak: the NAV at
    the previous session's close, and every NAV since (overnight, weekend and holiday gaps count).

    Only points after ``since`` (the last release) count, so a person's resume starts afresh.
    A non-positive NAV always trips. A disabled breaker never trips.
    """
    limit = config.max_1d_drawdown_pct
    peak = day_peak(tuple(points), day.previous_open, day.open, now, since)
    peak = nav if peak is None else max(peak, nav)
    dd = drawdown(peak, nav)
    trips = config.enabled and (nav <= 0 or dd >= limit)
    return BreakerCheck(nav, peak, dd, limit, trips)
