"""Fault hooks, each observed from the real client: drops at every step of an order, restarts,
refused connects, duplicate and out-of-order callbacks, partial fills, delays on the gateway's
clock, fills while nobody is connected, 10349/103, and the seeded chaos schedule."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Stock, StopOrder, Trade, util

from testing.gwkit import (
    START,
    codes,
    connect,
    record_errors,
    wait_disconnected,
    wait_done,
    wait_status,
    wait_until,
)
from workbench.testing import (
    Delay,
    Drop,
    FaultRule,
    Gateway,
    GatewayConfig,
    OrderMatch,
    PartialFill,
    Phase,
    Step,
    chaos_schedule,
)


def _reconnect(ib: IB, gateway: Gateway) -> None:
    ib.connect(gateway.host, gateway.port, clientId=1, timeout=5)


def test_drop_on_receipt_loses_the_order_before_the_gateway_acts(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Drop at RECEIVED: the placeOrder reached the socket but no order exists, nothing fills."""
    gateway.faults.drop(Step.RECEIVED)
    ib.placeOrder(spy, MarketOrder("BUY", 10, orderRef="lost-1"))
    wait_disconnected(ib)
    assert gateway.received("placeOrder")[0]["orderRef"] == "lost-1"
    assert gateway.orders() == [] and gateway.executions() == []
    _reconnect(ib, gateway)
    assert ib.fills() == [] and ib.positions() == [] and ib.reqCompletedOrders(False) == []


def test_drop_after_placement_fills_while_away_and_reports_on_reconnect(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Drop before the ack: the client hears nothing, the order fills with no client
    connected; the next connection sees the execution, the position and the completed order."""
    gateway.faults.drop(Step.ACK, Phase.BEFORE)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10, orderRef="p-1"))
    wait_disconnected(ib)
    assert trade.orderStatus.status == "PendingSubmit"
    assert gateway.orders()[0].status == "Filled"
    _reconnect(ib, gateway)
    (fill,) = ib.fills()
    assert fill.execution.orderRef == "p-1" and fill.execution.shares == 10
    assert ib.positions()[0].position == 10
    (done,) = ib.reqCompletedOrders(False)
    assert done.orderStatus.status == "Filled" and done.order.orderRef == "p-1"


@pytest.mark.parametrize(
    ("phase", "fills", "status", "commission"),
    [
        (Phase.BEFORE, 0, "Submitted", None),
        (Phase.MID, 1, "Submitted", 0.0),
        (Phase.AFTER, 1, "Filled", 1.0),
    ],
)
def test_drop_before_mid_and_after_a_fill_report(
    gateway: Gateway,
    ib: IB,
    spy: Contract,
    phase: Phase,
    fills: int,
    status: str,
    commission: float | None,
) -> None:
    """Drop at FILL: before the report the client knows nothing of the fill; mid-report it has
    the execution but neither status nor commission; after, everything."""
    gateway.faults.drop(Step.FILL, phase)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_disconnected(ib)
    assert len(trade.fills) == fills and trade.orderStatus.status == status
    if commission is not None:
        assert trade.fills[0].commissionReport.commission == commission
    assert gateway.orders()[0].status == "Filled"


def test_drop_mid_bracket_discards_the_untransmitted_parent(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Drop while the parent is held (transmit=0): the held leg dies with the connection."""
    gateway.faults.drop(Step.HELD)
    parent, _take_profit, _stop = ib.bracketOrder("BUY", 10, 580, 620, 570)
    ib.placeOrder(spy, parent)
    wait_disconnected(ib)
    _reconnect(ib, gateway)
    assert gateway.orders() == [] and ib.openTrades() == []


def test_drop_after_the_parent_ack_leaves_the_whole_bracket_working(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Drop right after the parent's ack: the children were transmitted too and work on;
    after reconnecting the client finds all three open."""
    gateway.faults.drop(Step.ACK, match=OrderMatch(child=False))
    legs = ib.bracketOrder("BUY", 10, 580, 620, 570)
    trades = [ib.placeOrder(spy, leg) for leg in legs]
    wait_disconnected(ib)
    assert trades[0].orderStatus.status == "Submitted"
    assert trades[2].orderStatus.status == "PendingSubmit"
    _reconnect(ib, gateway)
    statuses = sorted(t.orderStatus.status for t in ib.openTrades())
    assert statuses == ["PreSubmitted", "PreSubmitted", "Submitted"]


def test_restart_with_downtime_after_a_fill(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """Restart at FILL with 30 s downtime: cut off, refused until the clock passes, then the
    fill is there on the new session."""
    gateway.faults.restart_at(Step.FILL, downtime=30)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_disconnected(ib)
    assert trade.orderStatus.status == "Filled"
    with pytest.raises(ConnectionRefusedError):
        _reconnect(ib, gateway)
    gateway.advance(30)
    _reconnect(ib, gateway)
    assert [f.execution.execId for f in ib.fills()] == [e.exec_id for e in gateway.executions()]


def test_duplicate_callbacks_reach_the_client_twice(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Duplicate at FILL: execDetails and commissionReport arrive twice; ib_async keeps one
    fill (by execId) but fires the commission report event twice."""
    gateway.faults.duplicate(Step.FILL)
    reports: list[str] = []
    ib.commissionReportEvent += lambda trade, fill, report: reports.append(report.execId)
    trade = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 10)))
    wait_until(ib, lambda: len(reports) == 2)
    assert len(trade.fills) == 1 and reports[0] == reports[1]
    assert len(gateway.sent("execDetails")) == len(gateway.sent("commissionReport")) == 2


def test_out_of_order_callbacks_lose_the_commission_on_the_client(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Reorder at FILL: status and commission before the execution; the client ends Filled but
    its fill carries no commission (the report came first)."""
    order = ("orderStatus", "commissionReport", "openOrder", "execDetails")
    gateway.faults.reorder(Step.FILL, order)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_until(ib, lambda: len(trade.fills) == 1)
    assert trade.orderStatus.status == "Filled"
    assert trade.fills[0].commissionReport.commission == 0
    names = [s.name for s in gateway.sent() if s.name in order]
    assert names[-4:] == list(order)


def test_partial_fills_come_n_shares_at_a_time_with_one_minimum_commission(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """partial_fills(3) on 10 shares: executions of 3, 3, 3, 1; the minimum is paid once."""
    gateway.faults.partial_fills(3)
    reports: list[float] = []
    ib.commissionReportEvent += lambda trade, fill, report: reports.append(report.commission)
    trade = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 10)))
    wait_until(ib, lambda: len(reports) == 4)
    assert [f.execution.shares for f in trade.fills] == [3, 3, 3, 1]
    assert [f.execution.cumQty for f in trade.fills] == [3, 6, 9, 10]
    assert reports == [1.0, 0.0, 0.0, 0.0]


def test_partial_fills_spaced_on_the_gateway_clock(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """partial_fills(4, interval=10): the next piece only when the clock has moved 10 s."""
    gateway.faults.partial_fills(4, interval=10)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_until(ib, lambda: len(trade.fills) == 1 and trade.orderStatus.filled == 4)
    assert trade.orderStatus.status == "Submitted"
    gateway.advance(10)
    wait_until(ib, lambda: len(trade.fills) == 2)
    gateway.advance(10)
    wait_done(ib, trade)
    assert [f.execution.shares for f in trade.fills] == [4, 4, 2]


def test_a_delayed_fill_happens_when_the_clock_reaches_it(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """delay(FILL, 30): the order works (Submitted) and fills only after 30 s of gateway time."""
    gateway.faults.delay(Step.FILL, 30)
    trade = wait_status(ib, ib.placeOrder(spy, MarketOrder("BUY", 10)), "Submitted")
    gateway.advance(29)
    assert gateway.orders()[0].filled == 0
    gateway.advance(1)
    wait_done(ib, trade)
    assert trade.fills[0].time is not None and gateway.executions()[0].time == gateway.now()


def test_a_delayed_ack_keeps_the_client_waiting(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """delay(ACK, 5): the gateway holds the order silently; the ack and fill come at +5 s."""
    gateway.faults.delay(Step.ACK, 5)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    gateway.wait_received("placeOrder")
    assert gateway.sent("openOrder") == [] and gateway.orders()[0].filled == 0
    gateway.advance(5)
    wait_done(ib, trade)


def test_a_delayed_reply_arrives_only_when_the_clock_moves(gateway: Gateway, ib: IB) -> None:
    """delay_reply: the account summary request is answered 5 s of gateway time later."""
    gateway.faults.delay_reply("reqAccountSummary", 5)
    pending = asyncio.ensure_future(ib.reqAccountSummaryAsync(), loop=util.getLoop())
    gateway.wait_received("reqAccountSummary")
    assert gateway.sent("accountSummaryEnd") == []
    gateway.advance(5)
    util.run(asyncio.wait_for(pending, 5))
    assert any(v.tag == "NetLiquidation" for v in ib.accountSummary())


def test_a_fill_while_no_client_is_connected_reaches_the_next_connection(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """The stop triggers on a price set while the client is away; reconnecting shows the
    execution, the closed position and the completed order."""
    gateway.set_position("SPY", 10, "580")
    stop = wait_status(ib, ib.placeOrder(spy, StopOrder("SELL", 10, 585)), "Submitted")
    ib.disconnect()
    gateway.set_price("SPY", "584")
    assert gateway.orders()[0].status == "Filled"
    _reconnect(ib, gateway)
    assert [f.execution.permId for f in ib.fills()] == [stop.order.permId]
    assert ib.positions() == [] and ib.openTrades() == []
    assert ib.reqCompletedOrders(False)[0].orderStatus.status == "Filled"


def test_10349_after_the_ack_makes_ib_async_think_a_live_order_cancelled(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """error_at(ACK, 10349): ib_async 2.1.0 marks the trade Cancelled while the gateway keeps
    the order working; it fills on the next price (the trap an adapter must handle)."""
    errors = record_errors(ib)
    gateway.faults.error_at(Step.ACK, 10349)
    trade = ib.placeOrder(spy, LimitOrder("BUY", 10, 580))
    wait_until(ib, lambda: 10349 in codes(errors))
    assert trade.orderStatus.status == "Cancelled"
    assert gateway.orders()[0].status == "Submitted"
    gateway.set_price("SPY", "579")
    assert gateway.orders()[0].status == "Filled"


def test_a_duplicate_order_id_fault_refuses_the_order_with_103(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reject(103): the trade ends Cancelled with 103 in its log; the gateway has no order."""
    gateway.faults.reject(103, "Duplicate order id")
    trade = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 10)))
    assert 103 in [entry.errorCode for entry in trade.log]
    assert gateway.orders() == []


def test_fault_rules_fire_only_for_matching_orders_and_only_so_often(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """A rule for orderRef "b" leaves "a" alone; times=1 spends it; fired() records it."""
    gateway.faults.partial_fills(5, match=OrderMatch(order_ref="b"))
    trades = [ib.placeOrder(spy, MarketOrder("BUY", 10, orderRef=r)) for r in "abb"]
    wait_until(ib, lambda: all(t.isDone() for t in trades))
    assert [len(t.fills) for t in trades] == [1, 2, 1]
    (fired,) = gateway.faults.fired()
    assert fired.step is Step.FILL and fired.order_id == trades[1].order.orderId
    assert gateway.faults.pending() == []


def test_fault_rules_refuse_effects_at_steps_where_they_mean_nothing() -> None:
    """A partial fill on an ack, a delay on a held leg or times=0 are errors."""
    with pytest.raises(ValueError):
        FaultRule(Step.ACK, PartialFill(Decimal(1)))
    with pytest.raises(ValueError):
        FaultRule(Step.HELD, Delay(1))
    with pytest.raises(ValueError):
        FaultRule(Step.FILL, Drop(), times=0)


def test_the_chaos_schedule_is_reproducible_from_its_seed() -> None:
    """Same seed, same rules; other seeds differ; the menu covers every step."""
    assert chaos_schedule(7) == chaos_schedule(7)
    assert chaos_schedule(7) != chaos_schedule(8)
    steps = {rule.at for seed in range(40) for rule in chaos_schedule(seed)}
    assert steps == set(Step) - {Step.CANCEL, Step.REJECT}
    assert all(rule.match.seq is not None for rule in chaos_schedule(1))


def _settle(ib: IB, gateway: Gateway, trade: Trade) -> None:
    """Release delays, restore connectivity, and wait until the client has caught up."""
    gateway.advance(10)
    if any(o.status in ("PreSubmitted", "Submitted") for o in gateway.orders()):
        gateway.send_error(1102)
    wait_until(ib, lambda: trade.isDone() or not ib.isConnected())


def _ensure_connected(ib: IB, gateway: Gateway) -> None:
    for _ in range(5):
        if ib.isConnected():
            return
        try:
            _reconnect(ib, gateway)
        except ConnectionRefusedError:
            gateway.advance(10)
    assert ib.isConnected()


@pytest.mark.parametrize("seed", [3, 11])
def test_a_chaos_run_never_double_fills_and_reports_consistently(
    gateway: Gateway, ib: IB, spy: Contract, seed: int
) -> None:
    """Under a seeded schedule of faults, each order fills at most once in full, and a fresh
    connection reports exactly the gateway's executions, positions and completed orders."""
    gateway.faults.install(chaos_schedule(seed, orders=12, rate=0.7))
    for i in range(12):
        _ensure_connected(ib, gateway)
        trade = ib.placeOrder(spy, MarketOrder("BUY", 2, orderRef=f"c-{i}"))
        gateway.wait_received("placeOrder", i + 1)
        _settle(ib, gateway, trade)
    _ensure_connected(ib, gateway)
    executions = gateway.executions()
    shares = Counter[int]()
    for e in executions:
        shares[e.perm_id] += int(e.shares)
    assert all(total == 2 for total in shares.values())
    assert sorted(f.execution.execId for f in ib.fills()) == sorted(e.exec_id for e in executions)
    held = sum(shares.values())
    assert sum(p.position for p in ib.positions()) == held
    done = {t.order.permId: t.orderStatus.status for t in ib.reqCompletedOrders(False)}
    assert done == {o.perm_id: o.status for o in gateway.orders()}
    assert not [r for r in gateway.received() if r.problem]


def test_connect_helper_uses_a_fresh_client(gateway: Gateway) -> None:
    """Two clients with different ids connect side by side."""
    first, second = connect(gateway, 1), connect(gateway, 2)
    assert gateway.connected_clients() == [1, 2]
    first.disconnect()
    second.disconnect()


def test_a_reject_followed_by_inactive_as_real_tws_sometimes_sends(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reject(then_inactive=True): 201, then openOrder/orderStatus Inactive; the trade ends
    Inactive with 201 earlier in its log."""
    gateway.faults.reject(201, "no", then_inactive=True)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_until(ib, lambda: trade.orderStatus.status == "Inactive")
    assert 201 in [entry.errorCode for entry in trade.log]


def test_an_order_without_tif_draws_10349_when_the_preset_applies() -> None:
    """tif_preset_warning: an order sent without a tif becomes DAY and 10349 follows its ack."""
    with Gateway(GatewayConfig(tif_preset_warning=True), start=START) as gw:
        ib = connect(gw)
        errors = record_errors(ib)
        spy = Stock("SPY", "SMART", "USD")
        ib.qualifyContracts(spy)
        trade = ib.placeOrder(spy, LimitOrder("BUY", 1, 500))
        wait_until(ib, lambda: 10349 in codes(errors))
        assert gw.orders()[0].tif == "DAY" and gw.orders()[0].status == "Submitted"
        assert trade.order.orderId == gw.orders()[0].order_id
        ib.disconnect()
