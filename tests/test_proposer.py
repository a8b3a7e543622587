"""The proposer role: a handle that reads and proposes, with no way to approve or submit."""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcpkit import HOST, make_home, open_proposer, order_from, served
from wbkit import CREDENTIAL, add_approver, counter_ids, intent, open_wb, parent_orders

from workbench.approval import Approvals
from workbench.authority import Authority, Credential
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.errors import ApprovalError, ConfigError, PermitRefusedError
from workbench.events import McpOrigin
from workbench.keys import KEY_FILE, ApprovalKey
from workbench.lifecycle import OrderState
from workbench.models import SubmitPermit
from workbench.permits import PermitCheck
from workbench.proposer import Proposer, StepError
from workbench.proposers import ProposalError
from workbench.workbench import Workbench

AUTHORITY = ("approve", "reject", "submit", "cancel", "resume", "halt", "reduce", "enrol")
ORIGIN = McpOrigin(client=HOST, client_version=None, session="s1", transport="stdio")


def test_the_proposer_type_has_no_method_that_raises_authority() -> None:
    """Approve, reject, submit, cancel, resume, halt, reduce: not refused, absent from the type."""
    for name in AUTHORITY:
        assert not hasattr(Proposer, name), name
    public = {n for n in dir(Proposer) if not n.startswith("_")}
    assert not any(word in n for n in public for word in AUTHORITY), public


def test_a_proposer_refuses_a_workbench_that_holds_authority(home: Path, clock: FixedClock) -> None:
    """Wrapping a full facade (key and approvers loaded) is a ConfigError: the role is a type."""
    with open_wb(home, clock) as wb, pytest.raises(ConfigError, match="proposer_only"):
        Proposer(wb, targets=None)  # type: ignore[arg-type]


def test_a_proposer_never_reads_the_approval_key(home: Path, clock: FixedClock) -> None:
    """With the key unreadable (a handle that opened it would fail), a proposer reads, proposes
    and takes its proposal to APPROVAL_REQUESTED."""
    make_home(home, clock)
    (home / KEY_FILE).chmod(0o000)
    try:
        with open_proposer(home, clock) as proposer:
            pid = proposer.propose(_spy(proposer), actor="t", origin=ORIGIN)
            proposer.simulate(pid)
            proposer.evaluate(pid)
            assert proposer.request_approval(pid) is OrderState.APPROVAL_REQUESTED
    finally:
        (home / KEY_FILE).chmod(0o600)


def test_a_proposer_moves_only_its_own_proposals(home: Path, clock: FixedClock) -> None:
    """A proposal made by the scheduler (no origin) cannot be simulated or judged by a proposer."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        theirs = wb.propose(intent(wb), actor="scheduler")
    with open_proposer(home, clock) as proposer:
        with pytest.raises(StepError, match="not made through MCP"):
            proposer.simulate(theirs)
        assert proposer.record(theirs).state is OrderState.PROPOSED


def test_steps_out_of_order_are_refused_naming_the_next_step(home: Path, clock: FixedClock) -> None:
    """Evaluate before simulate, or request approval before the gate: refused, nothing recorded."""
    make_home(home, clock)
    with open_proposer(home, clock) as proposer:
        pid = proposer.propose(_spy(proposer), actor="t", origin=ORIGIN)
        before = proposer.audit_tail(1)[0].seq
        with pytest.raises(StepError, match=r"cannot evaluate .* PROPOSED .*next: simulate it"):
            proposer.evaluate(pid)
        with pytest.raises(StepError, match="cannot request approval"):
            proposer.request_approval(pid)
        assert proposer.audit_tail(1)[0].seq == before


def test_an_instrument_unlike_the_brokers_is_refused(home: Path, clock: FixedClock) -> None:
    """SPY said to be a stock in EUR: refused, naming what the broker has; unsaid details filled."""
    make_home(home, clock)
    with open_proposer(home, clock) as proposer:
        order = order_from(_quote(proposer, "SPY"))
        order["instrument"] = {"type": "STK", "symbol": "SPY", "currency": "EUR"}
        with pytest.raises(ProposalError, match="SPY at this broker has currency USD, type ETF"):
            proposer.intent_from(_json(order))
        order["instrument"] = {"type": "ETF", "symbol": "SPY"}
        assert proposer.intent_from(_json(order)).instrument == proposer.instrument("SPY")


# -- what the MCP server holds ---------------------------------------------------------------------


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through attributes, slots, closures, bound methods and
    containers (classes and modules are not entered: they are code, not state)."""
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType):
            continue
        seen.add(id(item))
        yield item
        stack.extend(_children(item))


def _children(item: object) -> list[object]:
    found: list[object] = []
    if isinstance(item, dict):
        found += [*item.keys(), *item.values()]
    elif isinstance(item, list | tuple | set | frozenset):
        found += list(item)
    if isinstance(item, types.FunctionType):
        found += [c.cell_contents for c in item.__closure__ or () if _filled(c)]
        found += list(item.__defaults__ or ()) + list((item.__kwdefaults__ or {}).values())
    if isinstance(item, types.MethodType):
        found += [item.__self__, item.__func__]
    found += list(getattr(item, "__dict__", {}).values())
    for klass in type(item).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str) and hasattr(item, slot):
                found.append(getattr(item, slot))
    if isinstance(item, functools.partial):
        found += [item.func, *item.args, *item.keywords.values()]
    return found


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def test_nothing_the_mcp_server_holds_can_approve_or_submit(home: Path, clock: FixedClock) -> None:
    """Walking every object reachable from the server (its tools' closures included): no key,
    no key bytes, no approvers, no credential; the facade inside is proposer-only and refuses
    approve and submit; its broker refuses a permit for an approved proposal."""
    with open_wb(home, clock, ids=counter_ids("a")) as full:
        add_approver(full)
        outcome = full.run(intent(full), actor="test")
        grant = full.approve(outcome.proposal_id, CREDENTIAL)
        key = (home / KEY_FILE).read_bytes()
    with served(home, clock) as server:
        assert isinstance(server, MCPServer)
        found = list(reachable(server))
        assert any(isinstance(o, Proposer) for o in found)  # the walk reaches the tools' state
        forbidden = (ApprovalKey, Authority, Approvals, Credential)
        assert not [o for o in found if isinstance(o, forbidden)]
        assert not [o for o in found if isinstance(o, bytes | bytearray) and key in bytes(o)]
        facades = [o for o in found if isinstance(o, Workbench)]
        brokers = [o for o in found if isinstance(o, PaperBroker)]
        checks = [o for o in found if isinstance(o, PermitCheck)]
        assert facades and brokers and checks
        assert all(w.authority is None and w.approvals is None for w in facades)
        assert all(c.key is None for c in checks)
        wb = facades[0]
        for call in (
            lambda: wb.approve(outcome.proposal_id, CREDENTIAL),
            lambda: wb.submit(outcome.proposal_id, grant.token),
            lambda: wb.cancel(outcome.proposal_id, actor="mcp"),
            lambda: wb.halt("x", by="mcp"),
        ):
            with pytest.raises(ApprovalError, match="read-and-propose only"):
                call()
        permit = SubmitPermit(
            proposal_id=outcome.proposal_id, intent=outcome.intent,
            intent_hash=outcome.intent.intent_hash, submitted_seq=1, order_ref="wb:forged",
        )  # fmt: skip
        with pytest.raises(PermitRefusedError, match="without the approval key"):
            brokers[0].submit(permit)
        assert parent_orders(wb) == []
        assert wb.state(outcome.proposal_id) is OrderState.APPROVAL_GRANTED


def _quote(proposer: Proposer, symbol: str) -> dict[str, Any]:
    """The broker's quote shaped as get_market_snapshot returns it."""
    quote = proposer.quote(symbol)
    instrument = quote.instrument.model_dump(mode="json")
    return {"ask": str(quote.ask), "bid": str(quote.bid), "instrument": instrument}


def _spy(proposer: Proposer) -> Any:
    return proposer.intent_from(_json(order_from(_quote(proposer, "SPY"))))


def _json(order: dict[str, Any]) -> str:
    return json.dumps(order)
