"""Trading state and circuit-breaker logic, pure: folding events and judging a drawdown.

The I/O side (reading and writing the audit log) is ``workbench.trading_state``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from workbench.events import CircuitBreakerTripped, KillSwitchActivated, KillSwitchReleased
from workbench.models import TradingState
from workbench.policy import CircuitBreakerConfig
from workbench.risk.calendar import TradingDay
from workbench.risk.history import NavPoint, day_peak, drawdown

# Event types (values of ``events.EventType``) that carry a trading state.
KILL_SWITCH_ACTIVATED = "KillSwitchActivated"
KILL_SWITCH_RELEASED = "KillSwitchReleased"
CIRCUIT_BREAKER_TRIPPED = "CircuitBreakerTripped"
STATE_EVENTS = (KILL_SWITCH_ACTIVATED, KILL_SWITCH_RELEASED, CIRCUIT_BREAKER_TRIPPED)


@dataclass(frozen=True, slots=True)
class StateChange:
    """The trading state after one event, who set it and why.

    ``verified`` says whether releases were checked against the approval key (a keyless reader
    reports the state as recorded); ``refused`` lists the seqs of releases that did not verify
    and were ignored.
    """

    state: TradingState
    reason: str
    by: str
    ts: str | None = None
    seq: int | None = None
    verified: bool = True
    refused: tuple[int, ...] = ()


INITIAL = StateChange(TradingState.ACTIVE, "no trading-state event recorded", "workbench")
StatePayload = KillSwitchActivated | KillSwitchReleased | CircuitBreakerTripped


@dataclass(frozen=True, slots=True)
class StateEvent:
    """One trading-state event, typed, and whether its release MAC verified (releases only)."""

    payload: StatePayload
    ts: str | None
    seq: int | None
    mac_ok: bool = False


def state_of(payload: StatePayload) -> TradingState:
    """The state one state event sets."""
    if isinstance(payload, CircuitBreakerTripped):
        return TradingState.HALTED
    if isinstance(payload, KillSwitchReleased):
        return TradingState.ACTIVE
    return payload.state


def fold(events: Iterable[StateEvent], *, check_releases: bool) -> StateChange:
    """The state after the state events, oldest first; ACTIVE if none.

    With ``check_releases`` a release counts only if its MAC verified: one that does not is
    ignored (the state stays) and reported in ``refused``. An activation to REDUCING never lifts
    a HALT: only a release does.
    """
    current, refused = INITIAL, []
    for event in events:
        payload = event.payload
        if isinstance(payload, KillSwitchReleased) and check_releases and not event.mac_ok:
            refused.append(event.seq or 0)
            continue
        state = state_of(payload)
        if current.state is TradingState.HALTED and state is TradingState.REDUCING:
            continue
        current = StateChange(state, payload.reason, payload.by, event.ts, event.seq)
    return replace(current, verified=check_releases, refused=tuple(refused))


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
