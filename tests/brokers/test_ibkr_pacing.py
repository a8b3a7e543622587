"""Pacing: every message the adapter sends goes through one limiter (ib_async's own throttle, set
from policies/broker.yaml) below IB's 50 a second, bursts queued and never dropped; and the
market-data reads respect IB's historical-data pacing (identical requests within 15 s, at most 60
in 10 minutes) on the adapter's clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ib_async import IB, LimitOrder, Stock
from ibkrkit import IbkrWorld
from testing.gwkit import connect as connect_client
from testing.gwkit import wait_until

from workbench.clock import FixedClock
from workbench.errors import MarketDataError
from workbench.testing import Gateway, GatewayConfig

pytestmark = pytest.mark.usefixtures("ib_log_check")

BURST = 200
IB_LIMIT = 50  # messages a second, as IB enforces it (error 100 beyond)


@pytest.fixture
def paced(home: Path, clock: FixedClock) -> Iterator[IbkrWorld]:
    """The adapter (the policy's pacing) against a gateway that enforces IB's limit."""
    with IbkrWorld(home, clock, GatewayConfig(pacing_limit=IB_LIMIT)) as w:
        yield w


def resting(count: int, first_id: int) -> list[LimitOrder]:
    """``count`` GTC buy limits far below the market (they rest, nothing fills)."""
    orders = []
    for i in range(count):
        order = LimitOrder("BUY", 1, 100.0, orderId=first_id + i, tif="GTC")
        order.account = "DU1234567"
        orders.append(order)
    return orders


def pacing_errors(gw: Gateway) -> list[object]:
    errors = [m for m in gw.sent("error") if m.fields[3] == "100"]
    return [*errors, *(r for r in gw.received() if r.dropped == "pacing")]


def test_a_burst_of_200_orders_never_draws_error_100_from_a_gateway_that_enforces_the_limit(
    paced: IbkrWorld,
) -> None:
    """200 orders handed to the adapter's send path at once: the limiter queues them, every one
    reaches the gateway and is acknowledged, and the gateway never answers error 100."""
    session, gw = paced.broker.session, paced.gateway
    spy = Stock("SPY", "SMART", "USD", conId=paced.broker.instrument("SPY").con_id or 0)
    ids = session.call(session.next_ids(BURST, 1), "ids")
    generation = session.link.generation
    session.call(session.place(spy, resting(BURST, ids[0]), generation), "the burst")
    gw.wait_received("placeOrder", BURST, timeout=30)
    paced.broker.settle()
    assert len([o for o in gw.orders() if o.status == "Submitted"]) == BURST
    assert pacing_errors(gw) == []


def test_without_a_limiter_the_same_burst_draws_error_100(home: Path, clock: FixedClock) -> None:
    """The control: a bare ib_async client with its throttle off sends the burst at once, and
    the gateway refuses what is over the limit with error 100 (so the test above can fail)."""
    with Gateway(GatewayConfig(pacing_limit=IB_LIMIT), start=clock.now()) as gw:
        ib: IB = connect_client(gw)
        ib.client.MaxRequests = 0  # ib_async: 0 turns its throttle off
        try:
            spy = Stock("SPY", "SMART", "USD")
            ib.qualifyContracts(spy)
            for order in resting(BURST, ib.client.getReqId()):
                ib.placeOrder(spy, order)
            wait_until(ib, lambda: len(gw.received("placeOrder")) == BURST)
        finally:
            ib.disconnect()
        assert pacing_errors(gw)


def test_identical_bars_request_within_15_s_is_answered_without_asking_ib_again(
    paced: IbkrWorld,
) -> None:
    """The same daily bars twice within 15 s: one request reaches IB; 15 s later, two."""
    today = paced.clock.now().date()
    first = paced.broker.bars("SPY", today, 20)
    assert paced.broker.bars("SPY", today, 20) == first
    assert len(paced.gateway.received("reqHistoricalData")) == 1
    paced.clock.set(paced.clock.now() + timedelta(seconds=15))
    paced.broker.bars("SPY", today, 20)
    assert len(paced.gateway.received("reqHistoricalData")) == 2


def test_the_61st_bars_request_in_10_minutes_is_refused_before_it_reaches_ib(
    paced: IbkrWorld,
) -> None:
    """60 distinct historical-data requests go; the 61st within 10 minutes is refused clearly
    (nothing sent); once the oldest is 10 minutes old, the next goes."""
    today = paced.clock.now().date()
    for n in range(1, 61):  # each asks for a different duration: 60 distinct requests
        paced.broker.bars("SPY", today, n)
    with pytest.raises(MarketDataError, match="60 requests in the last 10 minutes"):
        paced.broker.bars("SPY", today, 61)
    assert len(paced.gateway.received("reqHistoricalData")) == 60
    paced.clock.set(paced.clock.now() + timedelta(minutes=10))
    paced.broker.bars("SPY", today, 61)
    assert len(paced.gateway.received("reqHistoricalData")) == 61


def test_the_policy_refuses_a_limiter_at_or_above_ibs_rate() -> None:
    """A pacing of 50 messages a second or more is a configuration error, never a setting."""
    from pydantic import ValidationError

    from workbench.broker_policy import IbkrPacing

    with pytest.raises(ValidationError, match="50 messages a second"):
        IbkrPacing(max_messages=10, per_seconds=Decimal("0.2"))
    assert IbkrPacing(max_messages=4, per_seconds=Decimal("0.1"))
