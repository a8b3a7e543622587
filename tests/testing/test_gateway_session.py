"""The gateway as a TWS server: handshake, startup requests, clientIds, clock, lifecycle, errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Stock, util

from testing.gwkit import (
    START,
    LogCatcher,
    codes,
    connect,
    log_problems,
    record_errors,
    wait_disconnected,
    wait_reported,
    wait_until,
)
from workbench.testing import Gateway, GatewayConfig, GatewayError

STARTUP = (
    "startApi",
    "reqPositions",
    "reqOpenOrders",
    "reqCompletedOrders",
    "reqAccountUpdates",
    "reqAccountUpdatesMulti",
    "reqExecutions",
)


def test_connect_answers_every_startup_request_with_its_end_marker(
    gateway: Gateway, ib: IB
) -> None:
    """IB.connect() completes: accounts, ids and every startup request answered (no time-out)."""
    names = [r.name for r in gateway.received()]
    assert all(name in names for name in STARTUP)
    assert ib.managedAccounts() == ["DU1234567"]
    assert ib.client.serverVersion() == 176
    tags = {v.tag for v in ib.accountValues()}
    assert {"NetLiquidation", "AvailableFunds", "BuyingPower", "MaintMarginReq"} <= tags
    assert gateway.connected_clients() == [1]


def test_readonly_connect_asks_for_no_orders(gateway: Gateway) -> None:
    """A read-only client skips the open- and completed-order requests and still connects."""
    ib = connect(gateway, client_id=7, readonly=True)
    try:
        names = {r.name for r in gateway.received(client_id=7)}
        assert "reqPositions" in names
        assert not names & {"reqOpenOrders", "reqCompletedOrders"}
    finally:
        ib.disconnect()


VERSIONS = [(176, 176), (177, 177), (178, 178), (None, 178)]


@pytest.mark.parametrize(("configured", "spoken"), VERSIONS)
def test_each_server_version_round_trips_an_order(configured: int | None, spoken: int) -> None:
    """At 176, 177 (no faProfile) and 178 (pendingPriceRevision) a fill decodes cleanly."""
    with Gateway(GatewayConfig(server_version=configured), start=START) as gw:
        ib = connect(gw)
        try:
            assert ib.client.serverVersion() == spoken
            spy = Stock("SPY", "SMART", "USD")
            ib.qualifyContracts(spy)
            trade = wait_reported(ib, ib.placeOrder(spy, MarketOrder("BUY", 5)))
            assert trade.orderStatus.status == "Filled"
            assert trade.fills[0].commissionReport.commission == 1.0
            assert ib.reqCompletedOrders(False)[0].orderStatus.status == "Filled"
        finally:
            ib.disconnect()


def _connect_clash(gw: Gateway, client_id: int) -> list[int]:
    """Connect a second client with ``client_id``; returns the error codes it saw."""
    other = IB()
    errors = record_errors(other)
    loop = util.getLoop()
    task = loop.create_task(other.connectAsync(gw.host, gw.port, clientId=client_id, timeout=5))
    util.run(asyncio.wait_for(other.client.apiError, 5))  # "Peer closed connection"
    task.cancel()
    util.run(asyncio.gather(task, return_exceptions=True))
    assert not other.isConnected()
    return codes(errors)


def test_a_second_client_with_the_same_id_gets_326_and_is_closed(gateway: Gateway, ib: IB) -> None:
    """clientId already in use: error 326, the socket closes, the first client is untouched."""
    assert 326 in _connect_clash(gateway, client_id=1)
    assert ib.reqCurrentTime() == START
    assert gateway.connected_clients() == [1]


def test_a_client_id_held_elsewhere_gets_326_until_released(gateway: Gateway) -> None:
    """hold_client_id pretends another application has the id: 326, then fine once released."""
    gateway.hold_client_id(3)
    assert 326 in _connect_clash(gateway, client_id=3)
    gateway.release_client_id(3)
    ib = connect(gateway, client_id=3)
    assert ib.isConnected()
    ib.disconnect()


def test_current_time_is_the_gateway_clock_and_advances_only_when_told(
    gateway: Gateway, ib: IB
) -> None:
    """reqCurrentTime answers the gateway's clock; advance() moves it."""
    assert ib.reqCurrentTime() == START
    gateway.advance(90)
    assert ib.reqCurrentTime() == START + timedelta(seconds=90)


def test_req_ids_answers_an_id_above_every_order_id_used(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reqIds → nextValidId greater than the ids this client already used."""
    trade = ib.placeOrder(spy, MarketOrder("BUY", 1))
    wait_until(ib, trade.isDone)
    ib.client.reqIds(1)
    wait_until(ib, lambda: len(gateway.sent("nextValidId", client_id=1)) == 2)
    answered = int(gateway.sent("nextValidId", client_id=1)[-1].fields[2])
    assert answered == trade.order.orderId + 1


def test_start_exposes_the_bound_port_and_stop_closes_it() -> None:
    """Port 0 binds a free port on 127.0.0.1; after stop() nothing listens there."""
    gw = Gateway(start=START).start()
    port = gw.port
    assert port > 0 and gw.running
    with pytest.raises(GatewayError):
        gw.start()
    gw.stop()
    assert not gw.running
    with pytest.raises(ConnectionRefusedError):
        util.run(asyncio.open_connection("127.0.0.1", port))


def test_a_busy_port_is_a_clear_error(gateway: Gateway) -> None:
    """Starting a second gateway on a port in use raises GatewayError naming the port."""
    with pytest.raises(GatewayError, match=str(gateway.port)):
        Gateway(GatewayConfig(port=gateway.port)).start()


def test_refused_connections_come_back_when_the_clock_passes(gateway: Gateway) -> None:
    """refuse_connections(30): connects fail at once (ECONNREFUSED) until 30 s have passed."""
    gateway.refuse_connections(30)
    with pytest.raises(ConnectionRefusedError):
        connect(gateway)
    gateway.advance(29)
    with pytest.raises(ConnectionRefusedError):
        connect(gateway)
    gateway.advance(1)
    ib = connect(gateway)
    assert ib.isConnected()
    ib.disconnect()


def test_restart_needs_a_new_connection_and_keeps_orders_fills_and_prices(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """After a restart the client is cut off; on reconnect the fill, the open order and the
    book are still there."""
    gateway.set_price("SPY", "600")
    filled = ib.placeOrder(spy, MarketOrder("BUY", 10))
    wait_until(ib, filled.isDone)
    resting = ib.placeOrder(spy, LimitOrder("BUY", 5, 550))
    wait_until(ib, lambda: resting.orderStatus.status == "Submitted")
    gateway.restart()
    wait_disconnected(ib)
    ib.connect(gateway.host, gateway.port, clientId=1, timeout=5)
    assert [t.order.orderId for t in ib.openTrades()] == [resting.order.orderId]
    assert [f.execution.orderId for f in ib.fills()] == [filled.order.orderId]
    assert ib.positions()[0].position == 10
    assert ib.reqTickers(spy)[0].last == 600
    assert gateway.restarts == 1


def test_restart_with_downtime_refuses_connects_until_it_is_over(gateway: Gateway, ib: IB) -> None:
    """restart(downtime=60): connects are refused for 60 s of gateway time."""
    gateway.restart(downtime=60)
    wait_disconnected(ib)
    with pytest.raises(ConnectionRefusedError):
        ib.connect(gateway.host, gateway.port, clientId=1, timeout=5)
    gateway.advance(60)
    ib.connect(gateway.host, gateway.port, clientId=1, timeout=5)
    assert ib.isConnected()


def test_pacing_is_off_by_default(gateway: Gateway, ib: IB) -> None:
    """Sixty requests at once (client throttle off): none refused, no error 100."""
    ib.client.MaxRequests = 0
    errors = record_errors(ib)
    for _ in range(60):
        ib.client.reqCurrentTime()
    gateway.wait_received("reqCurrentTime", 60)
    assert 100 not in codes(errors)
    assert not [r for r in gateway.received("reqCurrentTime") if r.dropped]


def test_pacing_mode_answers_error_100_beyond_the_limit(gateway: Gateway, ib: IB) -> None:
    """With set_pacing(5), the 6th message within a second draws error 100 and is dropped."""
    gateway.set_pacing(5)
    errors = record_errors(ib)
    for _ in range(8):
        ib.client.reqCurrentTime()
    gateway.wait_received("reqCurrentTime", 8)
    wait_until(ib, lambda: 100 in codes(errors))
    dropped = [r for r in gateway.received("reqCurrentTime") if r.dropped == "pacing"]
    assert len(dropped) == 3


@pytest.mark.parametrize("code", [1100, 1101, 1102, 100, 103, 326, 10349])
def test_errors_sent_on_demand_reach_the_client(gateway: Gateway, ib: IB, code: int) -> None:
    """send_error(code) is seen by the client's errorEvent with that code."""
    errors = record_errors(ib)
    gateway.send_error(code)
    wait_until(ib, lambda: code in codes(errors))
    gateway.send_error(1102)  # leave connectivity restored


def test_1100_stops_fills_until_1102_restores_them(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """While connectivity is lost a market order waits; it fills once 1102 restores it."""
    gateway.send_error(1100)
    trade = ib.placeOrder(spy, MarketOrder("BUY", 2))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    assert gateway.orders()[0].filled == 0
    gateway.send_error(1102)
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")


def test_1101_forgets_market_data_subscriptions(gateway: Gateway, ib: IB, spy: Contract) -> None:
    """After 1101 nothing streams until the client subscribes again."""
    ticker = ib.reqMktData(spy)
    wait_until(ib, lambda: ticker.last == 590)
    gateway.send_error(1101)
    before = len(gateway.sent("tickPrice"))
    gateway.set_price("SPY", "591")
    assert len(gateway.sent("tickPrice")) == before
    ib.cancelMktData(spy)
    again = ib.reqMktData(spy)
    wait_until(ib, lambda: again.last == 591)


def test_drop_connections_cuts_the_client_off(gateway: Gateway, ib: IB) -> None:
    """drop_connections() closes the socket; the client sees the disconnect."""
    gateway.drop_connections(1)
    wait_disconnected(ib)
    assert gateway.connected_clients() == []


def test_the_log_check_catches_a_decoder_error(
    gateway: Gateway, ib: IB, ib_log_check: LogCatcher
) -> None:
    """A malformed frame makes ib_async log a decoder error, which the log check flags."""
    gateway.send_raw(1, ["1", "6", "not-a-number"])
    wait_until(ib, lambda: bool(log_problems(ib_log_check.records)))
    assert "ib_async.Decoder" in log_problems(ib_log_check.records)[0]
    ib_log_check.records.clear()


def test_every_message_the_client_sent_decoded_cleanly(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """The received log names every field of every message, placeOrder included, with no
    layout problem."""
    order = MarketOrder("BUY", 3, orderRef="p-1", account="DU1234567")
    trade = ib.placeOrder(spy, order)
    wait_until(ib, trade.isDone)
    placed = gateway.received("placeOrder")[0]
    assert placed["orderRef"] == "p-1" and placed["symbol"] == "SPY"
    assert placed["transmit"] == "1" and placed["account"] == "DU1234567"
    assert [r for r in gateway.received() if r.problem] == []
