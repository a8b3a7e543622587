"""The IBKR adapter against the loopback gateway over a real socket: what reaches the socket, how
IB's answers are recorded (once), and what is refused before anything is sent.

Every test runs under the gateway log check: an ib_async decoder error or a request time-out in
the log fails it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from brokerkit import intent, permit_for, with_stop
from ibkrkit import IbkrWorld, connect

from workbench.audit import AuditLog, EventType
from workbench.broker_policy import LIVE_GATE
from workbench.brokers.ibkr import IbkrBroker
from workbench.clock import FixedClock
from workbench.errors import (
    BrokerError,
    BrokerUnavailableError,
    LiveTradingRefusedError,
    MarketDataError,
    OrderRejectedError,
    PermitRefusedError,
)
from workbench.events import BrokerUpdate
from workbench.keys import ApprovalKey
from workbench.lifecycle import OrderState, current_state
from workbench.models import OrderIntent, OrderType, QuoteFeed, TimeInForce, TradingState
from workbench.orders import OrderRole, OrderStatus
from workbench.testing import Gateway, GatewayConfig, Step
from workbench.trading_state import set_state

pytestmark = pytest.mark.usefixtures("ib_log_check")

ACCOUNT = "DU1234567"


@pytest.fixture
def world(home: Path, clock: FixedClock) -> Iterator[IbkrWorld]:
    """The adapter connected to a fresh loopback gateway, on a fresh home."""
    with IbkrWorld(home, clock) as w:
        yield w


def order(symbol: str = "SPY", quantity: int = 10, **overrides: object) -> OrderIntent:
    return intent(symbol, quantity, account=ACCOUNT, **overrides)


def placed(gw: Gateway) -> list[dict[str, str]]:
    """The placeOrder messages that reached the gateway's socket, decoded."""
    return [dict(r.fields) for r in gw.received("placeOrder")]


def events(log: AuditLog, proposal_id: str, kind: EventType) -> list[BrokerUpdate]:
    return [e.data_as(BrokerUpdate) for e in log.events(proposal_id=proposal_id, types=(kind,))]


# -- connecting: paper only ----------------------------------------------------------------------


@pytest.mark.parametrize("port", [7496, 4001])
def test_live_port_is_refused_before_any_socket(home: Path, clock: FixedClock, port: int) -> None:
    """A live TWS/IB Gateway port is refused naming the live gate, and nothing connects: a
    listener on that port hears nothing."""
    with Gateway(GatewayConfig(port=port), start=clock.now()) as gw, AuditLog(
        home / "workbench.sqlite", clock=clock
    ) as log:  # fmt: skip
        with pytest.raises(LiveTradingRefusedError, match="live gate") as refused:
            connect(log, gw, key=ApprovalKey(home))
        assert gw.received() == [] and gw.connected_clients() == []
    assert str(port) in str(refused.value) and LIVE_GATE in str(refused.value)


def test_live_account_is_refused_on_managed_accounts_before_any_trading_request(
    home: Path, clock: FixedClock
) -> None:
    """A login that manages a live (non-DU) account is refused right after managedAccounts:
    nothing that could trade or read orders is asked, and the connection is closed."""
    with Gateway(GatewayConfig(account="U7654321"), start=clock.now()) as gw, AuditLog(
        home / "workbench.sqlite", clock=clock
    ) as log:  # fmt: skip
        with pytest.raises(LiveTradingRefusedError, match="U7654321 is not a paper"):
            connect(log, gw, key=ApprovalKey(home))
        asked = {r.name for r in gw.received()}
        assert asked <= {"handshake", "startApi", "reqPositions"}, asked
        assert gw.connected_clients() == []
        assert log.events(types=(EventType.BROKER_CONNECTED,)) == []


def test_account_outside_the_allowlist_is_refused(home: Path, clock: FixedClock) -> None:
    """A paper login whose account is not the one broker.yaml names is refused, naming both."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw, AuditLog(
        home / "workbench.sqlite", clock=clock
    ) as log:  # fmt: skip
        with pytest.raises(BrokerError, match=r"DU1234567.*DU5555555"):
            connect(log, gw, key=ApprovalKey(home), accounts=("DU5555555",))
        assert gw.connected_clients() == []


def test_client_id_in_use_is_said_at_once(home: Path, clock: FixedClock) -> None:
    """A client id another application holds (IB error 326) is reported as such, not as a
    bare time-out after the whole connect timeout."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw, AuditLog(
        home / "workbench.sqlite", clock=clock
    ) as log:  # fmt: skip
        gw.hold_client_id(1)
        with pytest.raises(BrokerUnavailableError, match="client id 1 is already in use"):
            connect(log, gw, key=ApprovalKey(home))


def test_nothing_listening_is_a_clear_unavailable_error(home: Path, clock: FixedClock) -> None:
    """No Gateway/TWS on the port: BrokerUnavailableError saying what to check."""
    gw = Gateway(GatewayConfig(), start=clock.now()).start()
    gw.stop()  # its port is free again: nothing listens there
    with AuditLog(home / "workbench.sqlite", clock=clock) as log, pytest.raises(
        BrokerUnavailableError, match="Enable ActiveX and Socket Clients"
    ):  # fmt: skip
        connect(log, gw, key=ApprovalKey(home))


def test_connection_is_recorded_with_who_trades_and_the_config_hash(world: IbkrWorld) -> None:
    """BrokerConnected names the paper account, the endpoint, the test gateway and the config."""
    (event,) = world.log.events(types=(EventType.BROKER_CONNECTED,))
    data = event.payload
    assert data["account"] == ACCOUNT and data["test_gateway"] is True
    assert data["endpoint"] == f"127.0.0.1:{world.gateway.port}" and not data["read_only"]
    assert world.broker.label == (
        f"IBKR paper account {ACCOUNT} via 127.0.0.1:{world.gateway.port}"
        " (loopback TEST gateway, synthetic prices)"
    )


# -- the bracket on the wire ---------------------------------------------------------------------


def test_bracket_reaches_the_socket_with_transmit_flags_account_and_order_ref(
    world: IbkrWorld,
) -> None:
    """Parent (transmit off) then its Smart Stop child (transmit on, parentId set), both on the
    paper account with the permit's orderRef; the parent fills and the stop works."""
    permit = permit_for(world.log, "p-br", with_stop(order(), Decimal("580.00")))
    ack = world.broker.submit(permit)
    parent, child = placed(world.gateway)
    assert (parent["transmit"], child["transmit"]) == ("0", "1")
    assert child["parentId"] == parent["orderId"] and parent["parentId"] in ("", "0")
    assert parent["account"] == child["account"] == ACCOUNT
    assert parent["orderRef"] == child["orderRef"] == "wb:p-br"
    assert (parent["action"], parent["orderType"], parent["tif"]) == ("BUY", "MKT", "DAY")
    assert (child["action"], child["orderType"], child["auxPrice"], child["tif"]) == (
        "SELL", "STP", "580", "GTC")  # fmt: skip
    assert ack.parent.status is OrderStatus.FILLED
    assert [(c.role, c.status) for c in ack.children] == [
        (OrderRole.PROTECTIVE_STOP, OrderStatus.SUBMITTED)
    ]
    assert current_state(world.log, "p-br") is OrderState.FILLED


def test_fill_and_commission_are_recorded_once(world: IbkrWorld) -> None:
    """One execution: one Fill with IB's commission, one OrderFilled event, nothing more."""
    world.broker.submit(permit_for(world.log, "p-once", order("QQQ", 7)))
    world.broker.settle()
    (fill,) = world.broker.executions()
    (execution,) = world.gateway.executions()
    assert fill.exec_id == execution.exec_id and fill.commission == execution.commission
    assert fill.quantity == 7 and fill.price == execution.price
    assert len(events(world.log, "p-once", EventType.ORDER_FILLED)) == 1


def test_duplicate_commission_reports_record_one_fill(world: IbkrWorld) -> None:
    """IB sending the commission report twice (ib_async fires its event twice) records one fill."""
    world.gateway.faults.duplicate(Step.FILL, ("commissionReport", "execDetails"))
    world.broker.submit(permit_for(world.log, "p-dup-cr", order()))
    world.broker.settle()
    assert len(world.broker.executions()) == 1
    assert len(events(world.log, "p-dup-cr", EventType.ORDER_FILLED)) == 1
    fills = [u.fill for u in world.broker.updates() if u.fill is not None]
    assert len(fills) == 1


def test_commission_before_its_execution_is_asked_again_and_recorded_once(
    world: IbkrWorld,
) -> None:
    """A commission report that comes before its execDetails (ib_async drops it) is recovered by
    asking IB for the executions again; the fill is recorded once, with its commission."""
    order_of = ("commissionReport", "execDetails", "openOrder", "orderStatus")
    world.gateway.faults.reorder(Step.FILL, order_of)
    ack = world.broker.submit(permit_for(world.log, "p-late", order()))
    assert ack.parent.status is OrderStatus.FILLED
    (fill,) = world.broker.executions()
    assert fill.commission == world.gateway.executions()[0].commission
    assert world.gateway.received("reqExecutions")[-1].fields["clientId"] == "1"


def test_tif_preset_warning_10349_does_not_cancel_the_order(world: IbkrWorld) -> None:
    """Error 10349 (TIF set by preset) is a note: the order still works and fills (ib_async's
    Trade says Cancelled; the adapter does not believe it)."""
    world.gateway.faults.error_at(Step.ACK, 10349)
    ack = world.broker.submit(permit_for(world.log, "p-10349", order()))
    assert ack.parent.status is OrderStatus.FILLED
    messages = [u.message for u in world.broker.updates()]
    assert any("10349" in m for m in messages)
    assert current_state(world.log, "p-10349") is OrderState.FILLED


def test_reject_201_is_recorded_rejected_with_ibs_message(world: IbkrWorld) -> None:
    """IB's 201 rejects the order: submit raises with IB's words, the proposal is REJECTED and
    its OrderRejected event carries the message; the stop child is rejected too."""
    world.gateway.reject_orders("SPY", "no trading permissions for ARCA")
    permit = permit_for(world.log, "p-201", with_stop(order(), Decimal("580")))
    with pytest.raises(OrderRejectedError, match=r"201.*no trading permissions for ARCA"):
        world.broker.submit(permit)
    assert current_state(world.log, "p-201") is OrderState.REJECTED
    (rejected,) = events(world.log, "p-201", EventType.ORDER_REJECTED)
    assert rejected.order is not None and "no trading permissions" in rejected.order.reason
    assert [o.status for o in world.broker.orders()] == [OrderStatus.REJECTED] * 2
    assert world.broker.executions() == ()


def test_unknown_symbol_is_refused_before_any_order(world: IbkrWorld) -> None:
    """A symbol IB cannot qualify (error 200) is rejected before any placeOrder is sent."""
    permit = permit_for(world.log, "p-zzzz", order("ZZZZ"))
    with pytest.raises(OrderRejectedError, match="unknown symbol ZZZZ"):
        world.broker.submit(permit)
    assert placed(world.gateway) == []
    assert [r.fields["symbol"] for r in world.gateway.received("reqContractDetails")] == ["ZZZZ"]
    assert current_state(world.log, "p-zzzz") is OrderState.REJECTED


def test_permit_the_shared_check_refuses_never_reaches_the_socket(world: IbkrWorld) -> None:
    """A forged permit, and a real one while HALTED, are refused by PermitCheck: not one message
    reaches the gateway, and PermitRefused is recorded."""
    real = permit_for(world.log, "p-real", order())
    forged = real.model_copy(update={"proposal_id": "p-forged"})
    heard = len(world.gateway.received())
    with pytest.raises(PermitRefusedError):
        world.broker.submit(forged)
    set_state(world.log, TradingState.HALTED, reason="stop everything", by="ops")
    with pytest.raises(PermitRefusedError, match="HALTED"):
        world.broker.submit(real)
    assert len(world.gateway.received()) == heard
    refused = world.log.events(types=(EventType.PERMIT_REFUSED,))
    assert len(refused) == 2


def test_read_only_session_connects_read_only_and_refuses_every_submit(
    home: Path, clock: FixedClock
) -> None:
    """Without the approval key (a proposer's handle) the adapter connects read-only (no order
    requests at start-up) and refuses a permit before anything is sent."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw:
        with AuditLog(home / "workbench.sqlite", clock=clock) as log:
            permit = permit_for(log, "p-ro", order())
            broker = connect(log, gw, key=None)
            try:
                assert broker.read_only
                with pytest.raises(PermitRefusedError, match="read-only"):
                    broker.submit(permit)
            finally:
                broker.close()
        assert not gw.received("reqOpenOrders") and not placed(gw)


def test_read_only_setting_refuses_submit_even_with_the_key(home: Path, clock: FixedClock) -> None:
    """broker.yaml ``read_only: true`` refuses every submit, whatever the permit."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw:
        with AuditLog(home / "workbench.sqlite", clock=clock) as log:
            permit = permit_for(log, "p-ro2", order())
            broker = connect(log, gw, key=ApprovalKey(home), read_only=True)
            try:
                with pytest.raises(PermitRefusedError, match="read-only"):
                    broker.submit(permit)
            finally:
                broker.close()
        assert not placed(gw)


# -- working orders, cancels, drops --------------------------------------------------------------


def test_resting_limit_fills_later_and_is_recorded_without_a_call(world: IbkrWorld) -> None:
    """A resting limit returns Submitted; when the price comes to it, the fill is recorded by
    the adapter's own thread (the next read sees it), at its limit."""
    resting = order(order_type=OrderType.LMT, limit_price=Decimal("585.00"),
                    time_in_force=TimeInForce.GTC)  # fmt: skip
    ack = world.broker.submit(permit_for(world.log, "p-rest", resting))
    assert ack.parent.status is OrderStatus.SUBMITTED
    world.gateway.set_price("SPY", Decimal("584.90"))
    world.broker.settle()
    assert current_state(world.log, "p-rest") is OrderState.FILLED
    assert [f.price for f in world.broker.executions()] == [Decimal("585.00")]


def test_cancel_of_a_working_bracket_cancels_parent_and_held_stop(world: IbkrWorld) -> None:
    """Cancelling a proposal whose limit parent rests cancels it and its held stop at IB."""
    resting = with_stop(order(order_type=OrderType.LMT, limit_price=Decimal("500.00"),
                              time_in_force=TimeInForce.GTC), Decimal("450"))  # fmt: skip
    world.broker.submit(permit_for(world.log, "p-cx", resting))
    cancelled = world.broker.cancel(proposal_id="p-cx")
    assert sorted(o.role.value for o in cancelled) == ["parent", "protective_stop"]
    assert all(o.status is OrderStatus.CANCELLED for o in cancelled)
    assert current_state(world.log, "p-cx") is OrderState.CANCELLED
    assert len(world.gateway.received("cancelOrder")) == 1


def test_fills_are_not_recorded_again_after_a_reconnect(world: IbkrWorld) -> None:
    """Reconnecting replays the day's executions and commissions; nothing is recorded twice."""
    world.broker.submit(permit_for(world.log, "p-re", with_stop(order(), Decimal("580"))))
    before = (world.broker.updates(), world.broker.executions())
    world.restart()
    world.broker.settle()
    assert (world.broker.updates(), world.broker.executions()) == before
    assert len(events(world.log, "p-re", EventType.ORDER_FILLED)) == 1


# -- market data ---------------------------------------------------------------------------------


def test_delayed_quote_is_labelled_and_dated_by_its_tick_time(world: IbkrWorld) -> None:
    """Without a live subscription (market_data_type 3) the quote is IB's delayed data: labelled
    delayed and dated when the price was (15 minutes before), not when it arrived."""
    world.gateway.set_live_data(False)
    quote = world.broker.market_snapshot(world.broker.instrument("SPY"))
    assert quote.feed is QuoteFeed.DELAYED and "delayed data" in quote.source
    assert quote.timestamp == world.clock.now() - timedelta(seconds=900)


def test_live_only_data_without_a_subscription_is_a_clear_error(
    home: Path, clock: FixedClock
) -> None:
    """market_data_type 1 and no subscription: IB's 354, said with what to change."""
    with Gateway(GatewayConfig(), start=clock.now()) as gw, AuditLog(
        home / "workbench.sqlite", clock=clock
    ) as log:  # fmt: skip
        gw.set_live_data(False)
        broker = connect(log, gw, key=ApprovalKey(home), market_data_type=1)
        try:
            with pytest.raises(MarketDataError, match=r"354.*market_data_type: 3"):
                broker.market_snapshot(broker.instrument("SPY"))
        finally:
            broker.close()


def test_daily_bars_drop_the_session_still_trading(world: IbkrWorld) -> None:
    """IB includes today's unfinished bar; the adapter returns completed sessions only."""
    now = world.clock.now()
    bars = world.broker.bars("SPY", now.date(), 15)
    assert len(bars) == 15 and bars[-1].day < now.date()
    assert all(b.synthetic and "TEST gateway" in b.source for b in bars)


def test_portfolio_reads_ibs_account_values_in_decimal(world: IbkrWorld) -> None:
    """NetLiquidation, cash, AvailableFunds, BuyingPower and margin come from IB as Decimals."""
    world.broker.submit(permit_for(world.log, "p-pf", order("IWM", 5)))
    snapshot = world.broker.portfolio(ACCOUNT)
    values = world.gateway.account_values()
    assert snapshot.net_liquidation == values["NetLiquidation"]
    assert snapshot.cash == values["TotalCashValue"]
    assert snapshot.maint_margin == values["MaintMarginReq"] > 0
    (position,) = snapshot.positions
    assert position.instrument.symbol == "IWM" and position.quantity == 5


def test_unknown_account_snapshot_is_refused(world: IbkrWorld) -> None:
    """Asking for another account's snapshot is an UnknownAccountError, never another's data."""
    with pytest.raises(BrokerError, match="DU0000001"):
        world.broker.portfolio("DU0000001")


def test_close_disconnects_and_the_session_refuses_calls(world: IbkrWorld) -> None:
    """After close the gateway has no client and a read is refused as unavailable."""
    broker: IbkrBroker = world.broker
    broker.close()
    assert world.gateway.connected_clients() == []
    with pytest.raises(BrokerUnavailableError):
        broker.portfolio(ACCOUNT)
    world.open()  # the fixture closes what it opened
