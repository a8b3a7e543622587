"""Auto-commit of trivial rebalances: the pure test of whether one may skip the person.

Off by default. When the policy turns it on, a proposal qualifies only if every bound holds: a
rule-based (not LLM, not propagated) LIMIT order on an allowlisted ETF, approved by the gate with no
review finding, under a small fraction of NAV, inside a time window, while trading is ACTIVE.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from workbench.models import InstrumentType, OrderIntent, OrderType, Source, TradingState
from workbench.policy import AutoCommitRules


def refusal(
    rules: AutoCommitRules,
    intent: OrderIntent,
    *,
    decision: str,
    severities: list[str],
    notional: Decimal | None,
    nav: Decimal | None,
    state: TradingState,
    now: datetime,
) -> str | None:
    """Why this proposal may not be auto-committed, or None when every bound holds."""
    local = now.astimezone(ZoneInfo(rules.timezone)).time()
    checks = (
        (rules.enabled, "auto-commit is off"),
        (intent.source is Source.RULE, "only rule-based rebalances auto-commit"),
        (not intent.is_propagated, "propagated signals never auto-commit"),
        (intent.instrument.type is InstrumentType.ETF, "only ETFs auto-commit"),
        (intent.symbol in rules.allowed_symbols, f"{intent.symbol} is not on the allowlist"),
        (intent.order_type is OrderType.LMT, "only LIMIT orders auto-commit"),
        (decision == "APPROVE", f"the gate said {decision}, not APPROVE"),
        (not {"BLOCKER", "MAJOR"} & set(severities), "the gate found something to review"),
        (state is TradingState.ACTIVE, f"trading state is {state.value}"),
        (rules.window_start <= local <= rules.window_end, f"{local:%H:%M} is outside the window"),
    )
    for ok, why in checks:
        if not ok:
            return why
    if notional is None or nav is None or nav <= 0:
        return "no simulated notional and NAV to compare"
    if notional > rules.max_pct_of_nav * nav:
        return f"notional {notional} is above {rules.max_pct_of_nav:%} of NAV {nav}"
    return None
