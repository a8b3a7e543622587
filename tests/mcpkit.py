"""Builders for MCP tests: a real home, the real Proposer and server, the official client.

The server is the one ``workbench mcp`` runs (``build_server`` over ``Proposer.open``); tests talk
to it with the SDK's own ``Client`` in process, on a fixed clock, or over stdio and HTTP to the
real command (tests/test_mcp_stdio.py, tests/test_mcp_http.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from helpers import policies_with
from mcp import Client
from mcp.types import Implementation
from wbkit import POLICIES, add_approver, counter_ids, open_wb

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.events import ToolCalled
from workbench.mcp_policy import McpPolicy, load_mcp_policy
from workbench.mcp_server import WorkbenchMCP, build_server
from workbench.proposer import Proposer

HOST = "test-host"
CENT = Decimal("0.01")


def make_home(home: Path, clock: FixedClock) -> None:
    """A home as a person left it: an approver enrolled, so the approval key exists."""
    with open_wb(home, clock) as wb:
        add_approver(wb)


def open_proposer(home: Path, clock: FixedClock, policies: Path = POLICIES) -> Proposer:
    return Proposer.open(
        home, policy_dir=policies, clock=clock, log_clock=clock, ids=counter_ids("m")
    )


@contextmanager
def served(
    home: Path, clock: FixedClock, limits: McpPolicy | None = None, policies: Path = POLICIES
) -> Iterator[WorkbenchMCP]:
    """The MCP server over a proposer on ``home`` (rate windows on ``clock``)."""
    with open_proposer(home, clock, policies) as proposer:
        yield build_server(proposer, limits or load_mcp_policy(policies), clock=clock)


def client(server: WorkbenchMCP, name: str = HOST) -> Client:
    """The SDK's client, connected in process, introducing itself as ``name``."""
    return Client(server, client_info=Implementation(name=name, version="1.0"))


def order_from(
    quote: dict[str, Any], qty: int | str = 5, *, side: str = "BUY", stop: bool = True
) -> dict[str, Any]:
    """A limit order the gate approves, from get_market_snapshot's result: at the touch (the
    reference price when nothing is quoted, e.g. on a weekend), a protective stop 3% away."""
    touch = Decimal(quote["ask" if side == "BUY" else "bid"] or quote["reference_price"])
    away = Decimal("0.97") if side == "BUY" else Decimal("1.03")
    order: dict[str, Any] = {
        "instrument": {k: v for k, v in quote["instrument"].items() if v is not None},
        "side": side,
        "quantity": qty,
        "order_type": "LMT",
        "limit_price": str(touch.quantize(CENT, ROUND_HALF_UP)),
        "reason": "test order",
    }
    if stop:
        order["protective_stop"] = {"stop_price": str((touch * away).quantize(CENT, ROUND_HALF_UP))}
    return order


def tool_calls(log: AuditLog) -> list[ToolCalled]:
    return [e.data_as(ToolCalled) for e in log.events(types=(EventType.TOOL_CALLED,))]


def proposal_ids(log: AuditLog) -> list[str]:
    return [e.proposal_id or "" for e in log.events(types=(EventType.ORDER_PROPOSED,))]


def copy_policies(tmp: Path) -> Path:
    """A private copy of the repository's policies to edit."""
    return policies_with(tmp / "policies")
