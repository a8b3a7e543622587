"""The facade: the one order path that notebooks, the CLI and the MCP server all use.

Read it top to bottom to follow one intent: ``propose`` → ``simulate`` → ``evaluate`` →
``request_approval`` → (a person) ``approve`` → ``submit`` (token consumed, then the broker)
→ fills.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import lifecycle, privacy, records, trading_state
from workbench.approval import ApprovalGrant, Approvals
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority, Credential
from workbench.bridge import AccountMonitor, order_ref
from workbench.brokers.base import Broker
from workbench.canonical import utc_iso
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
from workbench.events import (
    ApprovalRequested,
    MarketSnapshotTaken,
    McpOrigin,
    OrderProposed,
    OrderSimulated,
    OrderWithdrawn,
    Payload,
    ReconciliationRun,
    RiskGateEvaluated,
)
from workbench.home import (
    DB_NAME,
    create_home,
    is_replay_home,
    require_home,
    require_writable,
    resolve_policy_dir,
)
from workbench.intent_hash import intent_hash
from workbench.keys import ApprovalKey
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
from workbench.records import ProposalRecord
from workbench.replay import replay_clock_of
from workbench.risk import History, StateChange
from workbench.risk import evaluate as gate_evaluate
from workbench.sim import simulate as simulate_impact

ACTOR = "workbench"
UNREADABLE = "UNREADABLE"  # the state shown for a proposal whose events do not validate
PROPOSER_ONLY = "this workbench was opened read-and-propose only: it holds no approval authority"

__all__ = ["Credential", "Outcome", "ProposalRecord", "WhatIf", "Workbench"]


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
    """One home, one broker, one policy: the order path and the views of it.

    Opened with ``proposer_only`` it never loads the approval key nor the approvers: it reads and
    proposes, its ``authority`` and ``approvals`` are None, approve/reject/submit/resume (and
    cancel, halt and reduce) refuse,
    its broker refuses every submit and its trading state is read as recorded (unverified).
    """

    home: Path
    log: AuditLog
    broker: Broker
    policy: RiskPolicy
    params: StrategyParams
    clock: Clock
    authority: Authority | None
    approvals: Approvals | None
    ids: Callable[[], str] = new_proposal_id
    _contexts: dict[str, _Context] = field(default_factory=dict, repr=False)
    _owns_broker: bool = field(default=False, repr=False)

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
        proposer_only: bool = False,
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
    ) -> Workbench:
        """Open a home (create it only when ``create``: a missing home is a HomeError naming
        the path); load the policies strictly; connect the named broker.

        ``clock`` is market time: what the gate, the approvals and the brokers see (a
        replay's fixed clock). Events are stamped by ``log_clock``, the wall clock unless a
        test injects one. A replay sandbox home (``…/replay/<day>``) opens on the paper broker
        only, and on its day's replay clock unless given another. ``bars_path`` (else the
        policy's ``market_data.bars``) points the paper broker at the user's own daily bars
        instead of the seeded synthetic ones. ``proposer_only`` opens a read-and-propose handle
        (the MCP server's): no approval key, no approvers, a broker that sends nothing (IBKR: a
        read-only connection). ``broker="ibkr"`` connects to IB Gateway/TWS as
        ``policies/broker.yaml`` says, ``host``/``port``/``client_id`` over it; a live port or
        account is refused before anything connects."""
        folder = resolve_policy_dir(policy_dir)
        policy, params = load_policy(folder), load_strategy_params(folder)
        connection = Connection(host, port, client_id)
        root = require_writable(create_home(home) if create else require_home(home))
        if is_replay_home(root) and not _is_paper(broker):
            raise ConfigError(f"{root} is a replay sandbox: it runs on the paper broker only")
        clock = clock or (replay_clock_of(root) if is_replay_home(root) else SystemClock())
        log = AuditLog(root / DB_NAME, log_clock or SystemClock())
        made: Broker | None = None
        try:
            key = None if proposer_only else ApprovalKey(root)
            if isinstance(broker, str):
                made = _make_broker(broker, log, clock, key, folder, params, bars_path, connection)
            authority = approvals = None
            if not proposer_only:
                authority = Authority(log, root, clock)
                approvals = Approvals(log, authority, clock, policy_dir=folder)
        except BaseException:
            if made is not None:
                made.close()
            log.close()
            raise
        chosen = made if made is not None else broker
        assert not isinstance(chosen, str)
        bench = cls(root, log, chosen, policy, params, clock, authority, approvals, ids)
        bench._owns_broker = isinstance(broker, str)
        return bench

    def close(self) -> None:
        """Close the broker the workbench opened (an IBKR session disconnects), then the log."""
        try:
            if self._owns_broker:
                self.broker.close()
        finally:
            self.log.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def label(self) -> str:
        """Which broker trades: "paper broker (simulated)" or "IBKR paper account DU… via
        host:port"."""
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
            trading_state.record_portfolio_snapshot(
                self.log, snapshot, self.params.circuit_breaker, key=self._key
            )
        return snapshot

    def market_snapshot(self, symbol: str, *, record: bool = True) -> MarketSnapshot:
        """A fresh quote from the broker, recorded as MarketSnapshotTaken unless told not to."""
        quote = self.broker.market_snapshot(self.broker.instrument(symbol))
        if record:
            self.log.append(
                EventType.MARKET_SNAPSHOT_TAKEN, MarketSnapshotTaken(quote=quote), actor=ACTOR
            )
        return quote

    @property
    def _key(self) -> ApprovalKey | None:
        return None if self.authority is None else self.authority.key

    def state_change(self) -> StateChange:
        """The trading state with who set it and why: verified with the approval key (releases
        that do not verify are ignored and listed), or as recorded on a proposer-only handle."""
        return trading_state.read_state(self.log, self._key)

    def trading_state(self) -> TradingState:
        return self.state_change().state

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

    def propose(
        self,
        intent: OrderIntent,
        *,
        actor: str,
        correlation_id: str | None = None,
        origin: McpOrigin | None = None,
    ) -> str:
        """Record a validated intent as a new proposal; returns its id. Nothing is sent.
        ``origin`` names the MCP client and session of a proposal made through the MCP server."""
        self._check_account(intent)
        proposal_id = self.ids()
        payload = _proposed(intent, self.label, origin)
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
                tx, proposal_id, EventType.ORDER_SIMULATED, OrderSimulated(result=sim), actor=ACTOR
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
        payload = RiskGateEvaluated.of(
            decision,
            market_ts=ctx.market.timestamp,
            portfolio_ts=ctx.portfolio.timestamp,
            transition=transition,
        )
        with self.log.transaction() as tx:
            lifecycle.advance(tx, proposal_id, EventType.RISK_GATE_EVALUATED, payload, actor=ACTOR)
        return decision

    def request_approval(self, proposal_id: str) -> None:
        """Ask a person: only proposals the gate approved or sent to review get here."""
        with self.log.transaction() as tx:
            lifecycle.advance(
                tx, proposal_id, EventType.APPROVAL_REQUESTED, ApprovalRequested(), actor=ACTOR
            )

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
        proposed = _proposed(intent, self.label)
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
                    tx, proposal_id, EventType.RISK_GATE_EVALUATED,
                    RiskGateEvaluated.of_fault(fault), actor=ACTOR,
                )  # fmt: skip
            return Outcome(proposal_id, intent, None, OrderState.RISK_REJECTED, fault)
        decision = gate_evaluate(
            intent, sim, batch.portfolio, quote, self.policy, batch.state, batch.history, batch.now
        )
        judged = RiskGateEvaluated.of(
            decision, market_ts=quote.timestamp, portfolio_ts=batch.portfolio.timestamp,
            transition=True,
        )  # fmt: skip
        steps: list[tuple[EventType, Payload]] = [
            (EventType.ORDER_SIMULATED, OrderSimulated.model_construct(result=sim)),
            (EventType.RISK_GATE_EVALUATED, judged),
        ]
        if decision.decision is not Decision.REJECT:
            steps.append((EventType.APPROVAL_REQUESTED, ApprovalRequested()))
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
        if self.approvals is None or not self.policy.approval.auto_commit.enabled:
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
        credential: Credential,
        *,
        override_reason: str | None = None,
        second: Credential | None = None,
    ) -> ApprovalGrant:
        """A person approves with their credential (verified by the library); returns the
        one-time token (shown once). A REVIEW needs ``override_reason``."""
        return self._approvals().approve(
            proposal_id, credential, override_reason=override_reason, second=second
        )

    def reject(self, proposal_id: str, credential: Credential, reason: str) -> None:
        """A person rejects with their credential and a reason."""
        self._approvals().reject(proposal_id, credential, reason)

    def submit(self, proposal_id: str, token: str) -> OrderState:
        """Re-check state, breaker and freshness; consume the token; then send to the broker."""
        approvals = self._approvals()
        intent = self.intent(proposal_id)
        self._refuse_when_halted(intent)
        self.portfolio()  # records NAV: the circuit breaker may trip right here
        self._refuse_when_halted(intent)
        self._recheck_if_stale(proposal_id, intent)
        with self.log.transaction() as tx:
            # Again under the write lock: a halt from another process cannot slip in before it.
            self._refuse_when_halted(intent)
            permit = approvals.consume(
                tx,
                proposal_id,
                token,
                order_ref=order_ref(proposal_id, is_propagated=intent.is_propagated),
            )
        self._send(permit)
        return self.state(proposal_id)

    def cancel(self, proposal_id: str, *, actor: str) -> OrderState:
        """Cancel a working order at the broker, or withdraw a proposal not yet sent.

        Allowed in every trading state, HALTED included; not on a proposer-only handle (a
        proposer neither withdraws others' proposals nor cancels working orders).
        """
        self._refuse_if_proposer_only()
        state = self.state(proposal_id)
        if state in lifecycle.WORKING_STATES:
            self.broker.cancel(proposal_id=proposal_id)
        else:
            withdrawn = OrderWithdrawn(by=actor)
            with self.log.transaction() as tx:
                lifecycle.advance(
                    tx, proposal_id, EventType.ORDER_WITHDRAWN, withdrawn, actor=actor
                )
        return self.state(proposal_id)

    # -- trading state -----------------------------------------------------------------------

    def halt(self, reason: str, *, by: str) -> None:
        self._refuse_if_proposer_only()
        trading_state.set_state(self.log, TradingState.HALTED, reason=reason, by=by)

    def reduce(self, reason: str, *, by: str) -> None:
        self._refuse_if_proposer_only()
        trading_state.set_state(self.log, TradingState.REDUCING, reason=reason, by=by)

    def resume(self, reason: str, credential: Credential) -> StateChange:
        """Lift a halt (a circuit-breaker trip included): only an enrolled approver, whose
        credential the library verifies."""
        if self.authority is None:
            raise ApprovalError(PROPOSER_ONLY)
        return trading_state.resume(self.authority, credential, reason=reason)

    def _approvals(self) -> Approvals:
        if self.approvals is None:
            raise ApprovalError(PROPOSER_ONLY)
        return self.approvals

    def _refuse_if_proposer_only(self) -> None:
        """Trading state and working orders are a person's business, not a proposer's."""
        if self.authority is None:
            raise ApprovalError(PROPOSER_ONLY)

    # -- views -------------------------------------------------------------------------------

    def intent(self, proposal_id: str) -> OrderIntent:
        proposed = self.log.events(
            proposal_id=proposal_id, types=(EventType.ORDER_PROPOSED,), limit=1
        )
        if not proposed:
            raise UnknownProposalError(proposal_id)
        return proposed[0].data_as(OrderProposed).intent

    def detail(self, proposal_id: str) -> ProposalRecord:
        """One proposal as the approver should see it: intent, simulation, decision, grant,
        submission and state (the one typed record every reader uses)."""
        return records.load(self.log, proposal_id)

    def state(self, proposal_id: str) -> OrderState:
        return lifecycle.current_state(self.log, proposal_id)

    def proposals(self, *, states: Iterable[OrderState] | None = None) -> pd.DataFrame:
        """One row per proposal: what it is, its decision, violations and current state.

        ``proposed_at`` is when it was recorded (the log's wall clock); ``market_at`` is the
        market time it was judged at (its decision's ``evaluated_at``: a replay's day), or the
        recorded time when it never got a decision. Views show ``market_at``."""
        rows = [_row(r) for r in records.load_all(self.log, _PROPOSAL_VIEW_TYPES)]
        # A proposal whose events do not validate is listed as UNREADABLE, with why: seen, and
        # never offered for approval (its state is no lifecycle state).
        frame = pd.DataFrame(rows, columns=list(PROPOSAL_COLUMNS))
        if states is not None:
            wanted = {s.value for s in states}
            frame = frame[frame["state"].isin(wanted)].reset_index(drop=True)
        return frame

    def status(self) -> dict[str, Any]:
        """Home, broker, trading state (and releases that did not verify), chain head, proposals
        by state, and what other local users could read in the home."""
        change = self.state_change()
        seq, head = self.log.head()
        counts = self.proposals()["state"].value_counts().to_dict()
        return {
            "home": str(self.home),
            "broker": self.label,
            "account": self.account,
            "trading_state": change.state.value,
            "trading_state_reason": change.reason,
            "trading_state_by": change.by,
            "trading_state_verified": change.verified,
            "unverified_releases": list(change.refused),
            "privacy_problems": privacy.problems(self.home),
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
        run = ReconciliationRun(submitted_without_broker_order=tuple(stuck), broker=self.label)
        self.log.append(EventType.RECONCILIATION_RUN, run, actor=ACTOR)
        return stuck

    # -- helpers -----------------------------------------------------------------------------

    def _fresh_context(self, intent: OrderIntent) -> _Context:
        portfolio = self.portfolio()
        market = self.market_snapshot(intent.symbol)
        return _Context(
            portfolio, market, simulate_impact(intent, portfolio, market, self.params.costs)
        )

    def _reject_fault(self, proposal_id: str, why: str) -> None:
        fault = RiskGateEvaluated.of_fault(why)
        with self.log.transaction() as tx:
            lifecycle.advance(tx, proposal_id, EventType.RISK_GATE_EVALUATED, fault, actor=ACTOR)

    def _check_account(self, intent: OrderIntent) -> None:
        """The door: our account, and a size in the instrument's increments (whole units unless
        the policy allows fractions for it); refused before anything is recorded."""
        if intent.account != self.account:
            raise ProposalError(f"intent is for account {intent.account}, not {self.account}")
        problem = self.policy.instruments.size_problem(intent.symbol, intent.quantity)
        if problem is not None:
            raise ProposalError(problem)

    def _refuse_when_halted(self, intent: OrderIntent) -> None:
        change = self.state_change()
        if change.state is TradingState.HALTED:
            raise TradingHaltedError("HALTED", f"no order is sent ({change.reason})")
        if change.state is TradingState.REDUCING and not self._reduces(intent):
            raise TradingHaltedError("REDUCING", "only orders that reduce a position are sent")

    def _reduces(self, intent: OrderIntent) -> bool:
        held = self.broker.portfolio(self.account).position(intent.symbol)
        qty = held.quantity if held else Decimal(0)
        return qty * intent.side.sign < 0 and intent.quantity <= abs(qty)

    def _recheck_if_stale(self, proposal_id: str, intent: OrderIntent) -> None:
        record = records.load(self.log, proposal_id)
        if record.state is not OrderState.APPROVAL_GRANTED:
            return  # nothing to re-check: consuming the token refuses it, saying why
        decided = record.decision
        if decided is None or decided.data.market_ts is None:
            raise ApprovalError("no risk decision recorded", proposal_id=proposal_id)
        age = (self.clock.now() - decided.data.market_ts).total_seconds()
        same_policy = decided.data.policy_hash == policy_hash(self.policy)
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
            intent = event.data_as(OrderProposed).intent
            keys.add((intent.symbol, intent.side.value))
        return keys


def _proposed(intent: OrderIntent, broker: str, origin: McpOrigin | None = None) -> OrderProposed:
    """The OrderProposed payload of an already-validated intent (its hash computed here)."""
    digest = intent_hash(intent)
    return OrderProposed.model_construct(
        intent=intent, intent_hash=digest, broker=broker, origin=origin
    )


@dataclass(frozen=True)
class Connection:
    """Where to reach IB Gateway/TWS, over ``policies/broker.yaml`` (None: as the file says)."""

    host: str | None = None
    port: int | None = None
    client_id: int | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.host, self.port, self.client_id))


def _is_paper(broker: str | Broker) -> bool:
    from workbench.brokers.paper import PaperBroker

    return broker == "paper" if isinstance(broker, str) else type(broker) is PaperBroker


def _make_broker(
    name: str,
    log: AuditLog,
    clock: Clock,
    key: ApprovalKey | None,
    policy_dir: Path,
    params: StrategyParams,
    bars_path: str | os.PathLike[str] | None,
    connection: Connection,
) -> Broker:
    if name == "paper":
        from workbench.brokers.paper import PaperBroker
        from workbench.marketdata import CsvBars, MarketData

        if connection.given:
            raise ConfigError("host, port and client id are for the IBKR broker (--broker ibkr)")
        bars = Path(bars_path) if bars_path else bars_file(params, policy_dir)
        market = MarketData(CsvBars(bars)) if bars else None
        return PaperBroker(log, clock, market=market, key=key)
    if name == "ibkr":
        if bars_path:
            raise ConfigError("a bars file is for the paper broker: IBKR's daily bars come from IB")
        return _connect_ibkr(log, clock, key, policy_dir, connection)
    raise ConfigError(f"unknown broker {name!r}: choose 'paper' or 'ibkr'")


def _connect_ibkr(
    log: AuditLog,
    clock: Clock,
    key: ApprovalKey | None,
    policy_dir: Path,
    connection: Connection,
) -> Broker:
    from workbench.broker_policy import connection_settings

    settings, config_hash = connection_settings(
        policy_dir, host=connection.host, port=connection.port, client_id=connection.client_id
    )  # a live port or account is refused here, before ib_async is even imported
    try:
        from workbench.brokers.ibkr import IbkrBroker
    except ImportError as exc:
        raise ConfigError(
            f"the IBKR broker needs ib_async ({exc.name} is missing): pip install 'workbench[ibkr]'"
        ) from None
    return IbkrBroker.connect(log, settings, key=key, clock=clock, config_hash=config_hash)


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


def _row(record: ProposalRecord | records.Unreadable) -> dict[str, Any]:
    if isinstance(record, records.Unreadable):
        empty = dict.fromkeys(PROPOSAL_COLUMNS)
        return {**empty, "proposal_id": record.proposal_id, "state": UNREADABLE,
                "proposed_at": record.proposed_at, "market_at": record.proposed_at,
                "violations": record.reason}  # fmt: skip
    intent, verdict = record.intent, record.verdict
    stop = intent.protective_stop
    return {
        "proposal_id": record.proposal_id,
        "proposed_at": record.proposed.ts,
        "market_at": utc_iso(record.market_at),
        "symbol": intent.symbol,
        "side": intent.side.value,
        "quantity": intent.quantity,
        "order_type": intent.order_type.value,
        "limit_price": intent.limit_price,
        "stop": None if stop is None else stop.stop_price,
        "notional": None if record.sim is None else record.sim.notional,
        "decision": None if verdict is None else verdict.data.decision.value,
        "violations": "" if verdict is None else _violation_text(verdict.data),
        "state": record.state.value,
        "source": intent.source.value,
        "correlation_id": record.correlation_id,
    }


def _violation_text(decision: RiskGateEvaluated) -> str:
    if decision.fault:
        return decision.fault
    return "; ".join(
        f"{v.rule_id.value} ({v.severity.value}): {v.message}" for v in decision.violations
    )
