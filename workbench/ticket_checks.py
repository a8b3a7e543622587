"""Every gate check of one decision as a row: the figure it judged against its limit.

The gate records only what it found (violations) and the figures it computed; a person also wants
to see what passed and by how much. :func:`check_rows` lays every rule of ``RuleId`` out as
value vs limit, one row per violation (its full message, never cut) and one row per rule that
passed, blockers first, then MAJOR, MINOR and passes. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydantic import JsonValue

from workbench import fmt
from workbench.models import OrderIntent, RiskDecision, RuleId, Severity, SimResult
from workbench.policy import RiskPolicy

OK = "ok"
_RANK = {Severity.BLOCKER.value: 0, Severity.MAJOR.value: 1, Severity.MINOR.value: 2, OK: 3}


@dataclass(frozen=True)
class CheckRow:
    """One rule's verdict on one proposal."""

    rule: str  # "R1"
    name: str  # "max notional"
    outcome: str  # BLOCKER | MAJOR | MINOR | ok
    value: str
    limit: str
    message: str = ""

    @property
    def rank(self) -> int:
        return _RANK[self.outcome]


@dataclass(frozen=True)
class _Facts:
    intent: OrderIntent
    sim: SimResult
    computed: Mapping[str, JsonValue]
    policy: RiskPolicy
    found: Mapping[RuleId, Mapping[str, JsonValue]]  # each violated rule's data

    def figure(self, key: str) -> Decimal | None:
        raw = self.computed.get(key)
        if raw is None or isinstance(raw, bool | list | dict):
            return None
        try:
            return Decimal(str(raw))
        except InvalidOperation:
            return None

    def money(self, value: Decimal | None) -> str:
        return fmt.money(value, self.sim.currency)


Figure = Callable[[_Facts], str]


def _collar(f: _Facts) -> str:
    ref, parts = f.sim.reference_price, []
    for name, p in (("limit", f.intent.limit_price), ("stop", f.intent.stop_price)):
        if p is not None:
            parts.append(f"{name} {fmt.pct((p - ref) / ref, signed=True)} from {fmt.price(ref)}")
    return "; ".join(parts) or "no limit or stop price"


def _stop(f: _Facts) -> str:
    stop = f.intent.protective_stop
    opens = "opens/increases" if f.sim.opens_or_increases else "reduces"
    return f"{fmt.price(stop.stop_price) if stop else 'none'} ({opens})"


def _age(f: _Facts) -> str:
    quote, book = f.figure("quote_age_seconds"), f.figure("portfolio_age_seconds")
    q = fmt.duration(float(quote)) if quote is not None else fmt.DASH
    b = fmt.duration(float(book)) if book is not None else fmt.DASH
    return f"quote {q}, portfolio {b}"


def _loss(key: str) -> Figure:
    return lambda f: fmt.pct(f.figure(key)) if f.figure(key) is not None else "unknown"


def _instrument(f: _Facts) -> str:
    i = f.intent.instrument
    return f"{i.type.value} {i.symbol} on {i.exchange} in {i.currency}"


def _allowed(f: _Facts) -> str:
    r = f.policy.instruments
    restricted = ", ".join(sorted(r.restricted_symbols)) or "none"
    return (
        f"types {', '.join(sorted(t.value for t in r.allowed_types))}; exchanges "
        f"{', '.join(sorted(r.allowed_exchanges))}; currencies "
        f"{', '.join(sorted(r.allowed_currencies))}; restricted: {restricted}"
    )


def _order_types(f: _Facts) -> str:
    o = f.policy.orders
    kinds = ", ".join(sorted(t.value for t in o.allowed_order_types))
    return kinds + ("; a limit price required" if o.require_limit_orders else "")


def _cash(f: _Facts) -> str:
    after = fmt.quantity(f.sim.position_after)
    return f"cash after {f.money(f.sim.cash_after)}, position after {after}"


def _cash_limit(f: _Facts) -> str:
    lim = f.policy.limits
    cash = "cash may go negative (margin)" if lim.allow_margin else "cash ≥ 0 (no margin)"
    return cash + ("; shorts allowed" if lim.allow_shorts else "; position ≥ 0 (no shorts)")


def _slippage(f: _Facts) -> str:
    bps = f.figure("slippage_bps")
    return f"slippage {fmt.amount(bps, 1)} bps, notional {f.money(f.sim.notional)}"


def _own_caps(f: _Facts) -> str:
    c = f.intent.constraints
    bps = f"≤ {fmt.amount(c.max_slippage_bps, 1)} bps" if c.max_slippage_bps is not None else "none"
    cap = f"≤ {f.money(c.max_notional)}" if c.max_notional is not None else "none"
    return f"slippage {bps}; notional {cap}"


# rule → (name, the figure judged, the limit it is judged against)
CHECKS: dict[RuleId, tuple[str, Figure, Figure]] = {
    RuleId.R1_MAX_NOTIONAL: (
        "max notional",
        lambda f: f.money(f.sim.notional),
        lambda f: "≤ " + f.money(f.policy.limits.max_notional_per_trade),
    ),
    RuleId.R2_MAX_POSITION_WEIGHT: (
        "position weight",
        lambda f: (
            fmt.pct(abs(f.sim.weight_after)) + ("" if f.sim.opens_or_increases else " (reduces)")
        ),
        lambda f: "≤ " + fmt.pct(f.policy.limits.max_position_weight),
    ),
    RuleId.R3_MAX_POSITIONS: (
        "open positions",
        lambda f: str(f.sim.positions_after),
        lambda f: f"≤ {f.policy.limits.max_positions}",
    ),
    RuleId.R4_INSTRUMENT_ALLOWED: ("instrument", _instrument, _allowed),
    RuleId.R5_ORDER_TYPE: ("order type", lambda f: f.intent.order_type.value, _order_types),
    RuleId.R6_TRADING_STATE: (
        "trading state",
        lambda f: str(f.computed.get("trading_state", fmt.DASH)),
        lambda f: "ACTIVE (REDUCING: reducing orders only)",
    ),
    RuleId.R7_DAILY_LOSS: (
        "loss on the day",
        _loss("daily_loss_pct"),
        lambda f: "< " + fmt.pct(f.policy.losses.max_daily_loss_pct),
    ),
    RuleId.R8_MARKET_DATA_STALE: (
        "data age",
        _age,
        lambda f: (
            f"quote ≤ {fmt.duration(f.policy.freshness.max_quote_age_seconds)}, portfolio ≤ "
            f"{fmt.duration(f.policy.freshness.max_portfolio_age_seconds)}"
        ),
    ),
    RuleId.R9_MAX_DRAWDOWN: (
        "drawdown from peak",
        _loss("drawdown_pct"),
        lambda f: "< " + fmt.pct(f.policy.losses.max_drawdown_pct),
    ),
    RuleId.R10_MAX_LEVERAGE: (
        "gross leverage after",
        lambda f: f"{fmt.amount(f.sim.leverage_after, 2)}×",
        lambda f: f"≤ {fmt.amount(f.policy.limits.max_leverage, 2)}×",
    ),
    RuleId.R11_TRADING_WINDOW: (
        "trading session",
        lambda f: "closed" if RuleId.R11_TRADING_WINDOW in f.found else "open now",
        lambda f: (
            "regular session of "
            + str(
                f.policy.trading_window.calendars.get(f.intent.instrument.exchange, "no calendar")
            )
        ),
    ),
    RuleId.R12_PRICE_COLLAR: (
        "price collar",
        _collar,
        lambda f: "within ±" + fmt.pct(f.policy.orders.price_collar_pct),
    ),
    RuleId.R13_DUPLICATE_ORDER: (
        "duplicate order",
        lambda f: f"{f.intent.side.value} {fmt.quantity(f.intent.quantity)} {f.intent.symbol}",
        lambda f: (
            "not sent in the last "
            + fmt.duration(f.policy.flow.duplicate_window_seconds)
            + ", not working, no order of unknown outcome on the symbol"
        ),
    ),
    RuleId.R14_ORDER_RATE: (
        "order rate",
        lambda f: (
            f"{f.found[RuleId.R14_ORDER_RATE].get('recent', '?')} sent in the last minute"
            if RuleId.R14_ORDER_RATE in f.found
            else "under the limit"
        ),
        lambda f: f"< {f.policy.flow.max_submits_per_minute} per minute",
    ),
    RuleId.R15_CASH_AND_SHORTS: ("cash and shorts", _cash, _cash_limit),
    RuleId.R16_PROTECTIVE_STOP: (
        "protective stop",
        _stop,
        lambda f: (
            "required on opening orders, on the losing side"
            if f.policy.orders.require_protective_stop
            else "on the losing side, when given"
        ),
    ),
    RuleId.R17_PROPAGATED_SIGNAL: (
        "propagated signal",
        lambda f: "yes" if f.intent.is_propagated else "no",
        lambda f: f"propagated ⇒ {f.policy.propagated_signal}",
    ),
    RuleId.R18_MIN_ORDER_SIZE: (
        "min order size",
        lambda f: f.money(f.sim.notional),
        lambda f: "≥ " + f.money(f.policy.orders.min_order_notional),
    ),
    RuleId.R19_INTENT_CONSTRAINTS: ("intent's own caps", _slippage, _own_caps),
}


def rule_code(rule: RuleId) -> str:
    """ "R1" for R1_MAX_NOTIONAL."""
    return rule.value.split("_", 1)[0]


def check_rows(
    intent: OrderIntent,
    sim: SimResult | None,
    decision: RiskDecision | None,
    policy: RiskPolicy,
) -> tuple[CheckRow, ...]:
    """Every rule's row for one decision, blockers first; () when nothing was judged."""
    if sim is None or decision is None:
        return ()
    found: dict[RuleId, list[tuple[str, str]]] = {}
    for v in decision.violations:
        found.setdefault(v.rule_id, []).append((v.severity.value, v.message))
    data = {v.rule_id: v.data for v in decision.violations}
    facts = _Facts(intent, sim, decision.computed, policy, data)
    rows = []
    for rule, (name, value, limit) in CHECKS.items():
        shown_value, shown_limit = _safe(value, facts), _safe(limit, facts)
        for outcome, message in found.pop(rule, [(OK, "")]):
            rows.append(CheckRow(rule_code(rule), name, outcome, shown_value, shown_limit, message))
    for rule, left in found.items():  # a rule this table does not know: shown, never dropped
        for outcome, message in left:
            rows.append(CheckRow(rule_code(rule), rule.value, outcome, fmt.DASH, fmt.DASH, message))
    return tuple(sorted(rows, key=lambda r: r.rank))  # stable: rule order within a severity


def _safe(figure: Figure, facts: _Facts) -> str:
    """A figure for display; one that cannot be computed shows a dash, never stops the ticket."""
    try:
        return figure(facts)
    except (ArithmeticError, AttributeError, KeyError, TypeError, ValueError):
        return fmt.DASH
