"""The risk gate: a pure function from (intent, simulation, snapshots, policy, state, history, now)
to a :class:`RiskDecision` carrying every violation.

Every rule in :data:`RULES` runs on every :func:`evaluate`; there is no switch that skips one. A
rule that raises becomes a BLOCKER under its own id. Any BLOCKER ⇒ REJECT; else any MAJOR ⇒
REVIEW; else APPROVE (MINOR findings ride along as warnings).

:func:`rejudge` takes an earlier decision and runs again, with the same rule functions, the rules
whose answer moves with time and with other orders (:data:`AT_SUBMIT`): what the facade does at
submit, under the write lock, on the history as of then.
"""

from __future__ import annotations

from collections.abc import Collection
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
    RuleId,
    Severity,
    SimResult,
    TradingState,
    Violation,
)
from workbench.policy import RiskPolicy, policy_hash
from workbench.risk.history import History
from workbench.risk.rules import RULES, Context

# The rules whose answer moves with time or with other orders after a decision: the trading state
# (R6), quote freshness (R8), the trading window (R11), duplicates and orders of unknown outcome
# (R13) and the order rate (R14). They are judged again at submit (see :func:`rejudge`).
AT_SUBMIT: frozenset[RuleId] = frozenset(
    {
        RuleId.R6_TRADING_STATE,
        RuleId.R8_MARKET_DATA_STALE,
        RuleId.R11_TRADING_WINDOW,
        RuleId.R13_DUPLICATE_ORDER,
        RuleId.R14_ORDER_RATE,
    }
)
_RULE_ORDER = {rule_id: n for n, (rule_id, _) in enumerate(RULES)}


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


def _run_rules(c: Context, only: Collection[RuleId] | None = None) -> tuple[Violation, ...]:
    found: list[Violation] = []
    for rule_id, check in RULES:
        if only is not None and rule_id not in only:
            continue
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


def rejudge(
    earlier: RiskDecision,
    intent: OrderIntent,
    sim: SimResult,
    portfolio: PortfolioSnapshot,
    market: MarketSnapshot,
    policy: RiskPolicy,
    trading_state: TradingState,
    history: History,
    now: datetime,
    *,
    rules: Collection[RuleId] = AT_SUBMIT,
) -> RiskDecision:
    """``earlier`` with ``rules`` judged again at ``now``: the same rule functions as
    :func:`evaluate` on these inputs (today's history and state), the other rules' findings kept
    as ``earlier`` recorded them. The decision follows from the merged findings, in rule order,
    so an unchanged answer gives the very same violations.

    ``earlier`` must have judged this intent under this policy (a RiskInputError otherwise)."""
    require_aware(now)
    digest = _check_inputs(intent, sim, portfolio, market)
    if earlier.intent_hash != digest:
        raise RiskInputError("the earlier decision judged another intent")
    if earlier.policy_hash != policy_hash(policy):
        raise RiskInputError("the earlier decision was made under another policy")
    state = trading_state if type(trading_state) is TradingState else TradingState(trading_state)
    context = Context(intent, sim, portfolio, market, policy, state, history, now)
    kept = tuple(v for v in earlier.violations if v.rule_id not in rules)
    merged = tuple(
        sorted((*kept, *_run_rules(context, rules)), key=lambda v: _RULE_ORDER[v.rule_id])
    )
    return RiskDecision.model_construct(
        decision=decide(merged),
        violations=merged,
        computed={**earlier.computed, **_computed(context)},
        policy_hash=earlier.policy_hash,
        intent_hash=digest,
        evaluated_at=now,
    )
