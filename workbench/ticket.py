"""The order ticket: what an approver must see before approving one proposal, in one component.

:func:`build_ticket` is pure: it turns typed inputs (:class:`TicketInputs` — the intent, its
simulation, the gate's decision, the portfolio it was judged on, the quote time, the policy, the
clock's now) into an :class:`OrderTicket` of display-ready lines. ``workbench.ticket_view``
renders it as text (the CLI) or HTML (the panel, the report); ``workbench.ticket_source`` is the
one adapter that gathers the inputs from the facade.

The ticket shows: side, quantity, symbol, order type, limit and TIF; the bracket's stop and how it
was set (k × ATR); the notional; the money and share of NAV at risk to the stop; estimated
commission and slippage; cash, buying power, margin, position and weight before → after; every
gate check as value against limit, blockers first, never truncated; the decision and quote times
in New York time and the quote's age; the policy hash; and flags for a proposal from an earlier
session or a policy that has changed since it was judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from workbench import fmt
from workbench.brokers.base import BrokerOrder, Fill, OrderRole, OrderStatus
from workbench.models import (
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    RiskDecision,
    Side,
    SimResult,
)
from workbench.policy import RiskPolicy
from workbench.ticket_checks import CheckRow, check_rows

ATR_DAYS = 14


@dataclass(frozen=True)
class StopRule:
    """How the strategy sets a protective stop: entry ∓ ``multiplier`` × ATR(``days``)."""

    multiplier: Decimal
    atr: Decimal | None  # the symbol's ATR per share on the proposal's day; None if unknown
    days: int = ATR_DAYS


@dataclass(frozen=True)
class TicketInputs:
    """Everything a ticket is built from, typed; nothing is read from anywhere else."""

    proposal_id: str
    intent: OrderIntent
    state: str
    broker: str
    proposed_at: datetime  # market time it was proposed and judged at (a replay: its day)
    now: datetime
    policy: RiskPolicy
    policy_hash: str  # of ``policy``, the policy in force now
    margin_rate: Decimal  # initial margin rate of the cost model (buying power estimate)
    stop_rule: StopRule
    sim: SimResult | None = None
    decision: RiskDecision | None = None
    fault: str | None = None  # why the proposal could not be simulated (REJECTED without a gate)
    portfolio: PortfolioSnapshot | None = None  # the snapshot the decision was made on
    quote_at: datetime | None = None  # the time of the quote the decision was made on
    orders: tuple[BrokerOrder, ...] = ()  # the broker's orders for it (latest of each), if sent
    fills: tuple[Fill, ...] = ()


@dataclass(frozen=True)
class Line:
    """One labelled figure."""

    label: str
    value: str
    key: str = ""  # a stable name for styling and tests ("stop", "risk", …)


@dataclass(frozen=True)
class Change:
    """One account figure before and after the order (as simulated)."""

    label: str
    before: str
    after: str


@dataclass(frozen=True)
class Execution:
    """What the broker did with the order: the fill, its commission and the working stop."""

    status: str
    filled: str
    avg_price: str
    commission: str
    stop: str  # the protective stop order and whether it is working

    def text(self) -> str:
        return (
            f"{self.status}: filled {self.filled} @ {self.avg_price}, commission "
            f"{self.commission}; stop {self.stop}"
        )


@dataclass(frozen=True)
class OrderTicket:
    """A proposal ready to show: every line already formatted; raw figures for checks."""

    proposal_id: str
    headline: str
    decision: str  # APPROVE | REVIEW | REJECT | FAULT | "—"
    state: str
    broker: str
    order: tuple[Line, ...]
    risk: tuple[Line, ...]
    changes: tuple[Change, ...]
    checks: tuple[CheckRow, ...]
    times: tuple[Line, ...]
    flags: tuple[str, ...]
    fault: str | None = None
    execution: Execution | None = None
    risk_amount: Decimal | None = None
    risk_of_nav: Decimal | None = None
    from_earlier_session: bool = False


# -- building ------------------------------------------------------------------------------------


def build_ticket(inp: TicketInputs) -> OrderTicket:
    """The ticket for one proposal (pure: the same inputs give the same ticket)."""
    intent, sim = inp.intent, inp.sim
    earlier = _earlier_session(inp.proposed_at, inp.now)
    amount, of_nav = _risk_to_stop(intent, sim)
    decision = inp.decision.decision.value if inp.decision else ("FAULT" if inp.fault else "—")
    return OrderTicket(
        proposal_id=inp.proposal_id,
        headline=headline(intent),
        decision=decision,
        state=inp.state,
        broker=inp.broker,
        order=_order_lines(intent),
        risk=_risk_lines(inp, amount, of_nav),
        changes=_changes(inp),
        checks=check_rows(intent, sim, inp.decision, inp.policy),
        times=_time_lines(inp),
        flags=_flags(inp, earlier),
        fault=inp.fault,
        execution=execution(inp.orders, inp.fills, intent.instrument.currency),
        risk_amount=amount,
        risk_of_nav=of_nav,
        from_earlier_session=earlier,
    )


def headline(intent: OrderIntent) -> str:
    """ "BUY 31 SPY LMT 645.25 DAY" — the order in one line."""
    parts = [intent.side.value, fmt.quantity(intent.quantity), intent.symbol]
    parts.append(intent.order_type.value)
    if intent.stop_price is not None:
        parts.append(f"stop {fmt.price(intent.stop_price)}")
    if intent.limit_price is not None:
        parts.append(fmt.price(intent.limit_price))
    parts.append(intent.time_in_force.value)
    return " ".join(parts)


def _order_lines(intent: OrderIntent) -> tuple[Line, ...]:
    inst = intent.instrument
    source = intent.source.value + (" (PROPAGATED signal)" if intent.is_propagated else "")
    lines = [
        Line("Side", intent.side.value, "side"),
        Line("Quantity", fmt.quantity(intent.quantity), "quantity"),
        Line("Symbol", f"{inst.symbol} ({inst.type.value}, {inst.exchange}, {inst.currency})"),
        Line("Order type", intent.order_type.value, "order_type"),
        Line("Limit", fmt.price(intent.limit_price), "limit"),
    ]
    if intent.stop_price is not None:
        lines.append(Line("Stop trigger", fmt.price(intent.stop_price)))
    lines += [
        Line("Time in force", intent.time_in_force.value, "tif"),
        Line("Source", f"{source}; {intent.strategy_tag or 'no strategy tag'}"),
        Line("Reason", intent.reason or fmt.DASH),
    ]
    return tuple(lines)


def _entry(intent: OrderIntent, sim: SimResult) -> Decimal:
    """The price the order is assumed to fill at: its limit (or stop), else the reference."""
    return intent.limit_price or intent.stop_price or sim.reference_price


def _risk_to_stop(intent: OrderIntent, sim: SimResult | None) -> tuple[Decimal | None, ...]:
    """(money lost if filled at the entry and stopped out at the stop, that as a share of NAV)."""
    if sim is None or sim.nav_before <= 0:
        return None, None
    stop = intent.protective_stop
    if stop is None:
        if not sim.opens_or_increases:
            return Decimal(0), Decimal(0)
        return sim.notional, sim.notional / sim.nav_before
    gap = _entry(intent, sim) - stop.stop_price
    loss = intent.quantity * (gap if intent.side is Side.BUY else -gap)
    loss = max(loss, Decimal(0))
    return loss, loss / sim.nav_before


def stop_text(intent: OrderIntent, sim: SimResult | None, rule: StopRule) -> str:
    """The bracket's stop and how it was set (k × ATR), in words."""
    stop = intent.protective_stop
    if stop is None:
        if sim is not None and not sim.opens_or_increases:
            return "none: the order reduces the position (no stop needed)"
        return "NONE: an opening order without a protective stop"
    order = f"{fmt.price(stop.stop_price)}"
    if stop.limit_price is not None:
        order += f" (stop-limit {fmt.price(stop.limit_price)})"
    rule_text = (
        f"strategy: entry {'−' if intent.side is Side.BUY else '+'} "
        f"{fmt.quantity(rule.multiplier)} × ATR({rule.days})"
    )
    if sim is None:
        return f"{order}; {rule_text}"
    gap = abs(sim.reference_price - stop.stop_price)
    where = "below" if stop.stop_price < sim.reference_price else "above"
    if rule.atr is None or rule.atr <= 0:
        return f"{order}, {fmt.amount(gap)} {where} the reference; ATR unknown; {rule_text}"
    times = gap / rule.atr
    return (
        f"{order} = {fmt.price(sim.reference_price)} {'−' if where == 'below' else '+'} "
        f"{fmt.amount(times, 1)} × ATR({rule.days}) {fmt.amount(rule.atr)}; {rule_text}"
    )


def _risk_lines(
    inp: TicketInputs, amount: Decimal | None, of_nav: Decimal | None
) -> tuple[Line, ...]:
    intent, sim = inp.intent, inp.sim
    ccy = sim.currency if sim else intent.instrument.currency
    lines = [Line("Stop (bracket)", stop_text(intent, sim, inp.stop_rule), "stop")]
    if sim is None:
        return (*lines, Line("Notional", "not simulated", "notional"))
    lines.append(Line("Notional", fmt.money(sim.notional, ccy), "notional"))
    lines.append(Line("At risk to the stop", _risk_words(intent, sim, amount, of_nav), "risk"))
    lines.append(Line("Est. commission", fmt.money(sim.fees, ccy), "commission"))
    bps = sim.estimated_slippage / sim.notional * 10_000 if sim.notional else Decimal(0)
    slip = f"{fmt.money(sim.estimated_slippage, ccy)} ({fmt.amount(bps, 1)} bps)"
    lines.append(Line("Est. slippage", slip, "slippage"))
    return tuple(lines)


def _risk_words(
    intent: OrderIntent, sim: SimResult, amount: Decimal | None, of_nav: Decimal | None
) -> str:
    ccy = sim.currency
    if amount is None or of_nav is None:
        return fmt.DASH
    stop = intent.protective_stop
    if stop is None:
        if not sim.opens_or_increases:
            return "no new risk: the order reduces the position"
        return f"{fmt.money(amount, ccy)} ({fmt.pct(of_nav)} of NAV): no stop, all of it"
    entry, qty = fmt.price(_entry(intent, sim)), fmt.quantity(intent.quantity)
    stop_at = fmt.price(stop.stop_price)
    how = (
        f"{qty} × ({entry} − {stop_at})"
        if intent.side is Side.BUY
        else f"{qty} × ({stop_at} − {entry})"
    )
    return f"{fmt.money(amount, ccy)} ({fmt.pct(of_nav)} of NAV) = {how}, before costs"


def _changes(inp: TicketInputs) -> tuple[Change, ...]:
    sim, snap = inp.sim, inp.portfolio
    if sim is None:
        return ()
    ccy = sim.currency

    def m(value: Decimal | None) -> str:
        return fmt.money(value, ccy)

    weight_before = (
        sim.position_before * sim.reference_price / sim.nav_before if sim.nav_before else None
    )
    rows = [
        Change("Cash", m(sim.cash_before), m(sim.cash_after)),
        Change("Net liquidation", m(sim.nav_before), m(sim.nav_after)),
    ]
    if snap is not None:
        funds_after = snap.available_funds + (sim.nav_after - sim.nav_before) - sim.margin_impact
        power_after = max(Decimal(0), funds_after / inp.margin_rate) if inp.margin_rate else None
        rows += [
            Change("Buying power (est.)", m(snap.buying_power), m(power_after)),
            Change("Available funds (est.)", m(snap.available_funds), m(funds_after)),
            Change(
                "Initial margin (est.)",
                m(snap.init_margin),
                m(snap.init_margin + sim.margin_impact),
            ),
        ]
    symbol = inp.intent.symbol
    rows += [
        Change(
            f"Position {symbol}",
            fmt.quantity(sim.position_before),
            fmt.quantity(sim.position_after),
        ),
        Change(f"Weight {symbol}", fmt.pct(weight_before), fmt.pct(sim.weight_after)),
        Change(
            "Gross leverage",
            f"{fmt.amount(_leverage_before(snap, sim), 2)}×",
            f"{fmt.amount(sim.leverage_after, 2)}×",
        ),
    ]
    return tuple(rows)


def _leverage_before(snap: PortfolioSnapshot | None, sim: SimResult) -> Decimal | None:
    if snap is None or snap.net_liquidation <= 0:
        return None
    return snap.gross_exposure / snap.net_liquidation


def _time_lines(inp: TicketInputs) -> tuple[Line, ...]:
    d = inp.decision
    lines = [Line("Proposed", fmt.ny(inp.proposed_at), "proposed")]
    if d is not None:
        lines.append(Line("Decided", fmt.ny(d.evaluated_at), "decided"))
    if inp.quote_at is not None:
        at_decision = d.computed.get("quote_age_seconds") if d is not None else None
        age_then = (
            fmt.duration(float(at_decision)) if isinstance(at_decision, int | float) else fmt.DASH
        )
        age_now = fmt.duration((inp.now - inp.quote_at).total_seconds())
        lines.append(
            Line(
                "Quote",
                f"{fmt.ny(inp.quote_at)}; {age_then} old at the decision, {age_now} old now",
                "quote",
            )
        )
    hash_text = fmt.short_hash(d.policy_hash if d else None, 16)
    lines.append(Line("Policy hash", hash_text, "policy"))
    lines.append(Line("Now", fmt.ny(inp.now), "now"))
    return tuple(lines)


def _earlier_session(proposed_at: datetime, now: datetime) -> bool:
    """Proposed on an earlier New York day than today: its prices and checks are from then."""
    return proposed_at.astimezone(fmt.NEW_YORK).date() < now.astimezone(fmt.NEW_YORK).date()


def _flags(inp: TicketInputs, earlier: bool) -> tuple[str, ...]:
    flags = []
    if earlier:
        flags.append(
            f"EARLIER SESSION: proposed {fmt.ny_day(inp.proposed_at)}, today is "
            f"{fmt.ny_day(inp.now)}. Its prices and checks are from then; Submit judges it "
            "again on fresh data."
        )
    d = inp.decision
    if d is not None and d.policy_hash != inp.policy_hash:
        flags.append(
            f"POLICY CHANGED: judged under policy {fmt.short_hash(d.policy_hash)}, the policy "
            f"now is {fmt.short_hash(inp.policy_hash)} (limits shown are today's); Submit "
            "judges it again."
        )
    if inp.fault:
        flags.append(f"NOT SIMULATED: {inp.fault}")
    if inp.intent.is_propagated:
        flags.append("PROPAGATED SIGNAL: this order comes from a propagated (LLM-linked) signal.")
    return tuple(flags)


# -- the broker's answer ---------------------------------------------------------------------


def execution(
    orders: tuple[BrokerOrder, ...], fills: tuple[Fill, ...], currency: str
) -> Execution | None:
    """The parent's fill and commission and the protective stop's state; None if never sent."""
    parent = next((o for o in orders if o.role is OrderRole.PARENT), None)
    if parent is None:
        return None
    own = [f for f in fills if f.order_id == parent.order_id]
    commission = sum((f.commission for f in own), Decimal(0))
    stop = next((o for o in orders if o.role is OrderRole.PROTECTIVE_STOP), None)
    return Execution(
        status=parent.status.value.upper(),
        filled=f"{fmt.quantity(parent.filled_quantity)} of {fmt.quantity(parent.quantity)}",
        avg_price=fmt.price(parent.avg_fill_price),
        commission=fmt.money(commission, currency),
        stop=_stop_order_text(stop),
    )


def _stop_order_text(stop: BrokerOrder | None) -> str:
    if stop is None:
        return "none"
    working = {
        OrderStatus.SUBMITTED: "WORKING",
        OrderStatus.PRE_SUBMITTED: "held until the parent fills",
        OrderStatus.PARTIALLY_FILLED: "WORKING (partly filled)",
    }.get(stop.status, stop.status.value.upper())
    kind = "STP" if stop.order_type is OrderType.STP else stop.order_type.value
    return (
        f"{stop.side.value} {fmt.quantity(stop.quantity)} {stop.instrument.symbol} {kind} "
        f"{fmt.price(stop.stop_price)} {stop.time_in_force.value}: {working}"
    )
