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
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import cycles, lifecycle, orphans, privacy, records, trading_state
from workbench.approval import ApprovalGrant, Approvals
from workbench.audit import AuditLog, EventType, Transaction
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
    UnknownOrderError,
    UnknownProposalError,
    UnresolvedOrderError,
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
    Resolution,
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
    RuleId,
    Severity,
    SimResult,
    SubmitPermit,
    TradingState,
    Violation,
)
from workbench.orphans import Orphan
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

UNKNOWN_OUTCOME = "its token was spent and no broker acknowledged it: its outcome is unknown"
RESOLVE_HINT = (
    "; an approver resolves it first (workbench reconcile resolve ID --not-sent | --sent-as"
    " BROKER_ORDER_ID)"
)

__all__ = ["Credential", "Orphan", "Outcome", "ProposalRecord", "Resolution", "WhatIf", "Workbench"]


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


@dataclass(frozen=True)
class _Basis:
    """What the gate runs on at submit: the account now, and the decision's own quote while it
    is fresh (``earlier`` is that decision) or a fresh quote (``earlier`` None); the simulation
    of the intent on both."""

    portfolio: PortfolioSnapshot
    market: MarketSnapshot
    sim: SimResult
    earlier: RiskDecision | None
    decided_seq: int | None


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
            cycles.ensure(log)
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
            self.log, account=self.account, now=now, policy=policy, key=self._key
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
        self._record(
            proposal_id, intent, [], actor=actor, correlation_id=correlation_id, origin=origin
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

    def evaluate(self, proposal_id: str) -> RiskDecision:
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
            self._history(now),
            now,
        )
        payload = RiskGateEvaluated.of(
            decision,
            market_ts=ctx.market.timestamp,
            portfolio_ts=ctx.portfolio.timestamp,
            transition=True,
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
        """Run each intent once per ``correlation_id``: a symbol and side already proposed under
        it — earlier, after a restart, or by another process running the same cycle at the same
        moment — is skipped, so a day's cycle makes one set of proposals. SQLite enforces it: a
        key per cycle, symbol and side, claimed in the transaction that records the proposal
        (``workbench.cycles``)."""
        seen = cycles.claimed(self.log, correlation_id)
        fresh = []
        for intent in intents:
            key = (intent.symbol, intent.side.value)
            if key not in seen:
                seen.add(key)
                fresh.append(intent)
        return self._run_batch(fresh, actor=actor, correlation_id=correlation_id, once=True)

    def _run_batch(
        self,
        intents: list[OrderIntent],
        *,
        actor: str,
        correlation_id: str | None,
        once: bool = False,
    ) -> list[Outcome]:
        """One account snapshot, one gate history and one quote per symbol for the whole batch;
        each proposal's events (proposed, simulated, judged, approval requested) in one
        transaction, so a proposal is recorded whole or not at all. With ``once``, an intent
        whose cycle key another proposal claimed meanwhile is recorded not at all (and left out
        of the outcomes)."""
        if not intents:
            return []
        for intent in intents:  # refuse a foreign account before anything is written
            self._check_account(intent)
        portfolio = self.portfolio()
        now = self.clock.now()
        batch = _Batch(
            portfolio=portfolio, history=self._history(now), state=self.trading_state(), now=now
        )
        outcomes = (
            self._run_one(intent, batch, actor=actor, correlation_id=correlation_id, once=once)
            for intent in intents
        )
        return [outcome for outcome in outcomes if outcome is not None]

    def _run_one(
        self,
        intent: OrderIntent,
        batch: _Batch,
        *,
        actor: str,
        correlation_id: str | None,
        once: bool,
    ) -> Outcome | None:
        proposal_id = self.ids()
        try:
            quote = batch.quotes.get(intent.symbol) or self.market_snapshot(intent.symbol)
            batch.quotes[intent.symbol] = quote
            sim = simulate_impact(intent, batch.portfolio, quote, self.params.costs)
        except (SimulationError, MarketDataError) as exc:
            fault = f"simulation failed: {exc}"
            steps: list[tuple[EventType, Payload]] = [
                (EventType.RISK_GATE_EVALUATED, RiskGateEvaluated.of_fault(fault))
            ]
            if not self._record(proposal_id, intent, steps, actor=actor,
                                correlation_id=correlation_id, once=once):  # fmt: skip
                return None
            return Outcome(proposal_id, intent, None, OrderState.RISK_REJECTED, fault)
        decision = gate_evaluate(
            intent, sim, batch.portfolio, quote, self.policy, batch.state, batch.history, batch.now
        )
        judged = RiskGateEvaluated.of(
            decision, market_ts=quote.timestamp, portfolio_ts=batch.portfolio.timestamp,
            transition=True,
        )  # fmt: skip
        steps = [
            (EventType.ORDER_SIMULATED, OrderSimulated.model_construct(result=sim)),
            (EventType.RISK_GATE_EVALUATED, judged),
        ]
        if decision.decision is not Decision.REJECT:
            steps.append((EventType.APPROVAL_REQUESTED, ApprovalRequested()))
        if not self._record(
            proposal_id, intent, steps, actor=actor, correlation_id=correlation_id, once=once
        ):
            return None
        if decision.decision is Decision.REJECT:
            return Outcome(proposal_id, intent, decision, OrderState.RISK_REJECTED)
        return Outcome(proposal_id, intent, decision, self._auto_commit(proposal_id))

    def _record(
        self,
        proposal_id: str,
        intent: OrderIntent,
        steps: list[tuple[EventType, Payload]],
        *,
        actor: str,
        correlation_id: str | None,
        once: bool = False,
        origin: McpOrigin | None = None,
    ) -> bool:
        """Record a proposal (with its MCP ``origin``, if any) and its next ``steps`` in one
        transaction, claiming its cycle key when it has a correlation id; with ``once``, a key
        already claimed records nothing and returns False."""
        with self.log.transaction() as tx:
            if correlation_id is not None:
                side = intent.side.value
                fresh = cycles.claim(tx, correlation_id, intent.symbol, side, proposal_id)
                if once and not fresh:
                    return False
            lifecycle.advance(
                tx, proposal_id, EventType.ORDER_PROPOSED, _proposed(intent, self.label, origin),
                actor=actor, correlation_id=correlation_id,
            )  # fmt: skip
            for type_, payload in steps:
                lifecycle.advance(tx, proposal_id, type_, payload, actor=ACTOR)
        return True

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
        """Spend the token and send the order, judged again as of now.

        A bogus token (malformed, bad MAC, another proposal's, used, expired) is refused before
        anything is snapshotted or recorded. Then the trading state, a fresh account snapshot
        (its NAV recorded: the circuit breaker may trip right here) and the state again. In the
        transaction that spends the token, under the write lock: the token and the state once
        more, and the whole gate as of then — the trading state, the window, the account now,
        the orders actually submitted, working or of unknown outcome (duplicates, rate) — on the
        decision's own quote while it is fresh, else on a fresh quote (a decision older than the
        freshness window or from the clock's future). A REJECT there is recorded as the
        proposal's final verdict (RISK_REJECTED) and nothing is sent. The broker is called after
        that transaction commits.
        """
        approvals = self._approvals()
        record = approvals.check_token(proposal_id, token)  # reads only
        self._refuse_when_halted(record.intent)
        portfolio = self.portfolio()  # records NAV: the circuit breaker may trip right here
        self._refuse_when_halted(record.intent)
        permit = self._spend(approvals, record, token, self._basis(record, portfolio))
        if permit is None:  # the decision went stale on the way in: judge it again whole
            permit = self._spend(approvals, record, token, self._fresh_basis(record, portfolio))
        if permit is None:
            why = "the proposal changed while it was being submitted: submit it again"
            raise ApprovalError(why, proposal_id=proposal_id)
        self._send(permit)
        return self.state(proposal_id)

    def cancel(self, proposal_id: str, *, actor: str) -> OrderState:
        """Cancel a working order at the broker, or withdraw a proposal not yet sent.

        Allowed in every trading state, HALTED included; not on a proposer-only handle (a
        proposer neither withdraws others' proposals nor cancels working orders).
        """
        self._refuse_if_proposer_only()
        state = self.state(proposal_id)
        if state is OrderState.UNKNOWN:
            raise UnresolvedOrderError(UNKNOWN_OUTCOME + RESOLVE_HINT, proposal_id=proposal_id)
        if state in lifecycle.WORKING_STATES:
            try:
                self.broker.cancel(proposal_id=proposal_id)
            except UnknownOrderError:
                why = "its token was spent but the broker holds no order for it: run `workbench"
                raise UnresolvedOrderError(why + " reconcile`", proposal_id=proposal_id) from None
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
        by state, what other local users could read in the home, the connection to the broker
        (``link``: None for the embedded paper broker) and the orders of unknown outcome."""
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
            "link": self.broker.link(),
            "unknown_orders": self.proposals(states=[OrderState.UNKNOWN])["proposal_id"].tolist(),
        }

    def reconcile(self) -> list[Orphan]:
        """Orders of unknown outcome: tokens spent whose order the broker does not hold (a crash
        between the two, a permit it refused), and those recorded UNKNOWN and not resolved. Each
        is recorded UNKNOWN (never re-sent; no new order on its symbol until an approver resolves
        it: :meth:`resolve`) and returned with what is known; the run is recorded."""
        held = self.broker.orders()
        key = self._key
        secret = None if key is None else key.load_if_present()
        with self.log.transaction() as tx:
            found = orphans.find(self.log, held, secret, checked=key is not None)
            for orphan in found:
                orphans.declare(tx, orphan, broker=self.label)
            ids = tuple(o.proposal_id for o in found)
            run = ReconciliationRun(submitted_without_broker_order=ids, broker=self.label)
            tx.append(EventType.RECONCILIATION_RUN, run, actor=ACTOR)
        return [orphans.declared(o) for o in found]

    def resolve(
        self,
        proposal_id: str,
        credential: Credential,
        outcome: Resolution,
        *,
        broker_order_id: str | None = None,
        reason: str,
    ) -> OrderState:
        """An approver resolves an order of unknown outcome after looking at the broker:
        NOT_SENT (the broker holds no order with its orderRef), or SENT as ``broker_order_id``
        (an order the broker holds with its orderRef). Checked against the broker's orders,
        the credential verified in the library, recorded with the approval key's MAC."""
        if self.authority is None:
            raise ApprovalError(PROPOSER_ONLY)
        orphans.resolve(
            self.authority, self.broker.orders(), proposal_id, credential, outcome,
            broker_order_id=broker_order_id, broker=self.label, reason=reason,
        )  # fmt: skip
        return self.state(proposal_id)

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

    def _history(self, now: datetime) -> History:
        return trading_state.build_history(
            self.log, account=self.account, now=now, policy=self.policy, key=self._key
        )

    # -- submit: the judgment under the write lock -------------------------------------------

    def _stale(self, decided: RiskGateEvaluated, now: datetime) -> bool:
        """Whether a decision must be judged again whole: made under another policy, older than
        the freshness window, or from the clock's future (a negative age is never fresh)."""
        if decided.policy_hash != policy_hash(self.policy):
            return True
        window = timedelta(seconds=self.policy.freshness.max_quote_age_seconds)
        times = (decided.evaluated_at, decided.market_ts)
        return any(t is None or t > now or now - t > window for t in times)

    def _basis(self, record: ProposalRecord, portfolio: PortfolioSnapshot) -> _Basis:
        """The decision's own quote when the decision is fresh and it is the verdict the
        approver saw; else a fresh quote (recorded). The intent simulated on the account now."""
        decided, verdict = record.decision, record.verdict
        if decided is None or verdict is None or decided.seq != verdict.seq:
            return self._fresh_basis(record, portfolio)
        quote = (
            None
            if self._stale(decided.data, self.clock.now())
            else records.judged_quote(self.log, record)
        )
        if quote is None:
            return self._fresh_basis(record, portfolio)
        sim = simulate_impact(record.intent, portfolio, quote, self.params.costs)
        return _Basis(portfolio, quote, sim, _as_decision(decided.data), decided.seq)

    def _fresh_basis(self, record: ProposalRecord, portfolio: PortfolioSnapshot) -> _Basis:
        quote = self.market_snapshot(record.intent.symbol)
        sim = simulate_impact(record.intent, portfolio, quote, self.params.costs)
        return _Basis(portfolio, quote, sim, None, None)

    def _spend(
        self, approvals: Approvals, record: ProposalRecord, token: str, basis: _Basis
    ) -> SubmitPermit | None:
        """In one transaction, under the write lock: the token and the trading state again, the
        gate's judgment as of now (recorded when it changed or refuses), and the token spent.
        None when the decision went stale meanwhile (nothing recorded): judge it again whole."""
        pid, intent = record.proposal_id, record.intent
        with self.log.transaction() as tx:
            current = approvals.check_token(pid, token)
            self._refuse_when_halted(intent)
            now = self.clock.now()
            if basis.earlier is not None:
                decided = current.decision
                if decided is None or decided.seq != basis.decided_seq:
                    return None
                if self._stale(decided.data, now):
                    return None
            decision = self._judge_at_submit(intent, basis, now)
            refusal = self._record_judgment(tx, current, basis, decision)
            if refusal is None:
                ref = order_ref(pid, is_propagated=intent.is_propagated)
                return approvals.consume(tx, pid, token, order_ref=ref)
        raise ApprovalError(refusal, proposal_id=pid)

    def _judge_at_submit(self, intent: OrderIntent, basis: _Basis, now: datetime) -> RiskDecision:
        """The whole gate as of ``now``: the trading state and the history (orders actually
        submitted, working, of unknown outcome) read under the write lock, handed to the pure
        gate with the basis."""
        return gate_evaluate(
            intent, basis.sim, basis.portfolio, basis.market, self.policy, self.trading_state(),
            self._history(now), now,
        )  # fmt: skip

    def _record_judgment(
        self, tx: Transaction, record: ProposalRecord, basis: _Basis, decision: RiskDecision
    ) -> str | None:
        """Record the submit-time decision (a REJECT as the final verdict; anything else when it
        changed); return why the order may not go, or None."""
        final = decision.decision is Decision.REJECT
        earlier = basis.earlier
        whole = earlier is None
        if final or earlier is None or decision.violations != earlier.violations:
            judged = RiskGateEvaluated.of(
                decision, market_ts=basis.market.timestamp,
                portfolio_ts=basis.portfolio.timestamp, transition=final,
            )  # fmt: skip
            lifecycle.advance(
                tx, record.proposal_id, EventType.RISK_GATE_EVALUATED, judged, actor=ACTOR
            )
        if final:
            how = " on a fresh quote" if whole else ""
            blockers = _findings(decision, Severity.BLOCKER)
            return f"the gate, judging it again at submit{how}, rejects it for good: {blockers}"
        if decision.decision is Decision.REVIEW:
            return self._review_not_covered(record, decision)
        return None

    def _review_not_covered(self, record: ProposalRecord, decision: RiskDecision) -> str | None:
        """Why a REVIEW at submit may not go: the approval recorded no override, or the gate now
        raises a finding the approver did not see."""
        grant = record.grant
        assert grant is not None  # check_token: the proposal is approved and unused
        seen: set[RuleId] = set()
        if grant.data.override_reason is not None:
            then = records.load(self.log, record.proposal_id, until_seq=grant.seq).decision
            seen = set() if then is None else _majors(then.data.violations)
        new = _majors(decision.violations) - seen
        if not new and grant.data.override_reason is not None:
            return None
        return (
            "the gate, judging it again at submit, asks for review of what the approval did not"
            f" cover ({_findings(decision, Severity.MAJOR)}): reject or withdraw it and propose"
            " again"
        )

    def _send(self, permit: SubmitPermit) -> None:
        self.broker.submit(permit)


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


def _as_decision(decided: RiskGateEvaluated) -> RiskDecision:
    """A recorded gate verdict (not a fault: its figures are all there) as the gate's decision."""
    assert decided.policy_hash and decided.intent_hash and decided.evaluated_at
    return RiskDecision.model_construct(
        decision=decided.decision,
        violations=decided.violations,
        computed=decided.computed,
        policy_hash=decided.policy_hash,
        intent_hash=decided.intent_hash,
        evaluated_at=decided.evaluated_at,
    )


def _majors(violations: tuple[Violation, ...]) -> set[RuleId]:
    return {v.rule_id for v in violations if v.severity is Severity.MAJOR}


def _findings(decision: RiskDecision, severity: Severity) -> str:
    return "; ".join(
        f"{v.rule_id.value}: {v.message}" for v in decision.violations if v.severity is severity
    )
