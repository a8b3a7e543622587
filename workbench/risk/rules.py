"""The risk rules: each ``check_<name>`` reads a :class:`Context` and returns its violations.

A rule returns an empty tuple when the order passes. Severities are fixed here (R17's comes from
the policy); docs/risk-rules.md lists every rule with what it stops, its severity and policy keys.
Rules that guard against *growing* risk (R2, R3, R7, R9, R10, R16) let risk-reducing orders through,
so a breached limit never traps a position that a person wants to close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pydantic import JsonValue

from workbench.canonical import decimal_str, utc_iso
from workbench.intent_hash import plain_decimal
from workbench.models import (
    MarketSnapshot,
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    QuoteFeed,
    RuleId,
    Severity,
    SimResult,
    TradingState,
    Violation,
)
from workbench.policy import RiskPolicy
from workbench.risk.facts import Facts, facts_for
from workbench.risk.history import History, WorkingOrder

BLOCKER, MAJOR, MINOR = Severity.BLOCKER, Severity.MAJOR, Severity.MINOR
PASS: tuple[Violation, ...] = ()
LIMIT_TYPES = frozenset({OrderType.LMT, OrderType.STP_LMT})


@dataclass(slots=True)
class Context:
    """Everything a rule may read; ``computed`` collects figures for the decision.

    ``facts`` holds what does not depend on the intent (shared by a batch, see ``facts``);
    ``quote_age`` is the quote's age in seconds at ``now``.
    """

    intent: OrderIntent
    sim: SimResult
    portfolio: PortfolioSnapshot
    market: MarketSnapshot
    policy: RiskPolicy
    state: TradingState
    history: History
    now: datetime
    computed: dict[str, JsonValue] = field(default_factory=dict)
    facts: Facts = field(init=False)
    quote_age: float = field(init=False)

    def __post_init__(self) -> None:
        self.facts = facts_for(self.policy, self.portfolio, self.history, self.now, self.state)
        self.quote_age = (self.now - self.market.timestamp).total_seconds()


Check = Callable[[Context], Sequence[Violation]]


def deny(rule: RuleId, severity: Severity, message: str, **data: object) -> tuple[Violation]:
    """One violation; Decimals and times in ``data`` are written as canonical strings."""
    found = Violation.model_construct(  # from validated parts: no second validation
        rule_id=rule, severity=severity, message=message[:2000], data=_plain(data)
    )
    return (found,)


def _plain(data: dict[str, object]) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for key, value in data.items():
        if isinstance(value, Decimal):
            out[key] = plain_decimal(value) if value.is_finite() else decimal_str(value)
        elif isinstance(value, datetime):
            out[key] = utc_iso(value)
        elif isinstance(value, frozenset | set | tuple | list):
            out[key] = [str(v) for v in sorted(value, key=str)]
        else:
            out[key] = value if isinstance(value, str | int | bool) else str(value)
    return out


def check_max_notional(c: Context) -> Sequence[Violation]:
    """R1: the order's notional may not exceed the per-trade cap."""
    cap = c.policy.limits.max_notional_per_trade
    if c.sim.notional > cap:
        msg = f"notional {c.sim.notional:f} exceeds the per-trade cap {cap:f}"
        return deny(RuleId.R1_MAX_NOTIONAL, BLOCKER, msg, notional=c.sim.notional, cap=cap)
    return PASS


def check_max_position_weight(c: Context) -> Sequence[Violation]:
    """R2: an order that grows a position may not take it above the max weight of NAV."""
    if not c.sim.opens_or_increases:
        return PASS
    cap = c.policy.limits.max_position_weight
    weight = abs(c.sim.weight_after)
    if weight > cap:
        msg = f"{c.intent.symbol} would be {weight:.4%} of NAV, above the cap {cap:.2%}"
        return deny(RuleId.R2_MAX_POSITION_WEIGHT, BLOCKER, msg, weight_after=weight, cap=cap)
    return PASS


def check_max_positions(c: Context) -> Sequence[Violation]:
    """R3: an order that opens a new position may not take the count above the max."""
    cap = c.policy.limits.max_positions
    opens = c.sim.position_before == 0 and c.sim.position_after != 0
    if opens and c.sim.positions_after > cap:
        msg = f"opening {c.intent.symbol} makes {c.sim.positions_after} positions, above {cap}"
        return deny(RuleId.R3_MAX_POSITIONS, BLOCKER, msg, positions=c.sim.positions_after, cap=cap)
    return PASS


def check_instrument_allowed(c: Context) -> Sequence[Violation]:
    """R4: the instrument's type, exchange and currency are allowlisted and it is not restricted."""
    rules, inst = c.policy.instruments, c.intent.instrument
    found: list[Violation] = []
    r4 = RuleId.R4_INSTRUMENT_ALLOWED
    if inst.type not in rules.allowed_types:
        found += deny(r4, BLOCKER, f"type {inst.type} is not allowed", type=inst.type.value)
    if inst.exchange not in rules.allowed_exchanges:
        found += deny(
            r4, BLOCKER, f"exchange {inst.exchange} is not allowed", exchange=inst.exchange
        )
    if inst.currency not in rules.allowed_currencies:
        found += deny(
            r4, BLOCKER, f"currency {inst.currency} is not allowed", currency=inst.currency
        )
    if inst.symbol in rules.restricted_symbols:
        found += deny(r4, BLOCKER, f"{inst.symbol} is on the restricted list", symbol=inst.symbol)
    return found


def check_order_type(c: Context) -> Sequence[Violation]:
    """R5: the order type is allowed, and carries a limit price when limits are required."""
    rules, kind = c.policy.orders, c.intent.order_type
    found: list[Violation] = []
    if kind not in rules.allowed_order_types:
        found += deny(RuleId.R5_ORDER_TYPE, BLOCKER, f"order type {kind} is not allowed")
    if rules.require_limit_orders and kind not in LIMIT_TYPES:
        found += deny(RuleId.R5_ORDER_TYPE, BLOCKER, f"{kind} has no limit price; limits required")
    return found


def check_trading_state(c: Context) -> Sequence[Violation]:
    """R6: HALTED stops every order; REDUCING stops orders that open or grow a position."""
    if c.state is TradingState.ACTIVE:
        return PASS
    if c.state is TradingState.REDUCING and not c.sim.opens_or_increases:
        return PASS
    halted = c.state is TradingState.HALTED
    why = "trading is HALTED" if halted else "trading is REDUCING: exposure may not grow"
    return deny(RuleId.R6_TRADING_STATE, BLOCKER, why, state=c.state.value)


def check_daily_loss(c: Context) -> Sequence[Violation]:
    """R7: once NAV is down the daily limit from a day ago, exposure may not grow."""
    day = c.facts.daily_loss
    if day is None:
        return deny(RuleId.R7_DAILY_LOSS, MAJOR, "no NAV history: the daily loss is unknown")
    c.computed["daily_loss_pct"] = day.text
    if day.breached and c.sim.opens_or_increases:
        loss, cap = day.loss, day.cap
        msg = f"down {loss:.2%} on the day (limit {cap:.2%}): only risk-reducing orders"
        return deny(RuleId.R7_DAILY_LOSS, BLOCKER, msg, loss=loss, baseline=day.reference, cap=cap)
    return PASS


def check_staleness(c: Context) -> Sequence[Violation]:
    """R8: the quote and the portfolio snapshot are fresh (and not from the future)."""
    rules, skew = c.policy.freshness, c.facts.max_skew
    found: list[Violation] = []
    age, limit = c.quote_age, rules.max_quote_age_seconds
    if age > limit or -age > skew:
        feed = c.market.feed
        what = "quote" if feed is None or feed is QuoteFeed.LIVE else f"{feed.value} quote"
        found += _stale(what, age, limit)
    age, limit = c.facts.portfolio_age, rules.max_portfolio_age_seconds
    if age > limit or -age > skew:
        found += _stale("portfolio snapshot", age, limit)
    if c.market.synthetic:
        found += deny(RuleId.R8_MARKET_DATA_STALE, MINOR, "the quote is synthetic (paper data)")
    return found


def _stale(what: str, age: float, limit: int) -> tuple[Violation]:
    msg = f"{what} is {age:.0f}s old (allowed 0..{limit}s)"
    return deny(RuleId.R8_MARKET_DATA_STALE, BLOCKER, msg, age_seconds=age, limit=limit)


def check_max_drawdown(c: Context) -> Sequence[Violation]:
    """R9: once NAV is the max drawdown below its peak, exposure may not grow."""
    dd = c.facts.drawdown
    c.computed["drawdown_pct"] = dd.text
    if dd.breached and c.sim.opens_or_increases:
        loss, cap = dd.loss, dd.cap
        msg = f"{loss:.2%} below the NAV peak (limit {cap:.2%}): only risk-reducing orders"
        return deny(RuleId.R9_MAX_DRAWDOWN, BLOCKER, msg, drawdown=loss, peak=dd.reference, cap=cap)
    return PASS


def check_max_leverage(c: Context) -> Sequence[Violation]:
    """R10: an order that grows exposure may not take gross leverage above the max."""
    cap = c.policy.limits.max_leverage
    if c.sim.opens_or_increases and c.sim.leverage_after > cap:
        msg = f"leverage after {c.sim.leverage_after:.4f} exceeds {cap:f}"
        return deny(RuleId.R10_MAX_LEVERAGE, BLOCKER, msg, leverage=c.sim.leverage_after, cap=cap)
    return PASS


def check_trading_window(c: Context) -> Sequence[Violation]:
    """R11: the instrument's exchange is in a regular session now (calendar per exchange)."""
    exchange = c.intent.instrument.exchange
    session = c.facts.session(exchange)  # remembered per (exchange, batch)
    if session.open_now:
        return PASS
    code, day, bounds = session.code, session.day, session.bounds
    if code is None:
        return deny(RuleId.R11_TRADING_WINDOW, BLOCKER, f"no trading calendar for {exchange}")
    if bounds is None:
        return deny(RuleId.R11_TRADING_WINDOW, BLOCKER, f"{code} has no session on {day}", day=day)
    opens, closes = bounds
    if not opens <= c.now < closes:
        msg = f"{code} is closed now (session {opens:%H:%M}-{closes:%H:%M} UTC on {day})"
        return deny(RuleId.R11_TRADING_WINDOW, BLOCKER, msg, opens=opens, closes=closes)
    return PASS


def check_price_collar(c: Context) -> Sequence[Violation]:
    """R12: limit and stop prices lie within the collar band around the reference price."""
    ref, band = c.sim.reference_price, c.policy.orders.price_collar_pct
    width = band * ref
    limit, stop = c.intent.limit_price, c.intent.stop_price
    found: list[Violation] = []
    if limit is not None and abs(limit - ref) > width:
        found += _outside_collar("limit", limit, ref, band)
    if stop is not None and abs(stop - ref) > width:
        found += _outside_collar("stop", stop, ref, band)
    return found


def _outside_collar(name: str, price: Decimal, ref: Decimal, band: Decimal) -> tuple[Violation]:
    off = (price - ref) / ref
    msg = f"{name} price {price:f} is {off:+.2%} from the reference {ref:f} (band {band:.2%})"
    return deny(RuleId.R12_PRICE_COLLAR, BLOCKER, msg, price=price, reference=ref)


def check_duplicate(c: Context) -> Sequence[Violation]:
    """R13: no order of unknown outcome on the symbol; the same symbol/side/qty was not sent
    within the window and is not working."""
    i, facts = c.intent, c.facts
    symbol, side = i.instrument.symbol, i.side
    u = facts.unresolved.get(symbol) if facts.unresolved else None
    if u is not None:
        return _unresolved(u)
    pair = (symbol, side)
    s = facts.sent_in_window.get((symbol, side, i.quantity)) if pair in facts.sent_pairs else None
    if s is not None:
        msg = f"the same {side} {i.quantity:f} {symbol} was sent at {utc_iso(s.at)}"
        msg += f" ({s.proposal_id})" if s.proposal_id else ""
        return deny(RuleId.R13_DUPLICATE_ORDER, BLOCKER, msg, proposal_id=s.proposal_id or "")
    w = facts.working.get(pair)
    if w is not None:
        msg = f"a {w.side} {w.quantity:f} {w.symbol} order is already working"
        msg += f" ({w.proposal_id})" if w.proposal_id else ""
        sev = BLOCKER if w.quantity == i.quantity else MAJOR
        return deny(RuleId.R13_DUPLICATE_ORDER, sev, msg, proposal_id=w.proposal_id or "")
    return PASS


def _unresolved(u: WorkingOrder) -> tuple[Violation]:
    pid = u.proposal_id or "?"
    msg = (
        f"{pid} ({u.side} {u.quantity:f} {u.symbol}) was sent but no broker acknowledged it: its"
        f" outcome is unknown, so no new {u.symbol} order goes until an approver resolves it"
        f" (workbench reconcile resolve {pid} --not-sent | --sent-as BROKER_ORDER_ID)"
    )
    return deny(RuleId.R13_DUPLICATE_ORDER, BLOCKER, msg, proposal_id=pid, unresolved=True)


def check_order_rate(c: Context) -> Sequence[Violation]:
    """R14: no more than the max submissions in the last minute."""
    cap = c.policy.flow.max_submits_per_minute
    recent = c.facts.sent_last_minute
    if recent >= cap:
        msg = f"{recent} orders sent in the last minute (max {cap})"
        return deny(RuleId.R14_ORDER_RATE, BLOCKER, msg, recent=recent, cap=cap)
    return PASS


def check_cash_and_shorts(c: Context) -> Sequence[Violation]:
    """R15: no short unless allowed; cash not negative unless margin is allowed and sufficient."""
    limits, sim = c.policy.limits, c.sim
    found: list[Violation] = []
    if not limits.allow_shorts and sim.position_after < 0:
        i = c.intent
        msg = f"{i.side} {i.quantity:f} {i.symbol} with {sim.position_before:f} held would go"
        msg += " short; shorts are not allowed"
        found += deny(RuleId.R15_CASH_AND_SHORTS, BLOCKER, msg, position_after=sim.position_after)
    spends = sim.cash_after < 0 and sim.cash_after < sim.cash_before
    if spends and not limits.allow_margin:
        msg = f"cash after {sim.cash_after:f} is negative and margin is not allowed"
        found += deny(RuleId.R15_CASH_AND_SHORTS, BLOCKER, msg, cash_after=sim.cash_after)
    funds = c.portfolio.available_funds
    if spends and limits.allow_margin and sim.margin_impact > funds:
        msg = f"margin needed {sim.margin_impact:f} exceeds available funds {funds:f}"
        found += deny(RuleId.R15_CASH_AND_SHORTS, BLOCKER, msg, margin=sim.margin_impact)
    return found


def check_protective_stop(c: Context) -> Sequence[Violation]:
    """R16: an opening order carries a protective stop on the losing side of the price."""
    stop, sim = c.intent.protective_stop, c.sim
    if stop is None:
        if c.policy.orders.require_protective_stop and sim.opens_or_increases:
            return deny(RuleId.R16_PROTECTIVE_STOP, BLOCKER, "opening order has no protective stop")
        return PASS
    entry = c.intent.limit_price or sim.reference_price
    price, ref, long = stop.stop_price, sim.reference_price, sim.position_after > 0
    # long: price >= min(entry, ref); short: price <= max(entry, ref)
    wrong = (price >= entry or price >= ref) if long else (price <= entry or price <= ref)
    if wrong and sim.position_after != 0:
        side = "below" if long else "above"
        msg = f"protective stop {stop.stop_price:f} must be {side} the entry {entry:f}"
        return deny(RuleId.R16_PROTECTIVE_STOP, BLOCKER, msg, stop=stop.stop_price, entry=entry)
    return PASS


def check_propagated_signal(c: Context) -> Sequence[Violation]:
    """R17: an order from a propagated signal needs a person (REVIEW) or is refused (REJECT)."""
    if not c.intent.is_propagated:
        return PASS
    severity = BLOCKER if c.policy.propagated_signal == "REJECT" else MAJOR
    return deny(RuleId.R17_PROPAGATED_SIGNAL, severity, "order comes from a propagated signal")


def check_min_order_size(c: Context) -> Sequence[Violation]:
    """R18: the notional is at least the minimum, unless the order closes the position."""
    floor = c.policy.orders.min_order_notional
    if c.sim.notional < floor and c.sim.position_after != 0:
        msg = f"notional {c.sim.notional:f} is below the minimum {floor:f}"
        return deny(RuleId.R18_MIN_ORDER_SIZE, BLOCKER, msg, notional=c.sim.notional, floor=floor)
    return PASS


def check_intent_constraints(c: Context) -> Sequence[Violation]:
    """R19: the intent's own max_notional and max_slippage_bps hold."""
    limits, sim = c.intent.constraints, c.sim
    bps = sim.estimated_slippage / sim.notional * 10_000
    c.computed["slippage_bps"] = format(bps, ".4f")
    found: list[Violation] = []
    if limits.max_notional is not None and sim.notional > limits.max_notional:
        msg = f"notional {sim.notional:f} exceeds the intent's own cap {limits.max_notional:f}"
        found += deny(RuleId.R19_INTENT_CONSTRAINTS, BLOCKER, msg, notional=sim.notional)
    if limits.max_slippage_bps is not None and bps > limits.max_slippage_bps:
        msg = f"slippage {bps:.1f} bps exceeds the intent's own cap {limits.max_slippage_bps:f}"
        found += deny(RuleId.R19_INTENT_CONSTRAINTS, BLOCKER, msg, slippage_bps=bps)
    return found


RULES: tuple[tuple[RuleId, Check], ...] = (
    (RuleId.R1_MAX_NOTIONAL, check_max_notional),
    (RuleId.R2_MAX_POSITION_WEIGHT, check_max_position_weight),
    (RuleId.R3_MAX_POSITIONS, check_max_positions),
    (RuleId.R4_INSTRUMENT_ALLOWED, check_instrument_allowed),
    (RuleId.R5_ORDER_TYPE, check_order_type),
    (RuleId.R6_TRADING_STATE, check_trading_state),
    (RuleId.R7_DAILY_LOSS, check_daily_loss),
    (RuleId.R8_MARKET_DATA_STALE, check_staleness),
    (RuleId.R9_MAX_DRAWDOWN, check_max_drawdown),
    (RuleId.R10_MAX_LEVERAGE, check_max_leverage),
    (RuleId.R11_TRADING_WINDOW, check_trading_window),
    (RuleId.R12_PRICE_COLLAR, check_price_collar),
    (RuleId.R13_DUPLICATE_ORDER, check_duplicate),
    (RuleId.R14_ORDER_RATE, check_order_rate),
    (RuleId.R15_CASH_AND_SHORTS, check_cash_and_shorts),
    (RuleId.R16_PROTECTIVE_STOP, check_protective_stop),
    (RuleId.R17_PROPAGATED_SIGNAL, check_propagated_signal),
    (RuleId.R18_MIN_ORDER_SIZE, check_min_order_size),
    (RuleId.R19_INTENT_CONSTRAINTS, check_intent_constraints),
)
