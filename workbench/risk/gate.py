"""The risk gate: a pure function from (intent, simulation, snapshots, policy, state, history, now)
to a :class:`RiskDecision` carrying every violation.

Every rule in :data:`RULES` runs on every call; there is no switch that skips one. A rule that
raises becomes a BLOCKER under its own id. Any BLOCKER ⇒ REJECT; else any MAJOR ⇒ REVIEW; else
APPROVE (MINOR findings ride along as warnings).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import JsonValue

from workbench.clock import require_aware
from workbench.errors import RiskInputError
from workbench.intent_hash import intent_hash
from workbench.models import (
    Decision,
    MarketSnapshot,
    OrderIntent,
    PortfolioSnapshot,
    RiskDecision,
    Severity,
    SimResult,
    TradingState,
    Violation,
)
from workbench.policy import RiskPolicy
from workbench.risk.history import History
from workbench.risk.rules import RULES, Context


def decide(violations: tuple[Violation, ...]) -> Decision:
    """BLOCKER ⇒ REJECT, else MAJOR ⇒ REVIEW, else APPROVE."""
    if not violations:
        return Decision.APPROVE
    severities = {v.severity for v in violations}
    if Severity.BLOCKER in severities:
        return Decision.REJECT
    if Severity.MAJOR in severities:
        return Decision.REVIEW
    return Decision.APPROVE


def _check_inputs(
    intent: OrderIntent, sim: SimResult, portfolio: PortfolioSnapshot, market: MarketSnapshot
) -> str:
    digest = intent_hash(intent)
    if sim.intent_hash != digest:
        raise RiskInputError("the simulation is of another intent")
    if portfolio.account != intent.account:
        raise RiskInputError(f"portfolio of {portfolio.account}, intent for {intent.account}")
    if market.instrument.symbol != intent.instrument.symbol:
        raise RiskInputError(f"quote for {market.instrument.symbol}, intent for {intent.symbol}")
    return digest


def _computed(c: Context) -> dict[str, JsonValue]:
    sim = c.sim
    figures: dict[str, JsonValue] = {
        "notional": str(sim.notional),
        "reference_price": str(sim.reference_price),
        "weight_after": str(sim.weight_after),
        "concentration_after": str(sim.concentration_after),
        "leverage_after": str(sim.leverage_after),
        "cash_after": str(sim.cash_after),
        "nav_after": str(sim.nav_after),
        "positions_after": sim.positions_after,
        "opens_or_increases": sim.opens_or_increases,
        "quote_age_seconds": c.quote_age,
        "portfolio_age_seconds": c.facts.portfolio_age,
        "trading_state": c.facts.state_text,
    }
    figures.update(c.computed)
    return figures


def _run_rules(c: Context) -> tuple[Violation, ...]:
    found: list[Violation] = []
    for rule_id, check in RULES:
        try:
            violations = check(c)
            if violations:
                found.extend(violations)
        except Exception as exc:  # a faulty rule must stop the order, never wave it through
            message = f"rule raised {type(exc).__name__}: {exc}"[:2000]
            found.append(
                Violation(
                    rule_id=rule_id,
                    severity=Severity.BLOCKER,
                    message=message,
                    data={"raised": type(exc).__name__},
                )
            )
    return tuple(found)


def evaluate(
    intent: OrderIntent,
    sim: SimResult,
    portfolio: PortfolioSnapshot,
    market: MarketSnapshot,
    policy: RiskPolicy,
    trading_state: TradingState,
    history: History,
    now: datetime,
) -> RiskDecision:
    """Judge ``intent`` against every rule; the decision lists every violation found."""
    require_aware(now)
    digest = _check_inputs(intent, sim, portfolio, market)
    state = trading_state if type(trading_state) is TradingState else TradingState(trading_state)
    context = Context(intent, sim, portfolio, market, policy, state, history, now)
    violations = _run_rules(context)
    return RiskDecision.model_construct(  # from validated parts: no second validation
        decision=decide(violations),
        violations=violations,
        computed=_computed(context),
        policy_hash=context.facts.policy_hash,
        intent_hash=digest,
        evaluated_at=now,
    )
