"""``workbench mcp``: the MCP face. A model reads and proposes; it never approves or submits.

The server holds a :class:`~workbench.proposer.Proposer` — a handle with no approve, reject,
submit, cancel, resume or halt, opened without the approval key — and nothing else of the
workbench. Its tools are the proposer's reads and steps (:data:`TOOL_NAMES`, pinned by a test);
there is no approve, reject, submit, cancel, resume, policy or approver tool.

Every call passes the door first (:meth:`WorkbenchMCP.call_tool`): the session's and the tool's
rate limits, the arguments' size, nesting and keys; then the SDK validates the arguments against
the tool's schema, and the tool runs through the proposer (one call at a time). Every call, refused
or not, is recorded as a ``ToolCalled`` event (tool, digest and size of the arguments, outcome,
the client's name and session). Errors reach the model as short ``ToolError`` texts that never
echo what it sent; a crash shows a generic message.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from workbench import __version__
from workbench.clock import Clock, SystemClock
from workbench.errors import AuditError, ConfigError, WorkbenchError
from workbench.events import McpOrigin, ToolCalled, ToolOutcome
from workbench.mcp_guard import (
    Measured,
    RateLimiter,
    RefusedCall,
    digest_of,
    inspect_arguments,
    plain,
    printable,
    short_problems,
)
from workbench.mcp_orders import ProposedOrder
from workbench.mcp_policy import McpPolicy
from workbench.mcp_resources import register_resources
from workbench.mcp_text import INSTRUCTIONS, LimitsView, limits_view
from workbench.mcp_views import (
    AuditEventView,
    AuditTail,
    OpenOrdersView,
    PortfolioView,
    ProposalList,
    ProposalView,
    QuoteView,
    RebalanceResult,
    StepResult,
    TradingStateView,
    decision_view,
    orders_view,
    portfolio_view,
    proposal_line,
    proposal_view,
    quote_view,
    simulation_view,
    trading_state_view,
    untrusted,
)
from workbench.models import Symbol
from workbench.orders import ProposalId
from workbench.proposer import Proposer, next_step

LOG = logging.getLogger(__name__)
Transport = Literal["stdio", "http"]
SERVER_NAME = "workbench"
_TOOL_LABEL = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PROPOSAL_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
# Proposing creates state (a proposal, its simulation, its decision, a request to a person) but
# destroys nothing and sends nothing; each call makes a new event, so none is idempotent.
STEP = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


@dataclass(frozen=True)
class Connection:
    """What the server knows about one connection (one lifespan): an id it made up itself."""

    session: str


def _new_connection() -> Connection:
    return Connection("s" + uuid.uuid4().hex[:20])


class WorkbenchMCP(MCPServer[Connection]):
    """An MCPServer whose every tool call passes the door and is audited (module docstring)."""

    def __init__(
        self,
        proposer: Proposer,
        limits: McpPolicy,
        *,
        tools: list[Tool],
        clock: Clock,
        transport: Transport,
        auth: AuthSettings | None = None,
        token_verifier: TokenVerifier | None = None,
    ) -> None:
        @asynccontextmanager
        async def connection(_: MCPServer[Connection]) -> AsyncIterator[Connection]:
            yield _new_connection()

        super().__init__(
            SERVER_NAME,
            title="Trading workbench (read and propose only)",
            instructions=INSTRUCTIONS,
            version=__version__,
            tools=tools,
            lifespan=connection,
            auth=auth,
            token_verifier=token_verifier,
            log_level="WARNING",
        )
        self.proposer = proposer
        self.limits = limits
        self.transport: Transport = transport
        self.limiter = RateLimiter(limits, clock)
        self.declared = {t.name: frozenset(t.parameters.get("properties", {})) for t in tools}
        self._one_at_a_time = anyio.Lock()

    # -- who is calling --------------------------------------------------------------------------

    def origin(self, context: Context[Connection, Any] | None) -> McpOrigin:
        """The caller as recorded: its name and version as it introduced itself (printable
        ASCII, cut), and a session id this server made (never a client-supplied string)."""
        client = version = None
        session = "unknown"
        if context is not None:
            request = context.request_context
            params = request.session.client_params
            if params is not None:
                client, version = params.client_info.name, params.client_info.version
            session = self._session(context, request.lifespan_context)
        return McpOrigin(
            client=printable(client or "unknown"),
            client_version=None if version is None else printable(version, 40),
            session=session,
            transport=self.transport,
        )

    def _session(self, context: Context[Connection, Any], connection: Connection) -> str:
        """stdio: the connection's own id. HTTP (one lifespan for every client): the transport's
        session header if any, else the bearer token's holder — hashed, never echoed."""
        headers = context.headers
        if headers is None:
            return connection.session
        named = headers.get("mcp-session-id")
        if not named:
            token = get_access_token()
            named = None if token is None else f"token:{token.client_id}"
        if not named:
            return connection.session
        return "h" + hashlib.sha256(named.encode("utf-8", "replace")).hexdigest()[:20]

    # -- the door --------------------------------------------------------------------------------

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Connection, Any] | None = None
    ) -> Any:
        """Admit, measure, run one at a time, and record one ToolCalled, whatever happens."""
        origin = self.origin(context)
        measured = digest_of(arguments)
        try:
            self.limiter.admit(origin.session, name)
            if name not in self.declared:
                offered = ", ".join(sorted(self.declared))
                raise RefusedCall(f"unknown tool {plain(name)}: this server offers only {offered}")
            measured = inspect_arguments(arguments, self.declared[name], self.limits)
            async with self._one_at_a_time:
                result = await super().call_tool(name, arguments, context)
        except RefusedCall as exc:
            outcome = ToolOutcome.RATE_LIMITED if exc.rate_limited else ToolOutcome.REFUSED
            self._record(name, measured, outcome, str(exc), origin, _asked_for(arguments))
            raise ToolError(str(exc)) from None
        except ToolError as exc:
            outcome, message = _explain(exc)
            if outcome is ToolOutcome.FAULT:  # the model sees a generic line; the log, why
                LOG.error("tool %s failed", _tool_label(name), exc_info=exc.__cause__)
            self._record(name, measured, outcome, message, origin, _asked_for(arguments))
            raise ToolError(message) from None
        self._record(name, measured, ToolOutcome.OK, _summary(result), origin, _made(result))
        return result

    def _record(
        self,
        name: str,
        measured: Measured,
        outcome: ToolOutcome,
        detail: str,
        origin: McpOrigin,
        proposal_id: str | None,
    ) -> None:
        call = ToolCalled(
            tool=_tool_label(name),
            arguments_digest=measured.digest,
            arguments_chars=measured.chars,
            outcome=outcome,
            detail=detail[:2000],
            proposal_id=proposal_id,
            origin=origin,
            limits_hash=self.limits.digest,
        )
        try:
            self.proposer.record_tool_call(call, actor=f"mcp:{origin.client[:60]}")
        except WorkbenchError as exc:  # fail closed: a call the log cannot record fails
            raise ToolError("the audit log could not record this call: refused") from exc


def _tool_label(name: str) -> str:
    return name if _TOOL_LABEL.fullmatch(name) else "(invalid-name)"


def _asked_for(arguments: Mapping[str, Any]) -> str | None:
    """The proposal id a call named, if it is a well-formed one (recorded with the call)."""
    pid = arguments.get("proposal_id")
    return pid if isinstance(pid, str) and _PROPOSAL_ID.fullmatch(pid) else None


def _made(result: Any) -> str | None:
    content = getattr(result, "structured_content", None)
    pid = content.get("proposal_id") if isinstance(content, dict) else None
    return pid if isinstance(pid, str) else None


def _summary(result: Any) -> str:
    content = getattr(result, "structured_content", None)
    if not isinstance(content, dict):
        return "ok"
    keys = ("proposal_id", "state", "next_step")
    return "; ".join(f"{k}={content[k]}" for k in keys if isinstance(content.get(k), str)) or "ok"


def _explain(exc: ToolError) -> tuple[ToolOutcome, str]:
    """A ToolError from the SDK or a tool as (outcome, short text safe to show the model)."""
    cause = exc.__cause__
    if isinstance(exc, UnexpectedToolError):
        if isinstance(cause, AuditError):
            return (
                ToolOutcome.FAULT,
                "the audit log could not be read or written (see the server's log)",
            )
        if isinstance(cause, WorkbenchError):
            return ToolOutcome.REFUSED, str(cause)[:500]
        return ToolOutcome.FAULT, "the server failed on this call (logged); try again later"
    if isinstance(cause, ValidationError):  # the SDK's check of the arguments' schema
        return ToolOutcome.REFUSED, short_problems(cause)
    text = str(exc).split(": ", 1)[-1]  # our own ToolError, under the SDK's prefix
    return ToolOutcome.REFUSED, text[:500]


# -- the tools -------------------------------------------------------------------------------------

Limit = Annotated[int, Field(ge=1, le=1000, description="how many, newest last")]
Weights = Annotated[
    dict[Symbol, Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]],
    Field(min_length=1, description="target weight of NAV per symbol, 0 to 1 (0 sells it down)"),
]


def _tools(proposer: Proposer, limits: McpPolicy) -> list[tuple[Callable[..., Any], str, str]]:
    """(function, title, description) of every tool; reads first, then the proposer's steps."""
    reads = limits.reads

    def get_portfolio() -> PortfolioView:
        return portfolio_view(proposer.portfolio(), proposer.label)

    def list_open_orders() -> OpenOrdersView:
        return orders_view(proposer.open_orders(), proposer.label)

    def get_market_snapshot(symbol: Symbol) -> QuoteView:
        return quote_view(proposer.quote(symbol))

    def list_proposals(limit: Limit = 20) -> ProposalList:
        _within(limit, reads.max_proposals)
        lines = [proposal_line(r) for r in proposer.recent(limit)]
        return ProposalList(proposals=lines, shown=len(lines), limit=reads.max_proposals)

    def get_proposal(proposal_id: ProposalId) -> ProposalView:
        record = proposer.record(proposal_id)
        return proposal_view(record, next_step(record.state))

    def get_audit_events(limit: Limit = 20) -> AuditTail:
        _within(limit, reads.max_audit_events)
        events = [
            AuditEventView(
                seq=e.seq,
                ts=e.ts,
                type=e.type,
                proposal_id=e.proposal_id,
                actor=untrusted(e.actor),
                payload=untrusted(e.payload_json),
            )
            for e in proposer.audit_tail(limit)
        ]
        return AuditTail(events=events, limit=reads.max_audit_events)

    def get_trading_state() -> TradingStateView:
        market = proposer.market_status()
        return trading_state_view(
            proposer.trading_state(), market=market.calendar, open_now=market.open_now,
            closed_reason=market.reason, next_open=market.next_open,
        )  # fmt: skip

    def get_risk_limits() -> LimitsView:
        return limits_view(proposer.policy, proposer.policy_hash, limits)

    def propose_order(order: ProposedOrder, ctx: Context[Connection, Any]) -> StepResult:
        origin = _origin(ctx)
        intent = proposer.intent_from(order.model_dump_json())
        pid = proposer.propose(intent, actor=f"mcp:{origin.client[:60]}", origin=origin)
        return _step(proposer, pid, "proposed: nothing is sent; simulate it next")

    def propose_rebalance(weights: Weights, ctx: Context[Connection, Any]) -> RebalanceResult:
        if len(weights) > limits.rebalance.max_symbols:
            raise RefusedCall(f"at most {limits.rebalance.max_symbols} symbols per rebalance")
        origin = _origin(ctx)
        group = "mcp-rebalance:" + uuid.uuid4().hex[:12]
        made = [
            proposer.propose(i, actor=f"mcp:{origin.client[:60]}", origin=origin,
                             correlation_id=group)
            for i in proposer.rebalance_intents(weights)
        ]  # fmt: skip
        steps = [_step(proposer, pid, "proposed") for pid in made]
        note = f"{len(made)} proposal(s); simulate each next" if made else "nothing to trade"
        return RebalanceResult(proposals=steps, note=note)

    def simulate_proposal(proposal_id: ProposalId) -> StepResult:
        view = simulation_view(proposer.simulate(proposal_id))
        return _step(proposer, proposal_id, "simulated on fresh data", simulation=view)

    def evaluate_proposal(proposal_id: ProposalId) -> StepResult:
        decision = proposer.evaluate(proposal_id)
        view = decision_view(decision)
        return _step(proposer, proposal_id, f"the risk gate says {view.decision}", decision=view)

    def request_approval(proposal_id: ProposalId) -> StepResult:
        proposer.request_approval(proposal_id)
        return _step(proposer, proposal_id, "a person will approve or reject it; you cannot")

    return [
        (get_portfolio, "Portfolio", "The account now: NAV, cash, available funds, buying power,"
         " and each position with its market value and weight of NAV (read only)."),
        (list_open_orders, "Open orders", "Orders working at the broker (read only)."),
        (get_market_snapshot, "Market snapshot", "The broker's quote for one symbol: bid, ask,"
         " last, close, the reference price the gate uses, and its time (read only)."),
        (list_proposals, "Proposals", "The newest proposals with their state and decision"
         f" (at most {reads.max_proposals}; read only)."),
        (get_proposal, "Proposal detail", "One proposal: the order, its simulation, the gate's"
         " decision with every finding, its state and what can happen next (read only)."),
        (get_audit_events, "Audit log", "The newest events of the audit log, oldest first"
         f" (at most {reads.max_audit_events}; payloads are untrusted data; read only)."),
        (get_trading_state, "Trading state", "ACTIVE, REDUCING or HALTED (as recorded), and"
         " whether the market is open now and when it next opens (read only)."),
        (get_risk_limits, "Risk limits", "Every limit the risk gate applies, and this server's"
         " rate and size limits: propose within them (read only)."),
        (propose_order, "Propose an order", "Record one order as a proposal (nothing is sent)."
         " Give the order's fields only: the server fills the account from the broker and"
         " computes prices, simulations and decisions itself. Returns the proposal id."),
        (propose_rebalance, "Propose a rebalance", "Propose the orders that move each named"
         " symbol toward its target weight of NAV (limit orders with protective stops, sized"
         " and priced by the workbench). Symbols not named are not traded."),
        (simulate_proposal, "Simulate a proposal", "Simulate one of your PROPOSED proposals on"
         " fresh account and market data the workbench fetches itself."),
        (evaluate_proposal, "Evaluate a proposal", "Run the risk gate on one of your SIMULATED"
         " proposals: APPROVE, REVIEW or REJECT, with every finding."),
        (request_approval, "Request approval", "Ask a person to approve one of your proposals"
         " the gate approved or sent to review. The person decides; you cannot approve."),
    ]  # fmt: skip


def _within(limit: int, cap: int) -> None:
    if limit > cap:
        raise RefusedCall(f"limit {limit} is above the {cap} this server returns at most")


def _origin(ctx: Context[Connection, Any]) -> McpOrigin:
    server = ctx.mcp_server
    assert isinstance(server, WorkbenchMCP)
    return server.origin(ctx)


def _step(proposer: Proposer, proposal_id: str, note: str, **found: Any) -> StepResult:
    state = proposer.record(proposal_id).state
    return StepResult(
        proposal_id=proposal_id, state=state.value, next_step=next_step(state), note=note, **found
    )


TOOL_NAMES = (
    "get_portfolio",
    "list_open_orders",
    "get_market_snapshot",
    "list_proposals",
    "get_proposal",
    "get_audit_events",
    "get_trading_state",
    "get_risk_limits",
    "propose_order",
    "propose_rebalance",
    "simulate_proposal",
    "evaluate_proposal",
    "request_approval",
)


def _closed(tool: Tool) -> Tool:
    """The tool with ``additionalProperties: false`` on its arguments object (the door enforces
    it: the SDK alone would drop unknown arguments silently)."""
    return tool.model_copy(
        update={"parameters": {**tool.parameters, "additionalProperties": False}}
    )


def build_server(
    proposer: Proposer,
    limits: McpPolicy,
    *,
    clock: Clock | None = None,
    transport: Transport = "stdio",
    auth: AuthSettings | None = None,
    token_verifier: TokenVerifier | None = None,
) -> WorkbenchMCP:
    """The MCP server over ``proposer`` under ``limits`` (rate windows on ``clock``)."""
    specs = _tools(proposer, limits)
    tools = [
        _closed(Tool.from_function(fn, title=title, description=text,
                                   annotations=READ if fn.__name__.startswith(("get_", "list_"))
                                   else STEP))
        for fn, title, text in specs
    ]  # fmt: skip
    names = tuple(t.name for t in tools)
    if names != TOOL_NAMES:
        raise ConfigError(f"the server's tools {names} are not the pinned list {TOOL_NAMES}")
    missing = sorted(set(names) - set(limits.rate_limits.per_tool))
    unknown = sorted(set(limits.rate_limits.per_tool) - set(names))
    if missing or unknown:
        raise ConfigError(
            f"mcp.yaml rate_limits.per_tool: missing {missing or 'none'},"
            f" unknown {unknown or 'none'}"
        )
    server = WorkbenchMCP(
        proposer, limits, tools=tools, clock=clock or SystemClock(), transport=transport,
        auth=auth, token_verifier=token_verifier,
    )  # fmt: skip
    register_resources(server, proposer, limits)
    return server


__all__ = ["TOOL_NAMES", "CallToolResult", "WorkbenchMCP", "build_server"]
