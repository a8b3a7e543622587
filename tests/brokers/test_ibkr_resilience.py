"""The IBKR adapter when the link to IB breaks: reconnects (waits on the gateway's clock, never a
sleep), reconciles IB's orders and executions with the log on every connection, adopts what
happened while away exactly once, marks what cannot be known UNKNOWN, reports what it never
sent, and never sends an order twice (what reached the gateway's socket is asserted)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from brokerkit import intent, permit_for, with_stop
from ibkrkit import IbkrWorld, connect

from workbench.audit import AuditLog, EventType
from workbench.brokers.ibkr_link import LinkState
from workbench.clock import FixedClock
from workbench.errors import (
    BrokerUnavailableError,
    OrderOutcomeUnknownError,
    PermitRefusedError,
)
from workbench.events import BrokerReconciliation, ReconciliationRun
from workbench.keys import ApprovalKey
from workbench.lifecycle import OrderState, current_state
from workbench.models import OrderIntent, OrderType, TimeInForce
from workbench.orders import OrderStatus
from workbench.testing import Gateway, GatewayConfig, Phase, Step

pytestmark = pytest.mark.usefixtures("ib_log_check")

ACCOUNT = "DU1234567"
WAIT = 10.0  # seconds at most for a reconnect (each wait is gateway time, not wall time)


@pytest.fixture
def world(home: Path, clock: FixedClock) -> Iterator[IbkrWorld]:
    with IbkrWorld(home, clock) as w:
        yield w


def order(symbol: str = "SPY", quantity: int = 10, **overrides: object) -> OrderIntent:
    return intent(symbol, quantity, account=ACCOUNT, **overrides)


def runs(log: AuditLog) -> list[BrokerReconciliation]:
    """What the adapter's reconciliations found, oldest first."""
    recorded = log.events(types=(EventType.RECONCILIATION_RUN,))
    found = [e.data_as(ReconciliationRun) for e in recorded]
    return [r.at_broker for r in found if r.at_broker is not None]


def refs_placed(gw: Gateway) -> list[tuple[str, str]]:
    """(orderRef, action) of every placeOrder that reached the gateway's socket."""
    return [(r["orderRef"], r["action"]) for r in gw.received("placeOrder")]


@pytest.mark.allow_ib_log("Peer closed")
def test_drop_after_place_order_before_the_fill_adopts_the_fill_once_and_sends_nothing_twice(
    world: IbkrWorld,
) -> None:
    """The socket drops after placeOrder reached IB and before the client heard anything; the
    market order fills at IB meanwhile. The adapter reconnects, adopts the fill (once, by its
    execId) and its stop, and the gateway received each order exactly once."""
    world.gateway.faults.drop(Step.ACK, Phase.BEFORE)
    with pytest.raises(OrderOutcomeUnknownError):
        world.broker.submit(permit_for(world.log, "p-away", with_stop(order(), Decimal("580"))))
    assert world.broker.wait_ready(WAIT)
    (execution,) = world.gateway.executions()
    (fill,) = world.broker.executions()
    assert fill.exec_id == execution.exec_id and fill.quantity == 10
    assert current_state(world.log, "p-away") is OrderState.FILLED
    last = runs(world.log)[-1]
    assert last.trigger == "reconnect" and last.fills_adopted == (execution.exec_id,)
    assert refs_placed(world.gateway) == [("wb:p-away", "BUY"), ("wb:p-away", "SELL")]
    stop = next(o for o in world.broker.orders() if o.role.value == "protective_stop")
    assert stop.status is OrderStatus.SUBMITTED  # IB works it; the adapter knows


@pytest.mark.allow_ib_log("Peer closed")
def test_order_lost_on_the_way_is_marked_unknown_and_never_sent_again(world: IbkrWorld) -> None:
    """placeOrder never became an order at IB (the socket dropped with it): after the reconnect
    IB holds nothing for it, so its outcome is UNKNOWN (reported), and nothing is re-sent."""
    world.gateway.faults.drop(Step.RECEIVED)
    with pytest.raises(OrderOutcomeUnknownError, match="UNKNOWN"):
        world.broker.submit(permit_for(world.log, "p-lost", order()))
    assert world.broker.wait_ready(WAIT)
    assert current_state(world.log, "p-lost") is OrderState.UNKNOWN
    (sent,) = world.gateway.received("placeOrder")
    last = runs(world.log)[-1]
    assert last.unknown == ("p-lost",) and last.not_at_ib == (f"IB-1-{sent['orderId']}",)
    assert refs_placed(world.gateway) == [("wb:p-lost", "BUY")]
    assert world.gateway.orders() == []


def test_duplicate_and_reordered_fill_messages_record_one_fill(world: IbkrWorld) -> None:
    """Every message of the fill twice, and in reverse order: one fill, one FILLED."""
    world.gateway.faults.duplicate(Step.FILL)
    world.gateway.faults.reorder(Step.FILL)
    world.broker.submit(permit_for(world.log, "p-dup", order()))
    world.broker.settle()
    assert len(world.broker.executions()) == 1
    filled = world.log.events(proposal_id="p-dup", types=(EventType.ORDER_FILLED,))
    assert len(filled) == 1


def test_ib_data_lost_1101_resubscribes_and_reconciles(world: IbkrWorld) -> None:
    """IB's 1101 (connectivity restored, data lost): the account updates and the market-data
    type are asked for again and IB's orders are reconciled again before the next order."""
    before = len(world.gateway.received("reqAccountUpdates"))
    world.gateway.send_error(1100)
    world.gateway.send_error(1101)
    world.broker.settle()
    assert world.broker.wait_ready(WAIT)
    world.broker.settle()
    assert len(world.gateway.received("reqAccountUpdates")) == before + 1
    assert len(world.gateway.received("reqMarketDataType")) == 2
    assert runs(world.log)[-1].trigger == "data-lost"
    world.broker.submit(permit_for(world.log, "p-after", order()))
    assert current_state(world.log, "p-after") is OrderState.FILLED


def test_while_ib_reports_its_link_lost_no_order_is_sent(world: IbkrWorld) -> None:
    """IB's 1100: a submit is refused before anything reaches the socket; 1102 ends it."""
    world.gateway.send_error(1100)
    world.broker.settle()
    assert world.broker.session.link.state is LinkState.LINK_LOST
    with pytest.raises(PermitRefusedError, match="link lost"):
        world.broker.submit(permit_for(world.log, "p-1100", order()))
    assert world.gateway.received("placeOrder") == []
    world.gateway.send_error(1102)
    world.broker.settle()
    assert world.broker.session.link.ready


@pytest.mark.allow_ib_log("Peer closed")
def test_nightly_restart_mid_day_the_next_order_goes_through_on_the_new_session(
    world: IbkrWorld,
) -> None:
    """IB Gateway restarts (5 minutes down) between two orders: the adapter waits it out on
    the gateway's clock, reconnects, reconciles, and the next order fills on the new session."""
    world.broker.submit(permit_for(world.log, "p-before", order()))
    generation = world.broker.session.link.generation
    world.gateway.restart(downtime=300)
    assert world.broker.wait_ready(WAIT, after=generation)
    world.broker.submit(permit_for(world.log, "p-next", order("QQQ", 3)))
    assert current_state(world.log, "p-next") is OrderState.FILLED
    first, second = world.gateway.received("placeOrder")
    assert second.conn_id != first.conn_id and world.gateway.restarts == 1
    assert [r.trigger for r in runs(world.log)] == ["connect", "reconnect"]
    connected = world.log.events(types=(EventType.BROKER_CONNECTED,))
    assert len(connected) == 2


@pytest.mark.allow_ib_log("Peer closed", "gave up reconnecting", "already in use")
def test_client_id_taken_while_away_is_said_clearly_and_not_retried_forever(
    world: IbkrWorld,
) -> None:
    """After a drop another application holds the client id (326): the adapter tries the
    policy's clash_attempts times, gives up saying why, and refuses every call clearly."""
    before = len(world.gateway.received("startApi"))
    generation = world.broker.session.link.generation
    world.gateway.hold_client_id(1)
    world.gateway.drop_connections()
    assert not world.broker.wait_ready(WAIT, after=generation)
    status = world.broker.session.link.status()
    assert status.state is LinkState.GAVE_UP and "client id 1 is already in use" in status.problem
    clash = world.broker.settings.reconnect.clash_attempts
    assert len(world.gateway.received("startApi")) - before == clash
    with pytest.raises(BrokerUnavailableError, match="already in use"):
        world.broker.portfolio(ACCOUNT)


def test_an_order_typed_into_tws_by_hand_is_reported_never_adopted(world: IbkrWorld) -> None:
    """An order the log never sent (placed in TWS by hand) is listed as foreign by the next
    reconciliation, and never becomes one of the workbench's orders."""
    world.gateway.place_manual_order("IWM", "BUY", 7, "LMT", limit_price=Decimal("100"))
    world.gateway.send_error(1101)
    world.broker.settle()
    assert world.broker.wait_ready(WAIT)
    world.broker.settle()
    (foreign,) = runs(world.log)[-1].foreign
    assert (foreign.symbol, foreign.side.value, foreign.quantity) == ("IWM", "BUY", 7)
    assert world.broker.orders() == ()


def test_order_ids_never_reuse_one_this_home_used_when_ib_starts_its_sequence_again(
    home: Path, clock: FixedClock
) -> None:
    """A new IB Gateway answers nextValidId 1 again: the adapter starts past the ids this home
    used for the client, so no order is refused as a duplicate id (103)."""
    resting = order(order_type=OrderType.LMT, limit_price=Decimal("500"),
                    time_in_force=TimeInForce.GTC)  # fmt: skip
    ids: list[int] = []
    for proposal_id in ("p-one", "p-two"):
        with Gateway(GatewayConfig(), start=clock.now()) as gw, AuditLog(
            home / "workbench.sqlite", clock=clock
        ) as log:  # fmt: skip
            broker = connect(log, gw, key=ApprovalKey(home))
            try:
                broker.submit(permit_for(log, proposal_id, resting))
            finally:
                broker.close()
            ids += [int(r["orderId"]) for r in gw.received("placeOrder")]
    assert ids[1] > ids[0]
