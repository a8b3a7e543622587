"""The proposer role: a handle that reads and proposes, and has nothing else to call.

:class:`Proposer` wraps a facade opened ``proposer_only`` (no approval key, no approvers, no spent
tokens; a broker that sends nothing). It reads the account, the market, the proposals, the audit
log and the trading state, and it proposes, simulates, judges and asks a person — the steps an
adviser may take. It has no approve, reject, submit, cancel, resume, halt or reduce: they are not
refused, they do not exist on this type. The MCP server holds one of these and nothing more.

Every step goes through the facade (one order path); the checks here only say *why* a step is
out of order before the facade would refuse it, so nothing is fetched or recorded for a step
that cannot happen. A proposer moves only the proposals it made itself (those with an
``origin``), never the scheduler's or the quant's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path

from workbench import records
from workbench.audit import Event, EventType
from workbench.brokers.base import BrokerOrder
from workbench.clock import Clock
from workbench.daily import MarketStatus, market_status, market_view, order_rules
from workbench.errors import ConfigError, IllegalTransitionError
from workbench.events import McpOrigin, ToolCalled
from workbench.home import resolve_policy_dir
from workbench.lifecycle import OrderState
from workbench.models import (
    Instrument,
    MarketSnapshot,
    OrderIntent,
    PortfolioSnapshot,
    RiskDecision,
    SimResult,
    Source,
)
from workbench.policy import RiskPolicy, StrategyParams, policy_hash
from workbench.proposers import (
    ProposalError,
    Targets,
    intent_from_json,
    load_targets,
    rebalance,
    with_weights,
)
from workbench.records import ProposalRecord, Unreadable
from workbench.replay import market_today
from workbench.risk import StateChange
from workbench.workbench import Workbench, new_proposal_id

# Which step may follow which state, for a proposer (the facade's table allows more: a person's).
_STEP_FROM: Mapping[str, frozenset[OrderState]] = {
    "simulate": frozenset({OrderState.PROPOSED}),
    "evaluate": frozenset({OrderState.SIMULATED}),
    "request approval": frozenset({OrderState.RISK_APPROVED, OrderState.RISK_REVIEW}),
}
_NEXT: Mapping[OrderState, str] = {
    OrderState.PROPOSED: "simulate it",
    OrderState.SIMULATED: "evaluate it",
    OrderState.RISK_APPROVED: "request approval",
    OrderState.RISK_REVIEW: "request approval (a person must override the review)",
    OrderState.APPROVAL_REQUESTED: "wait: a person approves or rejects it (you cannot)",
}


class StepError(IllegalTransitionError):
    """A proposer step out of order, or on a proposal this proposer did not make."""

    def __init__(self, proposal_id: str, current: str | None, target: str, why: str) -> None:
        super().__init__(proposal_id, current, target)
        self.why = why

    def __str__(self) -> str:
        return self.why


def next_step(state: OrderState) -> str:
    """What a proposer can do next with a proposal in ``state`` (or that it is out of its hands)."""
    return _NEXT.get(state, "nothing: it is out of the proposer's hands")


class Proposer:
    """Read and propose on one home: the MCP server's handle (see the module docstring)."""

    __slots__ = ("_targets", "_wb")

    def __init__(self, wb: Workbench, targets: Targets) -> None:
        if wb.authority is not None or wb.approvals is not None:
            raise ConfigError("a Proposer wraps a workbench opened proposer_only")
        self._wb = wb
        self._targets = targets

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        broker: str = "paper",
        *,
        policy_dir: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        ids: Callable[[], str] = new_proposal_id,
        bars_path: str | os.PathLike[str] | None = None,
        log_clock: Clock | None = None,
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
    ) -> Proposer:
        """Open an existing ``home`` read-and-propose only (the approval key is never read) on
        ``broker`` (IBKR: a read-only connection, ``host``/``port``/``client_id`` over
        policies/broker.yaml); ``clock`` is market time, ``log_clock`` stamps events (the wall
        clock unless a test injects one), as for :meth:`Workbench.open`."""
        folder = resolve_policy_dir(policy_dir)
        targets = load_targets(Path(folder))
        wb = Workbench.open(
            home, broker, policy_dir=folder, clock=clock, ids=ids, bars_path=bars_path,
            log_clock=log_clock, proposer_only=True, host=host, port=port, client_id=client_id,
        )  # fmt: skip
        return cls(wb, targets)

    def close(self) -> None:
        self._wb.close()

    def __enter__(self) -> Proposer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it works on ----------------------------------------------------------------------

    @property
    def label(self) -> str:
        """Which broker: "paper broker (simulated)" or "IBKR paper DU…"."""
        return self._wb.label

    @property
    def account(self) -> str:
        return self._wb.account

    @property
    def home(self) -> Path:
        return self._wb.home

    @property
    def clock(self) -> Clock:
        """Market time (a replay sandbox's fixed clock, or the wall clock)."""
        return self._wb.clock

    @property
    def policy(self) -> RiskPolicy:
        return self._wb.policy

    @property
    def params(self) -> StrategyParams:
        return self._wb.params

    @property
    def policy_hash(self) -> str:
        return policy_hash(self._wb.policy)

    def market_day(self) -> date:
        """The market's date (New York) on this handle's clock."""
        return market_today(self._wb.clock.now())

    # -- reads (nothing recorded) ----------------------------------------------------------------

    def portfolio(self) -> PortfolioSnapshot:
        return self._wb.portfolio(record=False)

    def open_orders(self) -> tuple[BrokerOrder, ...]:
        return self._wb.broker.open_orders()

    def quote(self, symbol: str) -> MarketSnapshot:
        return self._wb.market_snapshot(symbol, record=False)

    def instrument(self, symbol: str) -> Instrument:
        """The broker's instrument for ``symbol``; UnknownSymbolError if it has none."""
        return self._wb.instrument(symbol)

    def record(self, proposal_id: str) -> ProposalRecord:
        """The proposal's typed record; UnknownProposalError if there is none."""
        return self._wb.detail(proposal_id)

    def recent(self, limit: int) -> list[ProposalRecord | Unreadable]:
        """The newest ``limit`` proposals, oldest first (unreadable ones listed as such)."""
        found = records.load_all(self._wb.log)
        return found[-limit:] if limit > 0 else []

    def audit_tail(self, n: int) -> list[Event]:
        return self._wb.log.tail(n) if n > 0 else []

    def trading_state(self) -> StateChange:
        """The trading state as recorded (a proposer cannot verify releases: it has no key)."""
        return self._wb.state_change()

    def market_status(self) -> MarketStatus:
        """Whether the NYSE is in session now (on this handle's clock), and when it next opens."""
        return market_status(self._wb.clock.now())

    # -- the proposer's steps ------------------------------------------------------------------

    def propose(
        self,
        intent: OrderIntent,
        *,
        actor: str,
        origin: McpOrigin,
        correlation_id: str | None = None,
    ) -> str:
        """Record ``intent`` (validated, our account, sizes in the policy's increments) as a
        proposal made by ``origin``; returns its id. Nothing is fetched, judged or sent."""
        return self._wb.propose(intent, actor=actor, correlation_id=correlation_id, origin=origin)

    def intent_from(self, text: str | bytes) -> OrderIntent:
        """An intent from untrusted JSON through the proposers' intake (strict schema, this
        account, source ``llm``), on the broker's own instrument: the type, exchange and
        currency given must be the broker's (and a primary exchange or conId, if given); what
        was left unsaid (the conId, the primary exchange) is filled from the broker."""
        intent = intent_from_json(text, account=self.account, source=Source.LLM)
        given, known = intent.instrument, self.instrument(intent.symbol)
        stated: dict[str, object] = {"type": given.type, "exchange": given.exchange}
        stated["currency"] = given.currency
        if given.primary_exchange is not None:
            stated["primary_exchange"] = given.primary_exchange
        if given.con_id is not None:
            stated["con_id"] = given.con_id
        wrong = sorted(k for k, v in stated.items() if getattr(known, k) != v)
        if wrong:
            theirs = ", ".join(f"{k} {getattr(known, k)}" for k in wrong)
            raise ProposalError(f"{intent.symbol} at this broker has {theirs}: use those")
        return OrderIntent.model_validate({**intent.model_dump(), "instrument": known})

    def simulate(self, proposal_id: str) -> SimResult:
        """Simulate one of this proposer's PROPOSED proposals on fresh snapshots."""
        self._check_step(proposal_id, "simulate")
        return self._wb.simulate(proposal_id)

    def evaluate(self, proposal_id: str) -> RiskDecision:
        """Run the gate on one of this proposer's SIMULATED proposals."""
        self._check_step(proposal_id, "evaluate")
        return self._wb.evaluate(proposal_id)

    def request_approval(self, proposal_id: str) -> OrderState:
        """Ask a person about one of this proposer's proposals the gate approved or sent to
        review; returns the new state (APPROVAL_REQUESTED)."""
        self._check_step(proposal_id, "request approval")
        self._wb.request_approval(proposal_id)
        return self._wb.state(proposal_id)

    def rebalance_intents(self, weights: Mapping[str, Decimal]) -> list[OrderIntent]:
        """Intents that move each named symbol toward its weight of NAV, sized, limit-priced and
        stopped by the rebalance proposer with the policies' settings (``targets.yaml`` for the
        drift band, limit offset and per-order cap). Symbols not named are not traded."""
        targets = with_weights(self._targets, weights)
        sizing, stops = order_rules(self._wb.params)
        market = market_view(self._wb, self.market_day(), record=False)
        intents = rebalance(self.portfolio(), targets, market, sizing, stops)
        return [i for i in intents if i.symbol in weights]

    def record_tool_call(self, call: ToolCalled, *, actor: str) -> None:
        """Record one MCP tool call (a generic, unguarded event)."""
        self._wb.log.append(EventType.TOOL_CALLED, call, actor=actor)

    def _check_step(self, proposal_id: str, step: str) -> None:
        record = self._wb.detail(proposal_id)
        allowed = _STEP_FROM[step]
        if record.proposed.data.origin is None:
            raise StepError(
                proposal_id, record.state.value, step,
                f"proposal {proposal_id} was not made through MCP: a proposer moves only its own",
            )  # fmt: skip
        if record.state not in allowed:
            raise StepError(
                proposal_id, record.state.value, step,
                f"cannot {step} proposal {proposal_id}: it is {record.state.value}"
                f" (next: {next_step(record.state)})",
            )  # fmt: skip
