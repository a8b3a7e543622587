"""The facade on ``broker="ibkr"``: propose → approve → submit through the real adapter talking to
the loopback gateway over a socket, on the test's clock (the gateway's clock starts there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wbkit import CREDENTIAL, POLICIES, add_approver, counter_ids, intent

from workbench.audit import EventType
from workbench.bridge import PROPAGATED_TAG, order_ref
from workbench.clock import FixedClock
from workbench.errors import ConfigError, LiveTradingRefusedError
from workbench.events import BrokerUpdate
from workbench.lifecycle import OrderState
from workbench.models import Decision, RuleId, Severity
from workbench.orders import OrderRole, OrderStatus
from workbench.testing import Gateway, GatewayConfig, Step
from workbench.workbench import Workbench

pytestmark = pytest.mark.usefixtures("ib_log_check")


@pytest.fixture
def gateway(clock: FixedClock) -> Iterator[Gateway]:
    """The loopback gateway, its clock at the test's."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw:
        yield gw


def open_ibkr(home: Path, clock: FixedClock, gw: Gateway, **kw: object) -> Workbench:
    """The real facade on the IBKR broker, connected to ``gw`` (client id 5)."""
    return Workbench.open(home, "ibkr", policy_dir=POLICIES, clock=clock, ids=counter_ids(),
                          port=gw.port, client_id=5, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def wb(home: Path, clock: FixedClock, gateway: Gateway) -> Iterator[Workbench]:
    """The facade on IBKR with one enrolled approver."""
    with open_ibkr(home, clock, gateway) as bench:
        add_approver(bench)
        yield bench


def test_propose_approve_submit_places_the_bracket_and_records_each_fill_once(
    wb: Workbench, gateway: Gateway
) -> None:
    """The whole order path on IBKR: the bracket reaches IB with the proposal's orderRef, the
    parent fills, its stop works, and the fill and its commission are in the log once."""
    outcome = wb.run(intent(wb, "SPY", 10), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED, outcome
    grant = wb.approve(outcome.proposal_id, CREDENTIAL)
    assert wb.submit(outcome.proposal_id, grant.token) is OrderState.FILLED
    refs = {r.fields["orderRef"] for r in gateway.received("placeOrder")}
    assert refs == {order_ref(outcome.proposal_id, is_propagated=False)}
    (stop,) = wb.broker.open_orders()
    assert (stop.role, stop.status) == (OrderRole.PROTECTIVE_STOP, OrderStatus.SUBMITTED)
    filled = wb.log.events(proposal_id=outcome.proposal_id, types=(EventType.ORDER_FILLED,))
    (update,) = [e.data_as(BrokerUpdate) for e in filled]
    (execution,) = gateway.executions()
    assert update.fill is not None and update.fill.exec_id == execution.exec_id
    assert update.fill.commission == execution.commission > 0
    assert wb.label.startswith("IBKR paper account DU1234567 via 127.0.0.1:")
    assert update.broker == wb.label


def test_propagated_signal_carries_the_tag_in_its_order_ref(
    wb: Workbench, gateway: Gateway
) -> None:
    """An order from a propagated signal reaches IB with the proposal id and the compliance tag
    in its orderRef (after the person's override of the gate's REVIEW)."""
    outcome = wb.run(intent(wb, "QQQ", 5, is_propagated=True), actor="test")
    assert outcome.decision is not None and outcome.decision.decision is Decision.REVIEW
    grant = wb.approve(outcome.proposal_id, CREDENTIAL, override_reason="signal checked")
    wb.submit(outcome.proposal_id, grant.token)
    refs = {r.fields["orderRef"] for r in gateway.received("placeOrder")}
    assert refs == {f"wb:{outcome.proposal_id}|{PROPAGATED_TAG}"}


def test_delayed_data_is_judged_stale_by_its_real_age(wb: Workbench, gateway: Gateway) -> None:
    """Without a live subscription the quote is IB's delayed data, 900 s old: the freshness rule
    rejects the proposal saying so, and nothing is sent."""
    gateway.set_live_data(False)
    outcome = wb.run(intent(wb, "SPY"), actor="test")
    assert outcome.decision is not None and outcome.decision.decision is Decision.REJECT
    stale = [v for v in outcome.decision.violations if v.rule_id is RuleId.R8_MARKET_DATA_STALE]
    blocker = [v for v in stale if v.severity is Severity.BLOCKER]
    assert blocker and blocker[0].message == "delayed quote is 900s old (allowed 0..60s)"
    assert gateway.received("placeOrder") == []


def test_proposer_only_handle_connects_read_only(
    home: Path, clock: FixedClock, gateway: Gateway
) -> None:
    """The MCP server's handle on IBKR holds no authority and connects read-only: IB is not even
    asked for its open orders, and the label says which account it reads."""
    with open_ibkr(home, clock, gateway, proposer_only=True) as wb:
        assert wb.approvals is None and wb.broker.accounts() == ("DU1234567",)
        assert wb.portfolio(record=False).broker == wb.label
    assert gateway.received("reqOpenOrders") == []
    assert gateway.connected_clients() == []


def test_live_port_is_refused_before_anything_connects(home: Path, clock: FixedClock) -> None:
    """Workbench.open(broker="ibkr", port=7496) is refused naming the live gate; no socket."""
    with Gateway(GatewayConfig(port=7496), start=clock.now()) as live, pytest.raises(
        LiveTradingRefusedError, match="live gate"
    ):  # fmt: skip
        Workbench.open(home, "ibkr", policy_dir=POLICIES, clock=clock, port=7496)
    assert live.received() == []


def test_connection_options_belong_to_the_ibkr_broker(home: Path, clock: FixedClock) -> None:
    """A port for the paper broker, or a bars file for IBKR, is bad input (nothing opens)."""
    with pytest.raises(ConfigError, match="--broker ibkr"):
        Workbench.open(home, "paper", policy_dir=POLICIES, clock=clock, port=4002)
    with pytest.raises(ConfigError, match="bars come from IB"):
        Workbench.open(home, "ibkr", policy_dir=POLICIES, clock=clock, bars_path=home / "b.csv")
    with pytest.raises(ConfigError, match="client_id"):
        Workbench.open(home, "ibkr", policy_dir=POLICIES, clock=clock, client_id=-3)


def test_closing_the_workbench_disconnects(home: Path, clock: FixedClock, gateway: Gateway) -> None:
    """Workbench.close ends the IBKR session (the gateway sees no client afterwards)."""
    wb = open_ibkr(home, clock, gateway)
    assert gateway.connected_clients() == [5]
    wb.close()
    assert gateway.connected_clients() == []


def test_the_mcp_proposer_on_ibkr_reads_and_proposes_on_a_read_only_session(
    home: Path, clock: FixedClock, gateway: Gateway
) -> None:
    """The MCP server's proposer on IBKR reads the paper account and IB's quote and takes a
    proposal to APPROVAL_REQUESTED; its session is read-only and nothing reaches placeOrder."""
    from workbench.events import McpOrigin
    from workbench.proposer import Proposer

    origin = McpOrigin(client="test-host", client_version=None, session="s1", transport="stdio")
    with Proposer.open(home, "ibkr", policy_dir=POLICIES, clock=clock, port=gateway.port,
                       client_id=6) as proposer:  # fmt: skip
        assert proposer.label.startswith("IBKR paper account DU1234567")
        assert proposer.portfolio().broker == proposer.label
        intent = proposer.intent_from(
            '{"instrument": {"type": "ETF", "symbol": "SPY"}, "side": "BUY", "quantity": 10,'
            ' "order_type": "LMT", "limit_price": "590.01",'
            ' "protective_stop": {"stop_price": "572.00"}}'
        )
        pid = proposer.propose(intent, actor="llm", origin=origin)
        proposer.simulate(pid)
        proposer.evaluate(pid)
        assert proposer.request_approval(pid) is OrderState.APPROVAL_REQUESTED
    assert gateway.received("reqOpenOrders") == [] and gateway.received("placeOrder") == []


@pytest.mark.allow_ib_log("Peer closed")
def test_an_order_lost_on_a_drop_is_unknown_blocks_its_symbol_and_is_resolved_like_an_orphan(
    wb: Workbench, gateway: Gateway
) -> None:
    """The socket drops with the placeOrder: after the reconnect the order is UNKNOWN, status
    says so, a new order on its symbol is refused (R13) until an approver resolves it with the
    reconcile command's resolution (NOT_SENT, checked against IB), and nothing was re-sent."""
    from workbench.errors import OrderOutcomeUnknownError
    from workbench.events import Resolution

    gateway.faults.drop(Step.RECEIVED)
    first = wb.run(intent(wb, "SPY", 10), actor="test")
    grant = wb.approve(first.proposal_id, CREDENTIAL)
    with pytest.raises(OrderOutcomeUnknownError):
        wb.submit(first.proposal_id, grant.token)
    assert wb.broker.wait_ready(10)  # type: ignore[attr-defined]
    status = wb.status()
    assert status["unknown_orders"] == [first.proposal_id]
    assert status["link"].state == "ready" and "1 marked UNKNOWN" in status["link"].last_reconcile
    blocked = wb.run(intent(wb, "SPY", 5), actor="test")
    assert blocked.decision.decision is Decision.REJECT
    assert any(v.rule_id is RuleId.R13_DUPLICATE_ORDER for v in blocked.decision.violations)
    wb.resolve(first.proposal_id, CREDENTIAL, Resolution.NOT_SENT, reason="not in TWS")
    assert wb.state(first.proposal_id) is OrderState.NOT_SENT
    again = wb.run(intent(wb, "SPY", 5), actor="test")
    assert again.state is OrderState.APPROVAL_REQUESTED
    assert len(gateway.received("placeOrder")) == 1
