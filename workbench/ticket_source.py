"""Where an order ticket's inputs come from: the one adapter between the facade and the pure
:func:`workbench.ticket.build_ticket`. It reads the proposal's typed record (intent, simulation,
decision, the broker's orders and fills for it), the portfolio snapshot the decision was made
on and the symbol's ATR, and hands them over. Nothing else in the ticket reads anything. A record
that does not validate is an AuditError: the ticket is never built from figures it cannot trust.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from workbench import fmt
from workbench.audit import EventType
from workbench.brokers.base import BrokerOrder
from workbench.errors import WorkbenchError
from workbench.models import PortfolioSnapshot, RiskDecision
from workbench.policy import policy_hash
from workbench.ticket import OrderTicket, StopRule, TicketInputs, build_ticket
from workbench.workbench import Workbench


def inputs_for(wb: Workbench, proposal_id: str) -> TicketInputs:
    """Gather a proposal's ticket inputs from its typed record and the facade (the only function
    here that reads anything)."""
    record = wb.detail(proposal_id)
    proposed_at = record.market_at  # market time: a replay's day, not the wall clock
    intent = record.intent
    judged = None if record.decision is None else record.decision.data
    fault = None if judged is None else judged.fault
    decision = None
    if judged is not None and fault is None:
        decision = RiskDecision.model_validate(
            {name: getattr(judged, name) for name in RiskDecision.model_fields}
        )
    portfolio = None
    if record.decision is not None and judged is not None and judged.portfolio_ts is not None:
        portfolio = _snapshot_at(wb, judged.portfolio_ts, record.decision.seq)
    try:
        atr: Decimal | None = wb.atr(intent.symbol, proposed_at.astimezone(fmt.NEW_YORK).date())
    except WorkbenchError:
        atr = None
    orders: dict[str, BrokerOrder] = {}
    for update in record.updates:
        if update.data.order is not None:
            orders[update.data.order.order_id] = update.data.order
    return TicketInputs(
        proposal_id=proposal_id,
        intent=intent,
        state=record.state.value,
        broker=wb.label,
        proposed_at=proposed_at,
        now=wb.clock.now(),
        policy=wb.policy,
        policy_hash=policy_hash(wb.policy),
        margin_rate=wb.params.costs.initial_margin_rate,
        stop_rule=StopRule(wb.params.smart_stop.atr_multiplier, atr),
        sim=record.sim,
        decision=decision,
        fault=fault,
        portfolio=portfolio,
        quote_at=None if judged is None else judged.market_ts,
        orders=tuple(orders.values()),
        fills=record.fills,
    )


def _snapshot_at(wb: Workbench, taken: datetime, before_seq: int) -> PortfolioSnapshot | None:
    """The newest PortfolioSnapshotTaken before the decision (``before_seq``) whose snapshot
    time is ``taken``; None if there is none."""
    kind = (EventType.PORTFOLIO_SNAPSHOT_TAKEN,)
    for event in wb.log.events(types=kind, since=taken, newest_first=True):
        if event.seq >= before_seq:
            continue
        snap = event.data_as(PortfolioSnapshot)
        if snap.timestamp == taken and snap.account == wb.account:
            return snap
    return None


def ticket_for(wb: Workbench, proposal_id: str) -> OrderTicket:
    """The ticket of one proposal, from the facade."""
    return build_ticket(inputs_for(wb, proposal_id))
