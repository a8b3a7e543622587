"""Where an order ticket's inputs come from: the one adapter between the facade and the pure
:func:`workbench.ticket.build_ticket`. It reads the proposal's recorded intent, simulation and
decision, the portfolio snapshot the decision was made on, the symbol's ATR and the broker's
orders and fills for it, and hands them over typed. Nothing else in the ticket reads anything.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from workbench import fmt
from workbench.audit import EventType
from workbench.brokers.base import BrokerOrder, Fill
from workbench.errors import WorkbenchError
from workbench.models import OrderIntent, PortfolioSnapshot, RiskDecision, SimResult
from workbench.policy import policy_hash
from workbench.ticket import OrderTicket, StopRule, TicketInputs, build_ticket
from workbench.workbench import Workbench


def inputs_for(wb: Workbench, proposal_id: str) -> TicketInputs:
    """Gather a proposal's ticket inputs from the facade and its audit log (the only function
    here that reads anything)."""
    detail = wb.detail(proposal_id)
    events = wb.log.events(proposal_id=proposal_id)
    proposed_at = _market_time(events)
    intent = OrderIntent.model_validate(detail["intent"])
    judged: dict[str, Any] = detail["decision"] or {}
    fault = str(judged["fault"]) if "fault" in judged else None
    try:
        sim = SimResult.model_validate(detail["simulation"]) if detail["simulation"] else None
        decision = None
        if judged and fault is None:
            fields = {k: judged[k] for k in RiskDecision.model_fields if k in judged}
            decision = RiskDecision.model_validate(fields)
    except ValidationError as exc:  # shown as a fault on the ticket, never as figures
        sim, decision = None, None
        fault = f"the recorded simulation or decision is unreadable: {exc.errors()[0]['msg']}"
    quote_at = datetime.fromisoformat(judged["market_ts"]) if "market_ts" in judged else None
    portfolio = None
    if "portfolio_ts" in judged:
        gate = [e for e in events if e.type == EventType.RISK_GATE_EVALUATED][-1]
        portfolio = _snapshot_at(wb, datetime.fromisoformat(judged["portfolio_ts"]), gate.seq)
    try:
        atr: Decimal | None = wb.atr(intent.symbol, proposed_at.astimezone(fmt.NEW_YORK).date())
    except WorkbenchError:
        atr = None
    orders: dict[str, BrokerOrder] = {}
    fills: list[Fill] = []
    for event in events:
        payload = event.payload
        if isinstance(payload.get("order"), dict):
            order = BrokerOrder.model_validate(payload["order"])
            orders[order.order_id] = order
        if isinstance(payload.get("fill"), dict) and event.type != EventType.ORDER_SUBMITTED:
            fills.append(Fill.model_validate(payload["fill"]))
    return TicketInputs(
        proposal_id=proposal_id,
        intent=intent,
        state=detail["state"].value if detail["state"] else fmt.DASH,
        broker=wb.label,
        proposed_at=proposed_at,
        now=wb.clock.now(),
        policy=wb.policy,
        policy_hash=policy_hash(wb.policy),
        margin_rate=wb.params.costs.initial_margin_rate,
        stop_rule=StopRule(wb.params.smart_stop.atr_multiplier, atr),
        sim=sim,
        decision=decision,
        fault=fault,
        portfolio=portfolio,
        quote_at=quote_at,
        orders=tuple(orders.values()),
        fills=tuple(fills),
    )


def _market_time(events: list[Any]) -> datetime:
    """When the proposal was made in market time: its first decision's ``evaluated_at`` (a
    replay's day, not the wall clock its events were recorded on); the time it was recorded
    when it was never judged (a fault)."""
    for event in events:
        if event.type == EventType.RISK_GATE_EVALUATED and "evaluated_at" in event.payload:
            return datetime.fromisoformat(str(event.payload["evaluated_at"]))
    return datetime.fromisoformat(events[0].ts)


def _snapshot_at(wb: Workbench, taken: datetime, before_seq: int) -> PortfolioSnapshot | None:
    """The newest PortfolioSnapshotTaken before the decision (``before_seq``) whose snapshot
    time is ``taken``; None if there is none."""
    kind = (EventType.PORTFOLIO_SNAPSHOT_TAKEN,)
    for event in wb.log.events(types=kind, since=taken, newest_first=True):
        if event.seq >= before_seq:
            continue
        snap = PortfolioSnapshot.model_validate(event.payload)
        if snap.timestamp == taken and snap.account == wb.account:
            return snap
    return None


def ticket_for(wb: Workbench, proposal_id: str) -> OrderTicket:
    """The ticket of one proposal, from the facade."""
    return build_ticket(inputs_for(wb, proposal_id))
