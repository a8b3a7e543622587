"""The facade: the one order path that notebooks, the CLI and the MCP server all use.

Read it top to bottom to follow one intent: ``propose`` → ``simulate`` → ``evaluate`` →
``request_approval`` → (a person) ``approve`` → ``submit`` (token consumed, then the broker)
→ fills.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import lifecycle, trading_state
from workbench.approval import ApprovalGrant, Approvals
from workbench.audit import AuditLog, Event, EventType
from workbench.bridge import AccountMonitor, order_ref
from workbench.brokers.base import Broker
from workbench.clock import Clock, SystemClock
from workbench.clock import describe as describe_clock
from workbench.errors import (
    ApprovalError,
    ConfigError,
    MarketDataError,
    SimulationError,
    TradingHaltedError,
    UnknownProposalError,
    WorkbenchError,
)
from workbench.home import (
    DB_NAME,
    create_home,
    is_replay_home,
    require_home,
    require_writable,
    resolve_policy_dir,
)
from workbench.lifecycle import OrderState
from workbench.marketdata import atr
from workbench.models import (
    Decision,
    Instrument,
    MarketSnapshot,
    OrderIntent,
    PortfolioSnapshot,
    RiskDecision,
    SimResult,
    SubmitPermit,
    TradingState,
)
from workbench.policy import (
    RiskPolicy,
    StrategyParams,
    bars_file,
    load_policy,
    load_strategy_params,
    policy_hash,
)
from workbench.proposers import ProposalError
from workbench.replay import replay_clock_of
from workbench.risk import History
from workbench.risk import evaluate as gate_evaluate
from workbench.sim import simulate as simulate_impact

ACTOR = "workbench"


def new_proposal_id() -> str:
    """A fresh proposal id (random, URL-safe, 20 characters)."""
    return "p" + uuid.uuid4().hex[:19]


@dataclass(frozen=True)
class Outcome:
    """What one intent came to in a cycle: its id, the decision and what happens next."""

    proposal_id: str
    intent: OrderIntent
    decision: RiskDecision | None
    state: OrderState
    fault: str | None = None


@dataclass(frozen=True)
class WhatIf:
    """A simulated, judged intent that was not recorded; ``fault`` when it could not be."""

    intent: OrderIntent
    sim: SimResult | None
    decision: RiskDecision | None
    fault: str | None = None


@dataclass
class _Batch:
    """What every proposal of one cycle is judged on: the same snapshot, history and time."""

    portfolio: PortfolioSnapshot
    history: History
    state: TradingState
    now: datetime
    quotes: dict[str, MarketSnapshot] = field(default_factory=dict)


@dataclass
class _Context:
    """The snapshots one proposal was simulated on, kept for its evaluation in this process."""

    portfolio: PortfolioSnapshot
    market: MarketSnapshot
    sim: SimResult


@dataclass
class Workbench:
    """One home, one broker, one policy: the order path and the views of it."""

    home: Path
    log: AuditLog
    broker: Broker
    policy: RiskPolicy
    params: StrategyParams
    clock: Clock
    approvals: Approvals
    ids: Callable[[], str] = new_proposal_id
    _contexts: dict[str, _Context] = field(default_factory=dict, repr=False)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        broker: str | Broker = "paper",
        *,
        policy_dir: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        ids: Callable[[], str] = new_proposal_id,
        bars_path: str | os.PathLike[str] | None = None,
        create: bool = False,
        log_clock: Clock | None = None,
    ) -> Workbench:
        """Open a home (create it only when ``create``: a missing home is a HomeError naming
        the path); load the policies strictly; connect the named broker.

        ``clock`` is market time: what the gate, the approvals and the paper broker see (a
        replay's fixed clock). Events are stamped by ``log_clock``, the wall clock unless a
        test injects one. A replay sandbox home (``…/replay/<day>``) opens on the paper broker
        only, and on its day's replay clock unless given another. ``bars_path`` (else the
        policy's ``market_data.bars``) points the paper broker at the user's own daily bars
        instead of the seeded synthetic ones."""
        folder = resolve_policy_dir(policy_dir)
        policy, params = load_policy(folder), load_strategy_params(folder)
        bars = Path(bars_path) if bars_path else bars_file(params, folder)
        root = require_writable(create_home(home) if create else require_home(home))
        if is_replay_home(root) and not _is_paper(broker):
            raise ConfigError(f"{root} is a replay sandbox: it runs on the paper broker only")
        clock = clock or (replay_clock_of(root) if is_replay_home(root) else SystemClock())
        log = AuditLog(root / DB_NAME, log_clock or SystemClock())
        try:
            chosen = (
                broker if not isinstance(broker, str) else _make_broker(broker, log, bars, clock)
            )
            approvals = Approvals(
                log,
                root,
                clock,
                expiry=timedelta(seconds=policy.approval.token_expiry_seconds),
                second_approver_above=policy.approval.second_approver_min_notional,
                auto_commit=policy.approval.auto_commit,
            )
        except BaseException:
            log.close()
            raise
        return cls(root, log, chosen, policy, params, clock, approvals, ids)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def label(self) -> str:
        """Which broker trades: "paper broker (simulated)" or "IBKR paper DU…"."""
        return self.broker.label

    @property
    def account(self) -> str:
        return self.broker.accounts()[0]

    @property
    def clock_label(self) -> str:
        return describe_clock(self.clock)

    def instrument(self, symbol: str) -> Instrument:
        """The broker's instrument for ``symbol``; unknown symbols raise UnknownSymbolError."""
        return self.broker.instrument(symbol)

    def atr(self, symbol: str, end: date, n: int = 14) -> Decimal:
        """Average true range per share over the ``n`` daily bars ending on ``end``."""
        return atr(self.broker.bars(symbol, end, n + 1))

    # -- what the workbench fetches itself ---------------------------------------------------

    def portfolio(self, *, record: bool = True) -> PortfolioSnapshot:
        """A fresh account snapshot; recorded (NAV for the circuit breaker, which may trip)
        unless ``record`` is False (what-if views)."""
        snapshot = AccountMonitor(lambda: self.broker.portfolio(self.account)).refresh()
        if record:
            trading_state.record_portfolio_snapshot(self.log, snapshot, self.params.circuit_breaker)
        return snapshot

    def market_snapshot(self, symbol: str, *, record: bool = True) -> MarketSnapshot:
        """A fresh quote from the broker, recorded as MarketSnapshotTaken unless told not to."""
        quote = self.broker.market_snapshot(self.broker.instrument(symbol))
        if record:
            self.log.append(EventType.MARKET_SNAPSHOT_TAKEN, {"quote": quote}, actor=ACTOR)
        return quote

    def trading_state(self) -> TradingState:
        return trading_state.current(self.log).state

    # -- what-if: nothing written ------------------------------------------------------------

    def what_if(
        self, intents: Iterable[OrderIntent], *, policy: RiskPolicy | None = None
    ) -> list[WhatIf]:
        """Simulate and judge intents on fresh snapshots, writing nothing (the quant's sandbox)."""
        policy = policy or self.policy
        portfolio = self.portfolio(record=False)
        now = self.clock.now()
        history = trading_state.build_history(
            self.log, account=self.account, now=now, policy=policy
        )
        state = self.trading_state()
        quotes: dict[str, MarketSnapshot] = {}
        results = []
        for intent in intents:
            try:
                self._check_account(intent)
                quote = quotes.get(intent.symbol) or self.broker.market_snapshot(intent.instrument)
                quotes[intent.symbol] = quote
                sim = simulate_impact(intent, portfolio, quote, self.params.costs)
            except (SimulationError, MarketDataError, ProposalError) as exc:
                results.append(WhatIf(intent, None, None, str(exc)))
                continue
            decision = gate_evaluate(intent, sim, portfolio, quote, policy, state, history, now)
            results.append(WhatIf(intent, sim, decision))
        return results

    # -- the order path ----------------------------------------------------------------------

    def propose(self, intent: OrderIntent, *, actor: str, correlation_id: str | None = None) -> str:
        """Record a validated intent as a new proposal; returns its id. Nothing is sent."""
        self._check_account(intent)
        proposal_id = self.ids()
        payload = {"intent": intent, "intent_hash": intent.intent_hash, "broker": self.label}
        with self.log.transaction() as tx:
            lifecycle.advance(
                tx,
                proposal_id,
                EventType.ORDER_PROPOSED,
                payload,
                actor=actor,
                correlation_id=correlation_id,
            )
        return proposal_id

    def simulate(self, proposal_id: str) -> SimResult:
        """Simulate on fresh snapshots and record OrderSimulated (a fault records a REJECT)."""
        intent = self.intent(proposal_id)
        try:
            portfolio = self.portfolio()
            market = self.market_snapshot(intent.symbol)
            sim = simulate_impact(intent, portfolio, market, self.params.costs)
        except (SimulationError, MarketDataError) as exc:
            self._reject_fault(proposal_id, f"simulation failed: {exc}")
            raise
        with self.log.transaction() as tx:
            lifecycle.advance(
                tx, proposal_id, EventType.ORDER_SIMULATED, {"result": sim}, actor=ACTOR
            )
        self._contexts[proposal_id] = _Context(portfolio, market, sim)
        return sim

    def evaluate(self, proposal_id: str, *, transition: bool = True) -> RiskDecision:
        """Run the gate on the snapshots behind the simulation; record RiskGateEvaluated."""
        intent = self.intent(proposal_id)
        ctx = self._contexts.get(proposal_id) or self._fresh_context(intent)
        now = self.clock.now()
        decision = gate_evaluate(
            intent,
            ctx.sim,
            ctx.portfolio,
            ctx.market,
            self.policy,
            self.trading_state(),
            trading_state.build_history(
                self.log, account=self.account, now=now, policy=self.policy
            ),
            now,
        )
        payload = _decision_payload(decision, ctx.market, ctx.portfolio, transition=transition)
        with self.log.transaction() as tx:
            if transition:
                lifecycle.advance(
                    tx, proposal_id, EventType.RISK_GATE_EVALUATED, payload, actor=ACTOR
                )
            else:
                tx.append(
                    EventType.RISK_GATE_EVALUATED, payload, actor=ACTOR, proposal_id=proposal_id
                )
        return decision

    def request_approval(self, proposal_id: str) -> None:
        """Ask a person: only proposals the gate approved or sent to review get here."""
        with self.log.transaction() as tx:
            lifecycle.advance(tx, proposal_id, EventType.APPROVAL_REQUESTED, {}, actor=ACTOR)

    def run(self, intent: OrderIntent, *, actor: str, correlation_id: str | None = None) -> Outcome:
        """propose → simulate → evaluate → request approval (unless rejected)."""
        return self.run_many([intent], actor=actor, correlation_id=correlation_id)[0]

    def run_many(
        self, intents: Iterable[OrderIntent], *, actor: str, correlation_id: str | None = None
    ) -> list[Outcome]:
        """:meth:`run` for several intents judged on one snapshot (no de-duplication)."""
        return self._run_batch(list(intents), actor=actor, correlation_id=correlation_id)

    def run_cycle(
        self, intents: Iterable[OrderIntent], *, actor: str, correlation_id: str
    ) -> list[Outcome]:
        """Run each intent once per ``correlation_id``: a symbol/side already proposed under it
        is skipped, so running the same day twice does not duplicate proposals."""
        seen = self._proposed_keys(correlation_id)
        fresh = []
        for intent in intents:
            key = (intent.symbol, intent.side.value)
            if key not in seen:
                seen.add(key)
                fresh.append(intent)
        return self._run_batch(fresh, actor=actor, correlation_id=correlation_id)

    def _run_batch(
        self, intents: list[OrderIntent], *, actor: str, correlation_id: str | None
    ) -> list[Outcome]:
        """One account snapshot, one gate history and one quote per symbol for the whole batch;
        each proposal's events (proposed, simulated, judged, approval requested) in one
        transaction, so a proposal is recorded whole or not at all."""
        if not intents:
            return []
        for intent in intents:  # refuse a foreign account before anything is written
            self._check_account(intent)
        portfolio = self.portfolio()
        now = self.clock.now()
        batch = _Batch(
            portfolio=portfolio,
            history=trading_state.build_history(
                self.log, account=self.account, now=now, policy=self.policy
            ),
            state=self.trading_state(),
            now=now,
        )
        return [
            self._run_one(intent, batch, actor=actor, correlation_id=correlation_id)
            for intent in intents
        ]

    def _run_one(
        self, intent: OrderIntent, batch: _Batch, *, actor: str, correlation_id: str | None
    ) -> Outcome:
        proposal_id = self.ids()
        proposed = {"intent": intent, "intent_hash": intent.intent_hash, "broker": self.label}
        try:
            quote = batch.quotes.get(intent.symbol) or self.market_snapshot(intent.symbol)
            batch.quotes[intent.symbol] = quote
            sim = simulate_impact(intent, batch.portfolio, quote, self.params.costs)
        except (SimulationError, MarketDataError) as exc:
            fault = f"simulation failed: {exc}"
            with self.log.transaction() as tx:
                lifecycle.advance(
                    tx, proposal_id, EventType.ORDER_PROPOSED, proposed, actor=actor,
                    correlation_id=correlation_id,
                )  # fmt: skip
                lifecycle.advance(
                    tx, proposal_id, EventType.RISK_GATE_EVALUATED, _fault_payload(fault),
                    actor=ACTOR,
                )  # fmt: skip
            return Outcome(proposal_id, intent, None, OrderState.RISK_REJECTED, fault)
        decision = gate_evaluate(
            intent, sim, batch.portfolio, quote, self.policy, batch.state, batch.history, batch.now
        )
        judged = _decision_payload(decision, quote, batch.portfolio, transition=True)
        steps: list[tuple[EventType, Mapping[str, Any]]] = [
            (EventType.ORDER_SIMULATED, {"result": sim}),
            (EventType.RISK_GATE_EVALUATED, judged),
        ]
        if decision.decision is not Decision.REJECT:
            steps.append((EventType.APPROVAL_REQUESTED, {}))
        with self.log.transaction() as tx:
            lifecycle.advance(
                tx, proposal_id, EventType.ORDER_PROPOSED, proposed, actor=actor,
                correlation_id=correlation_id,
            )  # fmt: skip
            for type_, payload in steps:
                lifecycle.advance(tx, proposal_id, type_, payload, actor=ACTOR)
        if decision.decision is Decision.REJECT:
            return Outcome(proposal_id, intent, decision, OrderState.RISK_REJECTED)
        return Outcome(proposal_id, intent, decision, self._auto_commit(proposal_id))

    def _auto_commit(self, proposal_id: str) -> OrderState:
        """Submit a trivial rebalance with no person when (and only when) the policy allows it.

        Off by default. A refusal leaves the proposal waiting for a person; a fault at submit
        (halted, broker refusal) is recorded by the submit path and leaves what it left.
        """
        if not self.policy.approval.auto_commit.enabled:
            return OrderState.APPROVAL_REQUESTED
        try:
            grant = self.approvals.auto_approve(proposal_id)
        except ApprovalError:
            return OrderState.APPROVAL_REQUESTED
        try:
            return self.submit(proposal_id, grant.token)
        except WorkbenchError:
            return self.state(proposal_id)

    def approve(
        self,
        proposal_id: str,
        approver: str,
        passphrase: str,
        *,
        override_reason: str | None = None,
        second_approver: str | None = None,
        second_passphrase: str | None = None,
    ) -> ApprovalGrant:
        """A person approves with their credential; returns the one-time token (shown once)."""
        return self.approvals.approve(
            proposal_id,
            approver,
            passphrase,
            override_reason=override_reason,
            second_approver=second_approver,
            second_passphrase=second_passphrase,
        )

    def reject(self, proposal_id: str, approver: str, passphrase: str, reason: str) -> None:
        """A person rejects with their credential and a reason."""
        self.approvals.reject(proposal_id, approver, passphrase, reason)

    def submit(self, proposal_id: str, token: str) -> OrderState:
        """Re-check state, breaker and freshness; consume the token; then send to the broker."""
        intent = self.intent(proposal_id)
        self._refuse_when_halted(intent)
        self.portfolio()  # records NAV: the circuit breaker may trip right here
        self._refuse_when_halted(intent)
        self._recheck_if_stale(proposal_id, intent)
        with self.log.transaction() as tx:
            # Again under the write lock: a halt from another process cannot slip in before it.
            self._refuse_when_halted(intent)
            permit = self.approvals.consume(
                tx,
                proposal_id,
                token,
                order_ref=order_ref(proposal_id, is_propagated=intent.is_propagated),
            )
        self._send(permit)
        return self.state(proposal_id)

    def cancel(self, proposal_id: str, *, actor: str) -> OrderState:
        """Cancel a working order at the broker, or withdraw a proposal not yet sent.

        Allowed in every trading state, HALTED included.
        """
        state = self.state(proposal_id)
        if state in lifecycle.WORKING_STATES:
            self.broker.cancel(proposal_id=proposal_id)
        else:
            with self.log.transaction() as tx:
                lifecycle.advance(
                    tx, proposal_id, EventType.ORDER_WITHDRAWN, {"by": actor}, actor=actor
                )
        return self.state(proposal_id)

    # -- trading state -----------------------------------------------------------------------

    def halt(self, reason: str, *, by: str) -> None:
        trading_state.set_state(self.log, TradingState.HALTED, reason=reason, by=by)

    def reduce(self, reason: str, *, by: str) -> None:
        trading_state.set_state(self.log, TradingState.REDUCING, reason=reason, by=by)

    def resume(self, reason: str, *, approver: str, passphrase: str) -> None:
        """Lift a halt: only a registered approver, with their passphrase, may."""
        self.approvals.authenticate(approver, passphrase, action="resume trading")
        trading_state.resume(self.log, approver=approver, reason=reason)

    # -- views -------------------------------------------------------------------------------

    def intent(self, proposal_id: str) -> OrderIntent:
        proposed = self.log.events(
            proposal_id=proposal_id, types=(EventType.ORDER_PROPOSED,), limit=1
        )
        if not proposed:
            raise UnknownProposalError(proposal_id)
        return OrderIntent.model_validate(proposed[0].payload["intent"])

    def detail(self, proposal_id: str) -> dict[str, Any]:
        """One proposal as the approver should see it: intent, simulation, decision, state."""
        events = self.log.events(proposal_id=proposal_id)
        latest: dict[str, dict[str, Any]] = {e.type: e.payload for e in events}
        if EventType.ORDER_PROPOSED not in latest:
            raise UnknownProposalError(proposal_id)
        return {
            "proposal_id": proposal_id,
            "state": lifecycle.derive_state(events),
            "intent": latest[EventType.ORDER_PROPOSED]["intent"],
            "simulation": latest.get(EventType.ORDER_SIMULATED, {}).get("result"),
            "decision": latest.get(EventType.RISK_GATE_EVALUATED),
            "broker": self.label,
        }

    def state(self, proposal_id: str) -> OrderState:
        return lifecycle.current_state(self.log, proposal_id)

    def proposals(self, *, states: Iterable[OrderState] | None = None) -> pd.DataFrame:
        """One row per proposal: what it is, its decision, violations and current state.

        ``proposed_at`` is when it was recorded (the log's wall clock); ``market_at`` is the
        market time it was judged at (its decision's ``evaluated_at``: a replay's day), or the
        recorded time when it never got a decision. Views show ``market_at``."""
        rows = _proposal_rows(self.log.events(types=_PROPOSAL_VIEW_TYPES))
        frame = pd.DataFrame(rows, columns=list(PROPOSAL_COLUMNS))
        if states is not None:
            wanted = {s.value for s in states}
            frame = frame[frame["state"].isin(wanted)].reset_index(drop=True)
        return frame

    def status(self) -> dict[str, Any]:
        """Home, broker, trading state, chain head and proposals by state."""
        change = trading_state.current(self.log)
        seq, head = self.log.head()
        counts = self.proposals()["state"].value_counts().to_dict()
        return {
            "home": str(self.home),
            "broker": self.label,
            "account": self.account,
            "trading_state": change.state.value,
            "trading_state_reason": change.reason,
            "trading_state_by": change.by,
            "audit_head_seq": seq,
            "audit_head_hash": head,
            "proposals_by_state": counts,
        }

    def reconcile(self) -> list[str]:
        """Proposals whose token was spent but the broker never acknowledged (e.g. a crash
        between the two): reported and recorded, never re-sent on their own."""
        frame = self.proposals(states=[OrderState.SUBMITTED])
        known = {o.proposal_id for o in self.broker.orders()}
        stuck = [pid for pid in frame["proposal_id"] if pid not in known]
        self.log.append(
            EventType.RECONCILIATION_RUN,
            {"submitted_without_broker_order": stuck, "broker": self.label},
            actor=ACTOR,
        )
        return stuck

    # -- helpers -----------------------------------------------------------------------------

    def _fresh_context(self, intent: OrderIntent) -> _Context:
        portfolio = self.portfolio()
        market = self.market_snapshot(intent.symbol)
        return _Context(
            portfolio, market, simulate_impact(intent, portfolio, market, self.params.costs)
        )

    def _reject_fault(self, proposal_id: str, why: str) -> None:
        with self.log.transaction() as tx:
            lifecycle.advance(
                tx, proposal_id, EventType.RISK_GATE_EVALUATED, _fault_payload(why), actor=ACTOR
            )

    def _check_account(self, intent: OrderIntent) -> None:
        """The door: our account, and a size in the instrument's increments (whole units unless
        the policy allows fractions for it); refused before anything is recorded."""
        if intent.account != self.account:
            raise ProposalError(f"intent is for account {intent.account}, not {self.account}")
        problem = self.policy.instruments.size_problem(intent.symbol, intent.quantity)
        if problem is not None:
            raise ProposalError(problem)

    def _refuse_when_halted(self, intent: OrderIntent) -> None:
        change = trading_state.current(self.log)
        if change.state is TradingState.HALTED:
            raise TradingHaltedError("HALTED", f"no order is sent ({change.reason})")
        if change.state is TradingState.REDUCING and not self._reduces(intent):
            raise TradingHaltedError("REDUCING", "only orders that reduce a position are sent")

    def _reduces(self, intent: OrderIntent) -> bool:
        held = self.broker.portfolio(self.account).position(intent.symbol)
        qty = held.quantity if held else Decimal(0)
        return qty * intent.side.sign < 0 and intent.quantity <= abs(qty)

    def _recheck_if_stale(self, proposal_id: str, intent: OrderIntent) -> None:
        decided = self.log.events(
            proposal_id=proposal_id,
            types=(EventType.RISK_GATE_EVALUATED,),
            newest_first=True,
            limit=1,
        )
        if not decided:
            raise ApprovalError("no risk decision recorded", proposal_id=proposal_id)
        payload = decided[0].payload
        market_ts = datetime.fromisoformat(str(payload["market_ts"]))
        age = (self.clock.now() - market_ts).total_seconds()
        same_policy = payload.get("policy_hash") == policy_hash(self.policy)
        if same_policy and age <= self.policy.freshness.max_quote_age_seconds:
            return
        self._contexts.pop(proposal_id, None)
        decision = self.evaluate(proposal_id, transition=False)
        if decision.decision is Decision.REJECT:
            raise ApprovalError(
                "the gate, re-run on fresh data at submit, rejects it: "
                + "; ".join(v.message for v in decision.violations if v.severity == "BLOCKER"),
                proposal_id=proposal_id,
            )

    def _send(self, permit: SubmitPermit) -> None:
        self.broker.submit(permit)

    def _proposed_keys(self, correlation_id: str) -> set[tuple[str, str]]:
        keys = set()
        proposed = self.log.events(types=(EventType.ORDER_PROPOSED,), correlation_id=correlation_id)
        for event in proposed:
            intent = event.payload["intent"]
            keys.add((intent["instrument"]["symbol"], intent["side"]))
        return keys


def _decision_payload(
    decision: RiskDecision,
    market: MarketSnapshot,
    portfolio: PortfolioSnapshot,
    *,
    transition: bool,
) -> dict[str, Any]:
    """What RiskGateEvaluated records: the decision, whether it moves the state, and the times
    of the snapshots it was made on (the submit-time freshness check reads them)."""
    return {
        **decision.model_dump(mode="json"),
        "transition": transition,
        "market_ts": market.timestamp,
        "portfolio_ts": portfolio.timestamp,
    }


def _fault_payload(why: str) -> dict[str, Any]:
    """A REJECT recorded when a proposal could not even be simulated (no quote, bad NAV)."""
    return {"decision": Decision.REJECT.value, "fault": why, "violations": []}


def _is_paper(broker: str | Broker) -> bool:
    from workbench.brokers.paper import PaperBroker

    return broker == "paper" if isinstance(broker, str) else type(broker) is PaperBroker


def _make_broker(name: str, log: AuditLog, bars_path: Path | None, clock: Clock) -> Broker:
    if name == "paper":
        from workbench.brokers.paper import PaperBroker
        from workbench.marketdata import CsvBars, MarketData

        market = MarketData(CsvBars(bars_path)) if bars_path else None
        return PaperBroker(log, clock, market=market)
    raise ConfigError(f"unknown broker {name!r}: choose 'paper' (IBKR comes with its adapter)")


_PROPOSAL_VIEW_TYPES = (
    EventType.ORDER_PROPOSED,
    EventType.ORDER_SIMULATED,
    EventType.RISK_GATE_EVALUATED,
    *(EventType(t) for t in lifecycle.STATE_EVENT_TYPES),
)
PROPOSAL_COLUMNS = (
    "proposal_id",
    "proposed_at",
    "market_at",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "stop",
    "notional",
    "decision",
    "violations",
    "state",
    "source",
    "correlation_id",
)


def _proposal_rows(events: list[Event]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        pid = event.proposal_id
        if pid is None:
            continue
        payload = event.payload
        if event.type == EventType.ORDER_PROPOSED:
            rows[pid] = _new_row(pid, event, payload["intent"])
            continue
        row = rows.get(pid)
        if row is None:
            continue
        if event.type == EventType.ORDER_SIMULATED:
            row["notional"] = Decimal(payload["result"]["notional"])
        elif event.type == EventType.RISK_GATE_EVALUATED and payload.get("transition", True):
            if "evaluated_at" in payload and not row["judged"]:  # a fault has no market time
                row["market_at"], row["judged"] = payload["evaluated_at"], True
            row["decision"] = payload["decision"]
            row["violations"] = _violation_text(payload)
        state = lifecycle.state_after(event.type, payload)
        if state is not None:
            row["state"] = state.value
    return list(rows.values())


def _new_row(pid: str, event: Event, intent: dict[str, Any]) -> dict[str, Any]:
    stop = intent.get("protective_stop")
    return {
        "proposal_id": pid,
        "proposed_at": event.ts,
        "market_at": event.ts,  # until a decision says when, in market time, it was judged
        "judged": False,
        "symbol": intent["instrument"]["symbol"],
        "side": intent["side"],
        "quantity": Decimal(intent["quantity"]),
        "order_type": intent["order_type"],
        "limit_price": None if intent["limit_price"] is None else Decimal(intent["limit_price"]),
        "stop": None if not stop else Decimal(stop["stop_price"]),
        "notional": None,
        "decision": None,
        "violations": "",
        "state": OrderState.PROPOSED.value,
        "source": intent["source"],
        "correlation_id": event.correlation_id,
    }


def _violation_text(payload: dict[str, Any]) -> str:
    if payload.get("fault"):
        return str(payload["fault"])
    return "; ".join(
        f"{v['rule_id']} ({v['severity']}): {v['message']}" for v in payload.get("violations", [])
    )
