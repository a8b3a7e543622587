"""Orders through the gateway with the real client: fills, brackets, cancels, rejects and the
account views (positions, summary, executions, open and completed orders)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    LimitOrder,
    MarketOrder,
    Stock,
    StopLimitOrder,
    StopOrder,
    Trade,
)

from testing.gwkit import (
    START,
    codes,
    connect,
    record_errors,
    wait_done,
    wait_reported,
    wait_status,
    wait_until,
)
from workbench.testing import Gateway, GatewayConfig

FILL_ORDER = ["execDetails", "openOrder", "orderStatus", "commissionReport"]


ORDER_ID_FIELD = {"execDetails": 2, "openOrder": 1, "orderStatus": 1}


def _about(name: str, fields: tuple[str, ...], order_id: int) -> bool:
    index = ORDER_ID_FIELD.get(name)
    return name == "commissionReport" or (index is not None and fields[index] == str(order_id))


def _fill_messages(gateway: Gateway, order_id: int) -> list[str]:
    """Names of the messages the gateway sent about ``order_id`` from its first fill on."""
    names = [s.name for s in gateway.sent(client_id=1) if _about(s.name, s.fields, order_id)]
    return names[names.index("execDetails") :]


def test_market_order_fills_with_exec_details_and_commission_once_each(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """MKT BUY fills at the ask: one execDetails, one commissionReport, in IB's order."""
    fills, reports = [], []
    ib.execDetailsEvent += lambda trade, fill: fills.append(fill)
    ib.commissionReportEvent += lambda trade, fill, report: reports.append(report)
    trade = wait_reported(ib, ib.placeOrder(spy, MarketOrder("BUY", 10)))
    assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == 590.01
    assert len(fills) == 1 and len(reports) == 1 and len(trade.fills) == 1
    assert reports[0].commission == 1.0 and reports[0].currency == "USD"
    assert _fill_messages(gateway, trade.order.orderId)[:4] == FILL_ORDER
    assert gateway.positions()["SPY"].quantity == 10


def test_marketable_limit_fills_at_the_touch_and_a_resting_one_at_its_limit(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """A BUY LMT above the ask fills at the ask; below it waits and fills at its limit later."""
    now = wait_done(ib, ib.placeOrder(spy, LimitOrder("BUY", 5, 600)))
    assert now.fills[0].execution.price == 590.01
    resting = ib.placeOrder(spy, LimitOrder("BUY", 5, 580))
    wait_status(ib, resting, "Submitted")
    gateway.set_price("SPY", "579")
    wait_done(ib, resting)
    assert resting.fills[0].execution.price == 580
    assert resting.fills[0].execution.lastLiquidity == 1


def _bracket(ib: IB, spy: Contract, gateway: Gateway) -> tuple[Trade, Trade, Trade]:
    """BUY 10 at 580 (below the market) with take-profit 620 and stop 570, leg by leg."""
    parent, take_profit, stop = ib.bracketOrder("BUY", 10, 580, 620, 570)
    trades = [ib.placeOrder(spy, parent)]
    gateway.wait_received("placeOrder", 1)
    assert gateway.sent("openOrder") == []  # the parent is held until the transmit=1 leg
    trades += [ib.placeOrder(spy, take_profit), ib.placeOrder(spy, stop)]
    wait_until(ib, lambda: all(t.orderStatus.status != "PendingSubmit" for t in trades))
    return trades[0], trades[1], trades[2]


def test_bracket_lifecycle_parent_fills_stop_works_then_triggers_and_cancels_its_sibling(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Children wait (PreSubmitted) for the parent, then work; the stop triggers on the price
    the test sets and fills; the take-profit is cancelled (OCA, 202)."""
    errors = record_errors(ib)
    parent, take_profit, stop = _bracket(ib, spy, gateway)
    assert parent.orderStatus.status == "Submitted"
    assert take_profit.orderStatus.status == stop.orderStatus.status == "PreSubmitted"
    assert [r["transmit"] for r in gateway.received("placeOrder")] == ["0", "0", "1"]
    gateway.set_price("SPY", "579.50")
    wait_until(ib, lambda: stop.orderStatus.status == "Submitted")
    assert parent.orderStatus.status == "Filled" and parent.fills[0].execution.price == 580
    assert take_profit.orderStatus.status == "Submitted"
    gateway.set_price("SPY", "575")
    assert stop.orderStatus.status == "Submitted"  # still working above the stop
    gateway.set_price("SPY", "569")
    wait_until(ib, lambda: stop.isDone() and take_profit.isDone())
    assert stop.orderStatus.status == "Filled" and stop.fills[0].execution.price == 568.99
    assert take_profit.orderStatus.status == "Cancelled"
    assert (take_profit.order.orderId, 202) in [(r, c) for r, c, _ in errors]
    assert "SPY" not in gateway.positions()


def test_cancelling_the_parent_cancels_its_children(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Cancel the working parent: parent and both children end Cancelled."""
    parent, take_profit, stop = _bracket(ib, spy, gateway)
    ib.cancelOrder(parent.order)
    legs = (parent, take_profit, stop)
    wait_until(ib, lambda: all(t.orderStatus.status == "Cancelled" for t in legs))
    assert [o.status for o in gateway.orders()] == ["Cancelled"] * 3


def test_cancel_answers_202_and_unknown_or_done_ids_answer_10147_and_10148(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """A working order cancels (202); an unknown id gets 10147, a filled one 10148."""
    errors = record_errors(ib)
    resting = ib.placeOrder(spy, LimitOrder("BUY", 5, 500))
    wait_status(ib, resting, "Submitted")
    ib.cancelOrder(resting.order)
    wait_status(ib, resting, "Cancelled")
    filled = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 1)))
    ib.client.cancelOrder(filled.order.orderId, "")
    ib.client.cancelOrder(99_999, "")
    wait_until(ib, lambda: {10147, 10148} <= set(codes(errors)))
    assert (resting.order.orderId, 202) in [(r, c) for r, c, _ in errors]


@pytest.mark.parametrize("cause", ["flagged-symbol", "bad-account", "insufficient-funds"])
def test_a_rejected_order_ends_cancelled_with_201_in_its_log(
    gateway: Gateway, ib: IB, spy: Contract, cause: str
) -> None:
    """Rejects (symbol flagged, foreign account, margin) → 201; the trade ends Cancelled."""
    order = MarketOrder("BUY", 10)
    if cause == "flagged-symbol":
        gateway.reject_orders("SPY", "no trading in SPY today")
    elif cause == "bad-account":
        order.account = "DU9999999"
    else:
        order.totalQuantity = 4000  # initial margin 1.18 M > equity 1 M
    trade = wait_done(ib, ib.placeOrder(spy, order))
    assert trade.orderStatus.status == "Cancelled"
    assert 201 in [entry.errorCode for entry in trade.log]
    assert gateway.orders()[0].status == "Cancelled" and gateway.executions() == []


def test_a_zero_quantity_is_refused_and_never_becomes_an_order(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Quantity 0 → error 434; nothing is recorded at the gateway."""
    errors = record_errors(ib)
    ib.placeOrder(spy, MarketOrder("BUY", 0))
    wait_until(ib, lambda: 434 in codes(errors))
    assert gateway.orders() == []


def test_account_views_after_a_fill(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """Positions, account summary, executions (filtered), open and completed orders agree."""
    bought = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 100, orderRef="p-7")))
    resting = ib.placeOrder(spy, LimitOrder("SELL", 50, 650))
    wait_status(ib, resting, "Submitted")
    assert [(p.contract.symbol, p.position) for p in ib.reqPositions()] == [("SPY", 100)]
    (item,) = ib.portfolio()  # streamed by the account-updates subscription after the fill
    assert (item.position, item.marketPrice, item.marketValue) == (100, 590, 59000)
    summary = {v.tag: v for v in ib.accountSummary()}
    values = gateway.account_values()
    for tag in ("NetLiquidation", "AvailableFunds", "BuyingPower", "MaintMarginReq"):
        assert Decimal(summary[tag].value) == values[tag] and summary[tag].currency == "USD"
    assert values["TotalCashValue"] == Decimal("1000000") - Decimal("59001.00") - 1
    assert values["MaintMarginReq"] == Decimal("14750.00")  # 25 % of 100 x 590
    assert len(ib.reqExecutions(ExecutionFilter(symbol="SPY", side="BUY"))) == 1
    assert ib.reqExecutions(ExecutionFilter(symbol="QQQ")) == []
    assert ib.reqExecutions(ExecutionFilter(side="SELL")) == []
    assert [t.order.orderId for t in ib.reqOpenOrders()] == [resting.order.orderId]
    (done,) = ib.reqCompletedOrders(False)
    assert done.orderStatus.status == "Filled" and done.order.orderRef == "p-7"
    assert done.order.permId == bought.order.permId


def test_global_cancel_cancels_every_working_order(ib: IB, spy: Contract) -> None:
    """reqGlobalCancel: both resting orders end Cancelled."""
    trades = [ib.placeOrder(spy, LimitOrder("BUY", 1, p)) for p in (500, 501)]
    wait_until(ib, lambda: all(t.orderStatus.status == "Submitted" for t in trades))
    ib.reqGlobalCancel()
    wait_until(ib, lambda: all(t.orderStatus.status == "Cancelled" for t in trades))


def test_modifying_a_resting_limit_to_a_marketable_price_fills_it(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """placeOrder again with the same order and a new limit: modified, then filled at the ask."""
    order = LimitOrder("BUY", 5, 500)
    trade = wait_status(ib, ib.placeOrder(spy, order), "Submitted")
    order.lmtPrice = 600
    ib.placeOrder(spy, order)
    wait_done(ib, trade)
    assert trade.fills[0].execution.price == 590.01
    assert len(gateway.orders()) == 1


def test_reusing_the_id_of_a_done_order_answers_103(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """A new order with the id of a filled one is refused as a duplicate order id."""
    errors = record_errors(ib)
    filled = wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 1)))
    ib.client.placeOrder(filled.order.orderId, spy, MarketOrder("SELL", 1))
    wait_until(ib, lambda: 103 in codes(errors))
    assert len(gateway.executions()) == 1


def test_what_if_reports_margin_and_places_nothing(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """whatIfOrder answers the initial-margin change and commission; no order is placed."""
    state = ib.whatIfOrder(spy, MarketOrder("BUY", 100))
    assert Decimal(state.initMarginChange) == Decimal("29500.50")  # 50 % of 100 x 590.01
    assert state.commission == 1.0
    assert gateway.orders() == [] and gateway.executions() == []


@pytest.mark.parametrize(
    ("symbol", "shares", "commission"),
    [("SPY", 10, 1.00), ("SPY", 1000, 5.00), ("SLV", 1, 0.27)],
)
def test_commissions_are_per_share_with_a_minimum_and_a_cap(
    ib: IB, symbol: str, shares: int, commission: float
) -> None:
    """0.005 per share, at least 1.00, at most 1 % of the trade value."""
    contract = Stock(symbol, "SMART", "USD")
    ib.qualifyContracts(contract)
    trade = wait_done(ib, ib.placeOrder(contract, MarketOrder("BUY", shares)))
    wait_until(ib, lambda: trade.fills[0].commissionReport.execId != "")
    assert trade.fills[0].commissionReport.commission == commission


def test_closing_a_position_reports_its_realized_pnl(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Sell what was bought after a rise: realized P&L net of both commissions."""
    wait_done(ib, ib.placeOrder(spy, MarketOrder("BUY", 100)))
    gateway.set_price("SPY", "600")
    sold = wait_done(ib, ib.placeOrder(spy, MarketOrder("SELL", 100)))
    wait_until(ib, lambda: sold.fills[0].commissionReport.execId != "")
    # bought at 590.01 + 1.00, sold at 599.99 - 1.00
    assert sold.fills[0].commissionReport.realizedPNL == pytest.approx(996.0)
    assert "SPY" not in gateway.positions()


def test_a_stop_order_alone_waits_for_its_price(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """SELL STP 585: working at 590, filled once the last price trades through 585."""
    gateway.set_position("SPY", 10, "580")
    trade = wait_status(ib, ib.placeOrder(spy, StopOrder("SELL", 10, 585)), "Submitted")
    gateway.set_price("SPY", "586")
    assert trade.orderStatus.status == "Submitted"
    gateway.set_price("SPY", "584")
    wait_done(ib, trade)
    assert trade.fills[0].execution.price == 583.99


def test_an_order_typed_by_hand_in_tws_is_visible_to_all_clients(gateway: Gateway, ib: IB) -> None:
    """place_manual_order: orderId 0, seen through reqAllOpenOrders and completed orders."""
    gateway.place_manual_order("SPY", "BUY", 5, "LMT", limit_price="500", order_ref="by-hand")
    (trade,) = ib.reqAllOpenOrders()
    assert trade.order.orderId == 0 and trade.order.orderRef == "by-hand"
    assert trade.orderStatus.status == "Submitted"
    gateway.set_price("SPY", "499")
    (done,) = ib.reqCompletedOrders(False)
    assert done.orderStatus.status == "Filled" and done.order.orderRef == "by-hand"


def test_a_stop_limit_becomes_a_limit_once_triggered(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """BUY STP LMT stop 600 limit 601: triggers at 600, then works as a limit at 601."""
    order = StopLimitOrder("BUY", 10, 601, 600)
    trade = wait_status(ib, ib.placeOrder(spy, order), "Submitted")
    gateway.set_price("SPY", "599")
    assert trade.orderStatus.status == "Submitted"
    gateway.set_quote("SPY", bid="601.50", ask="601.60", last="601.55")
    assert gateway.orders()[0].status == "Submitted"  # triggered, but the ask is above 601
    gateway.set_quote("SPY", bid="600.80", ask="600.90", last="600.85")
    wait_done(ib, trade)
    assert trade.fills[0].execution.price == 601  # it rested, so it fills at its limit


def test_an_ioc_limit_that_cannot_fill_is_cancelled_at_once(ib: IB, spy: Contract) -> None:
    """IOC below the market: cancelled right after it is acknowledged."""
    trade = wait_done(ib, ib.placeOrder(spy, LimitOrder("BUY", 5, 500, tif="IOC")))
    assert trade.orderStatus.status == "Cancelled" and trade.fills == []


def test_a_read_only_api_refuses_orders_with_321() -> None:
    """With the gateway's read-only setting, placeOrder draws 321 and no order exists."""
    with Gateway(GatewayConfig(read_only=True), start=START) as gw:
        ib = connect(gw)
        errors = record_errors(ib)
        spy = Stock("SPY", "SMART", "USD")
        ib.qualifyContracts(spy)
        ib.placeOrder(spy, MarketOrder("BUY", 1))
        wait_until(ib, lambda: 321 in codes(errors))
        assert gw.orders() == []
        ib.disconnect()
