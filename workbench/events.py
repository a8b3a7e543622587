"""Typed event payloads: one pydantic model per :class:`EventType`, validated on write and on read.

Nothing downstream reads an event by string key: ``AuditLog.append`` turns a mapping into the
model of its type (or takes the model itself), and ``Event.data`` parses the stored JSON back into
it. Every field a check relies on is required: a payload with a field missing does not validate,
so no proof can pass on a missing field. No I/O here.

:data:`GUARDED` names the event types that carry authority or state (grants, submissions, fills,
trading-state changes, enrolment, NAV): the generic ``append`` refuses them and only their write
path in :mod:`workbench.lifecycle` (behind its transition tables) records them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    Field,
    JsonValue,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from workbench.brokers.paper_rules import PaperConfig
from workbench.errors import AuditError, problems
from workbench.intent_hash import intent_hash
from workbench.models import (
    AccountId,
    Amount,
    Currency,
    Decision,
    Frozen,
    MarketSnapshot,
    NonNegativeAmount,
    OrderIntent,
    PortfolioSnapshot,
    RiskDecision,
    Sha256Hex,
    ShortText,
    Side,
    SimResult,
    TradingState,
    Violation,
)
from workbench.orders import BrokerOrder, Fill, OrderId, OrderRef, ProposalId


class EventType(StrEnum):
    """Every kind of event the log records."""

    PORTFOLIO_SNAPSHOT_TAKEN = "PortfolioSnapshotTaken"
    MARKET_SNAPSHOT_TAKEN = "MarketSnapshotTaken"
    ORDER_PROPOSED = "OrderProposed"
    ORDER_SIMULATED = "OrderSimulated"
    RISK_GATE_EVALUATED = "RiskGateEvaluated"
    APPROVAL_REQUESTED = "ApprovalRequested"
    APPROVAL_GRANTED = "ApprovalGranted"
    APPROVAL_DENIED = "ApprovalDenied"
    APPROVAL_EXPIRED = "ApprovalExpired"
    ORDER_SUBMITTED = "OrderSubmitted"
    ORDER_PENDING_CONFIRMATION = "OrderPendingConfirmation"
    ORDER_CONFIRMED = "OrderConfirmed"
    ORDER_PARTIALLY_FILLED = "OrderPartiallyFilled"
    ORDER_FILLED = "OrderFilled"
    ORDER_CANCELLED = "OrderCancelled"
    ORDER_REJECTED = "OrderRejected"
    ORDER_WITHDRAWN = "OrderWithdrawn"
    KILL_SWITCH_ACTIVATED = "KillSwitchActivated"
    KILL_SWITCH_RELEASED = "KillSwitchReleased"
    CIRCUIT_BREAKER_TRIPPED = "CircuitBreakerTripped"
    RECONCILIATION_RUN = "ReconciliationRun"
    TOOL_CALLED = "ToolCalled"
    APPROVER_ADDED = "ApproverAdded"
    APPROVER_REMOVED = "ApproverRemoved"
    BROKER_ORDER_UPDATED = "BrokerOrderUpdated"
    PERMIT_REFUSED = "PermitRefused"
    PAPER_ACCOUNT_OPENED = "PaperAccountOpened"
    DAILY_RUN_STARTED = "DailyRunStarted"
    DAILY_RUN_FINISHED = "DailyRunFinished"
    APPROVAL_CREDENTIAL_REFUSED = "ApprovalCredentialRefused"
    BROKER_CONNECTED = "BrokerConnected"
    ORDER_OUTCOME_UNKNOWN = "OrderOutcomeUnknown"
    ORDER_RESOLVED = "OrderResolved"


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
ApproverName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.\-]{1,31}$")]
TokenId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Seq = Annotated[int, Field(gt=0)]
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
ClientName = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e]{1,100}$")]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


class Payload(Frozen):
    """Base of every payload model: frozen, unknown keys refused, no NaN."""


# -- the order path --------------------------------------------------------------------------------


class McpOrigin(Payload):
    """Where an MCP proposal came from: the client's name and version as it introduced itself
    (a claim, recorded as given), the server's id for the session, and the transport."""

    client: ClientName
    client_version: ClientName | None
    session: SessionId
    transport: Literal["stdio", "http"]


class OrderProposed(Payload):
    """A validated intent became a proposal; its recorded hash must be the intent's own.
    ``origin`` names the MCP client and session of a proposal made through the MCP server (None
    for every other proposer)."""

    intent: OrderIntent
    intent_hash: Sha256Hex
    broker: Name
    origin: McpOrigin | None = None

    @model_validator(mode="after")
    def _hash_is_the_intents(self) -> Self:
        if intent_hash(self.intent) != self.intent_hash:
            raise ValueError("intent_hash: does not match the intent")
        return self


class OrderSimulated(Payload):
    result: SimResult


class RiskGateEvaluated(Payload):
    """The gate's verdict (or a fault recorded as REJECT); ``transition`` false for a submit-time
    re-check, which records a decision without moving the lifecycle state."""

    decision: Decision
    violations: tuple[Violation, ...]
    computed: dict[str, JsonValue]
    policy_hash: Sha256Hex | None
    intent_hash: Sha256Hex | None
    evaluated_at: AwareDatetime | None
    transition: bool
    market_ts: AwareDatetime | None
    portfolio_ts: AwareDatetime | None
    fault: ShortText | None

    @model_validator(mode="after")
    def _a_decision_or_a_fault(self) -> Self:
        if self.fault is not None:
            if self.decision is not Decision.REJECT:
                raise ValueError("decision: a fault is always REJECT")
            return self
        needed = ("policy_hash", "intent_hash", "evaluated_at", "market_ts", "portfolio_ts")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a decision needs {', '.join(missing)}")
        return self

    @classmethod
    def of(
        cls, decision: RiskDecision, *, market_ts: Any, portfolio_ts: Any, transition: bool
    ) -> RiskGateEvaluated:
        """The payload of a gate decision (already validated) and the snapshots' times."""
        return cls.model_construct(  # from validated parts: no second validation
            decision=decision.decision,
            violations=decision.violations,
            computed=decision.computed,
            policy_hash=decision.policy_hash,
            intent_hash=decision.intent_hash,
            evaluated_at=decision.evaluated_at,
            transition=transition,
            market_ts=market_ts,
            portfolio_ts=portfolio_ts,
            fault=None,
        )

    @classmethod
    def of_fault(cls, why: str) -> RiskGateEvaluated:
        """A REJECT recorded when a proposal could not even be simulated (no quote, bad NAV)."""
        return cls(
            decision=Decision.REJECT,
            violations=(),
            computed={},
            policy_hash=None,
            intent_hash=None,
            evaluated_at=None,
            transition=True,
            market_ts=None,
            portfolio_ts=None,
            fault=why[:2000],
        )


class ApprovalRequested(Payload):
    """A person is asked; nothing else to say."""


class MacedForProposal(Payload):
    """A payload MAC'd with the approval key for one proposal (a grant, a resolution): its
    ``mac`` (declared by each subclass) covers every other field and the proposal id."""

    def signed(self, proposal_id: str) -> dict[str, Any]:
        """What the MAC covers: every field but the MAC itself, and the proposal id."""
        return {**self.model_dump(exclude={"mac"}), "proposal_id": proposal_id}


class ApprovalGranted(MacedForProposal):
    """A token was minted. ``mac`` is the approval key's HMAC over every other field and the
    proposal id (``signed``): brokers verify it before they send anything."""

    approvers: Annotated[tuple[ApproverName, ...], Field(min_length=1, max_length=2)]
    token_id: TokenId
    token_digest: Sha256Hex
    expires_at: AwareDatetime
    override_reason: Reason | None
    decision: Decision
    policy_hash: Sha256Hex
    intent_hash: Sha256Hex
    account: AccountId
    notional: NonNegativeAmount | None
    auto_commit: bool
    mac: Sha256Hex

    @model_validator(mode="after")
    def _never_a_reject(self) -> Self:
        if self.decision is Decision.REJECT:
            raise ValueError("decision: a gate REJECT is never granted")
        if self.decision is Decision.REVIEW and self.override_reason is None:
            raise ValueError("override_reason: a REVIEW is granted only with a reason")
        return self


class ApprovalDenied(Payload):
    approver: ApproverName
    reason: Reason


class ApprovalExpired(Payload):
    reason: Reason
    at: AwareDatetime


class OrderSubmitted(Payload):
    """The token was spent: written in the transaction that records its ``token_uses`` row.

    ``spent_at`` is the market time it was spent at (the approvals' clock, the one the grant's
    ``expires_at`` is on; a replay's day, while the event itself carries the wall-clock time it
    was written): the permit check compares the two, and the ``token_uses`` row records it."""

    token_id: TokenId
    intent_hash: Sha256Hex
    order_ref: OrderRef
    approvers: Annotated[tuple[ApproverName, ...], Field(min_length=1, max_length=2)]
    spent_at: AwareDatetime


class BrokerUpdate(Payload):
    """An order's change at the broker (parent lifecycle events and BrokerOrderUpdated)."""

    order: BrokerOrder | None
    fill: Fill | None
    message: ShortText
    broker: Name
    cursor: Seq | None
    order_ref: OrderRef | None

    @model_validator(mode="after")
    def _names_its_order(self) -> Self:
        if self.order is None and (self.order_ref is None or self.fill is not None):
            raise ValueError("order: an update names its order (or at least its order_ref)")
        return self


class OrderWithdrawn(Payload):
    by: Name


class OrderOutcomeUnknown(Payload):
    """A spent token whose order no broker acknowledged: sent or not, nobody knows (a crash
    between the token's transaction and the broker call, found by reconcile; an order whose
    answer a reconnect lost). ``broker_answer`` is what the broker said, if anything. The
    proposal stays UNKNOWN, and its symbol blocked (R13), until an approver resolves it."""

    order_ref: OrderRef
    broker: Name
    broker_answer: Reason
    found_by: Name


class Resolution(StrEnum):
    """What an approver found at the broker about an order of unknown outcome."""

    NOT_SENT = "NOT_SENT"  # the broker holds no order for its order_ref: it never went
    SENT = "SENT"  # the broker holds it (``broker_order_id``), with that order_ref


class OrderResolved(MacedForProposal):
    """An approver, whose credential was verified, resolved an order of unknown outcome, after
    the broker was asked (NOT_SENT: it held no order for ``order_ref``; SENT: it held
    ``broker_order_id`` for it). ``mac`` is the approval key's HMAC over every other field and
    the proposal id: a resolution written any other way does not unblock the symbol."""

    outcome: Resolution
    broker_order_id: OrderId | None
    order_ref: OrderRef
    broker: Name
    approver: ApproverName
    reason: Reason
    mac: Sha256Hex

    @model_validator(mode="after")
    def _sent_names_its_order(self) -> Self:
        if (self.outcome is Resolution.SENT) != (self.broker_order_id is not None):
            raise ValueError("broker_order_id: named exactly when the order was sent")
        return self


class PermitRefused(Payload):
    """A broker refused a permit before anything was sent (its reason is the proof that failed)."""

    reason: Reason
    order_ref: OrderRef
    submitted_seq: Seq
    broker: Name


# -- trading state ---------------------------------------------------------------------------------


class KillSwitchActivated(Payload):
    """A person (or the breaker) tightened trading to HALTED or REDUCING."""

    state: TradingState
    reason: Name
    by: Name

    @model_validator(mode="after")
    def _tightens(self) -> Self:
        if self.state is TradingState.ACTIVE:
            raise ValueError("state: an activation sets REDUCING or HALTED")
        return self


class KillSwitchReleased(Payload):
    """An approver, whose credential was verified, returned trading to ACTIVE. ``mac`` is the
    approval key's HMAC over the fields, the event's seq and the previous event's hash.

    ``market_at`` is the market time of the release (a replay's day; the event itself carries
    the wall-clock time it was written): the circuit breaker counts only NAVs taken after it."""

    state: TradingState
    reason: Name
    by: ApproverName
    market_at: AwareDatetime
    mac: Sha256Hex

    @model_validator(mode="after")
    def _releases(self) -> Self:
        if self.state is not TradingState.ACTIVE:
            raise ValueError("state: a release sets ACTIVE")
        return self

    def signed(self, seq: int, prev_hash: str) -> dict[str, Any]:
        """What the MAC covers: the fields but the MAC, and where the event sits in the chain."""
        return {**self.model_dump(exclude={"mac"}), "seq": seq, "prev_hash": prev_hash}


class CircuitBreakerTripped(Payload):
    state: TradingState
    reason: Reason
    by: Name
    account: AccountId
    nav: Amount
    peak: Amount
    drawdown: Annotated[Decimal, Field(allow_inf_nan=False)]
    limit: Annotated[Decimal, Field(allow_inf_nan=False)]

    @model_validator(mode="after")
    def _halts(self) -> Self:
        if self.state is not TradingState.HALTED:
            raise ValueError("state: the breaker halts")
        return self


# -- approvers -------------------------------------------------------------------------------------


class ApproverAdded(Payload):
    """An approver was enrolled (or their passphrase replaced) by ``by``; the first approver of
    an empty home bootstraps it, with nobody in ``by``."""

    name: ApproverName
    by: Annotated[tuple[ApproverName, ...], Field(max_length=2)]
    bootstrap: bool
    replaced: bool

    @model_validator(mode="after")
    def _someone_consents(self) -> Self:
        if self.bootstrap != (not self.by):
            raise ValueError("by: only the bootstrap of an empty home has nobody consenting")
        if self.bootstrap and self.replaced:
            raise ValueError("replaced: a bootstrap replaces nobody")
        return self


class ApproverRemoved(Payload):
    name: ApproverName
    by: Annotated[tuple[ApproverName, ...], Field(min_length=1, max_length=2)]


class ApprovalCredentialRefused(Payload):
    approver: ApproverName | None
    action: Name
    reason: Name


# -- records ---------------------------------------------------------------------------------------


class MarketSnapshotTaken(Payload):
    quote: MarketSnapshot


ExecId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0)]


class ForeignOrder(Payload):
    """An order IB holds that this home never sent (typed into TWS by hand, or another
    application's): reported on every reconciliation, never adopted."""

    perm_id: Annotated[int, Field(ge=0)] | None
    client_id: int
    order_id: int
    order_ref: Annotated[str, StringConstraints(max_length=200)]
    symbol: Name
    side: Side
    quantity: NonNegativeAmount
    status: Name


class BrokerReconciliation(Payload):
    """What the IBKR adapter found at IB on a (re)connect (``trigger``), matched to the orders
    this home sent (by permId, IB order id, orderRef): how many open and completed orders and
    executions IB listed, which of ours it holds (``matched``), the executions recorded on this
    connection (``fills_adopted``: those that came while away, once each by execId), our orders
    it does not hold (``not_at_ib``; a parent's proposal is marked UNKNOWN: ``unknown``), the
    orders it holds that this home never sent (``foreign``), and executions still waiting for
    their commission report."""

    trigger: Literal["connect", "reconnect", "data-lost"]
    client_id: Annotated[int, Field(ge=0)]
    open_orders: Count
    completed_orders: Count
    executions: Count
    matched: tuple[OrderId, ...]
    fills_adopted: tuple[ExecId, ...]
    not_at_ib: tuple[OrderId, ...]
    unknown: tuple[ProposalId, ...]
    foreign: tuple[ForeignOrder, ...]
    awaiting_commission: tuple[ExecId, ...]


class ReconciliationRun(Payload):
    """A reconciliation of the log with a broker: ``workbench reconcile`` (the spent tokens the
    broker holds no order for) or the IBKR adapter on a (re)connect (``at_broker``; None for
    the former, and in runs recorded before the adapter reconciled)."""

    submitted_without_broker_order: tuple[ProposalId, ...]
    broker: Name
    at_broker: BrokerReconciliation | None = None


class ToolOutcome(StrEnum):
    """What came of one MCP tool call."""

    OK = "ok"
    REFUSED = "refused"  # bad arguments, an unknown tool or proposal, a step out of order
    RATE_LIMITED = "rate_limited"
    FAULT = "fault"  # the server failed (the client saw a generic error)


class ToolCalled(Payload):
    """One MCP tool call: which tool, a digest and the size of the arguments as received (never
    the arguments themselves: they are untrusted and may be huge), what came of it, and who
    called. ``limits_hash`` is the digest of the MCP policy the call was judged under."""

    tool: ToolName
    arguments_digest: Sha256Hex
    arguments_chars: Annotated[StrictInt, Field(ge=0)]
    outcome: ToolOutcome
    detail: ShortText
    proposal_id: ProposalId | None
    origin: McpOrigin
    limits_hash: Sha256Hex


class PaperAccountOpened(Payload):
    account: AccountId
    currency: Currency
    broker: Name
    starting_cash: NonNegativeAmount
    config: PaperConfig


class BrokerConnected(Payload):
    """The workbench connected to a broker session: who trades, where, and under which config."""

    broker: Name
    account: AccountId
    endpoint: Name
    client_id: Annotated[int, Field(ge=0)]
    server_version: Annotated[int, Field(gt=0)]
    test_gateway: bool
    read_only: bool
    config_hash: Sha256Hex


class DailyRun(Payload):
    as_of: date
    detail: ShortText


PAYLOADS: Mapping[EventType, type[Frozen]] = {
    EventType.PORTFOLIO_SNAPSHOT_TAKEN: PortfolioSnapshot,
    EventType.MARKET_SNAPSHOT_TAKEN: MarketSnapshotTaken,
    EventType.ORDER_PROPOSED: OrderProposed,
    EventType.ORDER_SIMULATED: OrderSimulated,
    EventType.RISK_GATE_EVALUATED: RiskGateEvaluated,
    EventType.APPROVAL_REQUESTED: ApprovalRequested,
    EventType.APPROVAL_GRANTED: ApprovalGranted,
    EventType.APPROVAL_DENIED: ApprovalDenied,
    EventType.APPROVAL_EXPIRED: ApprovalExpired,
    EventType.ORDER_SUBMITTED: OrderSubmitted,
    EventType.ORDER_PENDING_CONFIRMATION: BrokerUpdate,
    EventType.ORDER_CONFIRMED: BrokerUpdate,
    EventType.ORDER_PARTIALLY_FILLED: BrokerUpdate,
    EventType.ORDER_FILLED: BrokerUpdate,
    EventType.ORDER_CANCELLED: BrokerUpdate,
    EventType.ORDER_REJECTED: BrokerUpdate,
    EventType.ORDER_WITHDRAWN: OrderWithdrawn,
    EventType.KILL_SWITCH_ACTIVATED: KillSwitchActivated,
    EventType.KILL_SWITCH_RELEASED: KillSwitchReleased,
    EventType.CIRCUIT_BREAKER_TRIPPED: CircuitBreakerTripped,
    EventType.RECONCILIATION_RUN: ReconciliationRun,
    EventType.TOOL_CALLED: ToolCalled,
    EventType.APPROVER_ADDED: ApproverAdded,
    EventType.APPROVER_REMOVED: ApproverRemoved,
    EventType.BROKER_ORDER_UPDATED: BrokerUpdate,
    EventType.PERMIT_REFUSED: PermitRefused,
    EventType.PAPER_ACCOUNT_OPENED: PaperAccountOpened,
    EventType.DAILY_RUN_STARTED: DailyRun,
    EventType.DAILY_RUN_FINISHED: DailyRun,
    EventType.APPROVAL_CREDENTIAL_REFUSED: ApprovalCredentialRefused,
    EventType.BROKER_CONNECTED: BrokerConnected,
    EventType.ORDER_OUTCOME_UNKNOWN: OrderOutcomeUnknown,
    EventType.ORDER_RESOLVED: OrderResolved,
}


class WritePath(StrEnum):
    """Where a guarded event type is written (a function in ``workbench.lifecycle``)."""

    ORDER = "lifecycle.advance (the order transition table)"
    TRADING_STATE = "lifecycle.change_trading_state (the trading-state table)"
    ENROLMENT = "lifecycle.record_enrolment (the enrolment table)"
    BROKER = "lifecycle.record_broker_update (a submitted proposal's broker)"
    NAV = "lifecycle.record_snapshot (the NAV the circuit breaker reads)"


_ORDER_EVENTS = (
    EventType.ORDER_PROPOSED,
    EventType.ORDER_SIMULATED,
    EventType.RISK_GATE_EVALUATED,
    EventType.APPROVAL_REQUESTED,
    EventType.APPROVAL_GRANTED,
    EventType.APPROVAL_DENIED,
    EventType.APPROVAL_EXPIRED,
    EventType.ORDER_SUBMITTED,
    EventType.ORDER_PENDING_CONFIRMATION,
    EventType.ORDER_CONFIRMED,
    EventType.ORDER_PARTIALLY_FILLED,
    EventType.ORDER_FILLED,
    EventType.ORDER_CANCELLED,
    EventType.ORDER_REJECTED,
    EventType.ORDER_WITHDRAWN,
    EventType.ORDER_OUTCOME_UNKNOWN,
    EventType.ORDER_RESOLVED,
)
GUARDED: Mapping[EventType, WritePath] = {
    **{t: WritePath.ORDER for t in _ORDER_EVENTS},
    EventType.KILL_SWITCH_ACTIVATED: WritePath.TRADING_STATE,
    EventType.KILL_SWITCH_RELEASED: WritePath.TRADING_STATE,
    EventType.CIRCUIT_BREAKER_TRIPPED: WritePath.TRADING_STATE,
    EventType.APPROVER_ADDED: WritePath.ENROLMENT,
    EventType.APPROVER_REMOVED: WritePath.ENROLMENT,
    EventType.BROKER_ORDER_UPDATED: WritePath.BROKER,
    EventType.PORTFOLIO_SNAPSHOT_TAKEN: WritePath.NAV,
}


def coerce(type_: EventType, payload: object) -> Frozen:
    """The payload model of ``type_``: the model itself, or a mapping validated into it."""
    model = PAYLOADS[type_]
    if type(payload) is model:
        assert isinstance(payload, Frozen)
        return payload
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        got = type(payload).__name__
        raise AuditError(f"{type_.value} takes a {model.__name__} or a mapping, not {got}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        why = problems(exc, "payload")
        raise AuditError(f"{type_.value} payload does not validate: {why}") from None


def parse(type_: str, payload_json: str, *, seq: int) -> Frozen:
    """The stored payload of event ``seq`` parsed into its model; an AuditError if it is not one."""
    try:
        model = PAYLOADS[EventType(type_)]
    except ValueError:
        raise AuditError(f"event {seq}: unknown event type {type_!r}") from None
    try:
        return model.model_validate_json(payload_json)
    except ValidationError as exc:
        why = problems(exc, "payload")
        raise AuditError(f"event {seq} ({type_}) does not validate: {why}") from None
