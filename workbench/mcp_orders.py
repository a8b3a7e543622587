"""The order a model may propose through MCP: the ``OrderIntent`` fields a proposer chooses.

:class:`ProposedOrder` is the ``propose_order`` tool's input schema (``additionalProperties:
false``). It holds the intent's own fields and types, minus :data:`SERVER_FILLED`: the account
(the broker's, never the caller's), the source (``llm``) and ``is_propagated`` (false). There is
no field for a price of the market, NAV, a decision, a token or an approval, so a call that sends
one is refused. The server then validates it again through the proposers' JSON intake
(:meth:`workbench.proposer.Proposer.intent_from`), the one every LLM proposal goes through.
"""

from __future__ import annotations

from pydantic import Field

from workbench.models import (
    Frozen,
    Instrument,
    IntentConstraints,
    OrderType,
    Price,
    ProtectiveStop,
    Quantity,
    ShortText,
    Side,
    Tag,
    TimeInForce,
)

SERVER_FILLED = frozenset({"account", "source", "is_propagated"})


class ProposedOrder(Frozen):
    """One order to propose. The server fills the account from the broker; prices of the market,
    simulations and decisions are the workbench's own."""

    instrument: Instrument = Field(
        description="as get_market_snapshot shows it: type (STK or ETF), symbol, exchange, currency"
    )
    side: Side
    quantity: Quantity = Field(description="number of shares, positive, whole unless allowed")
    order_type: OrderType = Field(description="LMT or STP_LMT unless the limits say otherwise")
    limit_price: Price | None = Field(default=None, description="your limit (LMT, STP_LMT)")
    stop_price: Price | None = Field(default=None, description="trigger price (STP, STP_LMT)")
    time_in_force: TimeInForce = TimeInForce.DAY
    reason: ShortText = Field(default="", description="one sentence: why (a person reads it)")
    strategy_tag: Tag = ""
    constraints: IntentConstraints = IntentConstraints()
    protective_stop: ProtectiveStop | None = Field(
        default=None, description="the bracket stop an opening order needs"
    )
