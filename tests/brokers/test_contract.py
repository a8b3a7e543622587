"""The broker contract: behaviour every broker must have, run against each broker in ``BROKERS``.

Only the ``Broker`` protocol, the audit log and the harness hooks are used here: nothing that
belongs to one broker's internals, so the IBKR adapter can join the parameter list unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from brokerkit import BROKERS, Harness, permit_for, with_stop

from workbench.audit import EventType
from workbench.brokers.base import Broker, OrderRole, OrderStatus
from workbench.clock import FixedClock
from workbench.errors import (
    BrokerError,
    DuplicateOrderError,
    OrderNotWorkingError,
    OrderRejectedError,
    PermitRefusedError,
    UnknownOrderError,
    UnknownSymbolError,
)
from workbench.lifecycle import OrderState, current_state
from workbench.models import (
    Instrument,
    InstrumentType,
    OrderIntent,
    OrderType,
    Side,
    SubmitPermit,
    TimeInForce,
)
from workbench.sessions import xnys

pytestmark = pytest.mark.usefixtures("ib_log_check")  # the IBKR adapter talks to the gateway

SATURDAY = datetime(2026, 11, 21, 15, 30, tzinfo=UTC)
THANKSGIVING = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)


@pytest.fixture(params=sorted(BROKERS))
def harness(request: pytest.FixtureRequest, home: Path, clock: FixedClock) -> Iterator[Harness]:
    """Each broker in turn, on a fresh home, with the clock on an open NYSE session."""
    yield from BROKERS[request.param](home, clock)


def _state(h: Harness) -> tuple[object, ...]:
    b = h.broker
    return (b.portfolio(h.account), b.orders(), b.executions(), b.updates(), b.open_orders())


def test_broker_satisfies_the_protocol_and_names_itself(harness: Harness) -> None:
    """Every broker implements the Broker protocol and labels itself as paper or IBKR."""
    assert isinstance(harness.broker, Broker)
    label = harness.broker.label
    assert label == "paper broker (simulated)" or label.startswith("IBKR paper account DU")
    assert harness.broker.portfolio(harness.account).broker == label


def test_portfolio_nav_is_cash_plus_positions(harness: Harness) -> None:
    """NetLiquidation equals cash plus the market value of positions, before and after a fill."""
    broker = harness.broker
    assert harness.account in broker.accounts()
    broker.submit(permit_for(harness.log, "p-nav", harness.intent("QQQ", 7)))
    snap = broker.portfolio(harness.account)
    assert snap.net_liquidation == snap.cash + sum(p.market_value for p in snap.positions)
    assert snap.timestamp == harness.clock.now()


def test_instrument_lookup_knows_the_universe_and_refuses_the_rest(harness: Harness) -> None:
    """instrument() qualifies a known symbol and raises UnknownSymbolError for an unknown one."""
    spy = harness.broker.instrument("SPY")
    assert spy.symbol == "SPY" and spy.currency == "USD"
    with pytest.raises(UnknownSymbolError):
        harness.broker.instrument("ZZZZ")


def test_market_snapshot_quotes_a_known_symbol(harness: Harness) -> None:
    """A known symbol's snapshot has a two-sided quote in session and a time no later than now."""
    snap = harness.broker.market_snapshot(harness.intent("SPY").instrument)
    assert snap.bid is not None and snap.ask is not None and snap.bid <= snap.ask
    assert snap.reference_price is not None and snap.timestamp <= harness.clock.now()


def test_bars_are_completed_sessions_oldest_first(harness: Harness) -> None:
    """bars() gives n completed daily bars, oldest first, none from a session still trading."""
    now = harness.clock.now()
    bars = harness.broker.bars("SPY", now.date(), 5)
    assert len(bars) == 5
    assert [b.day for b in bars] == sorted(b.day for b in bars)
    assert bars[-1].day < now.date()


def test_market_order_fills_and_streams_its_updates(harness: Harness) -> None:
    """A market order fills with a commission; the stream shows Submitted, then Filled."""
    broker, permit = harness.broker, permit_for(harness.log, "p-mkt", harness.intent("SPY", 10))
    ack = broker.submit(permit)
    assert ack.broker == broker.label and ack.parent.order_ref == permit.order_ref
    fills = [f for f in broker.executions() if f.proposal_id == "p-mkt"]
    assert sum(f.quantity for f in fills) == 10 and all(f.commission > 0 for f in fills)
    statuses = [u.status for u in broker.updates() if u.order.proposal_id == "p-mkt"]
    assert statuses[0] is OrderStatus.SUBMITTED and statuses[-1] is OrderStatus.FILLED
    assert current_state(harness.log, "p-mkt") is OrderState.FILLED
    position = broker.portfolio(harness.account).position("SPY")
    assert position is not None and position.quantity == 10


def test_updates_after_a_cursor_are_only_the_newer_ones(harness: Harness) -> None:
    """updates(after=c) returns exactly the updates whose cursor is greater than c."""
    broker = harness.broker
    broker.submit(permit_for(harness.log, "p-u1", harness.intent("SPY", 1)))
    cursor = broker.updates()[-1].cursor
    broker.submit(permit_for(harness.log, "p-u2", harness.intent("SPY", 1)))
    newer = broker.updates(after=cursor)
    assert newer and all(u.cursor > cursor for u in newer)
    assert {u.order.proposal_id for u in newer} == {"p-u2"}


def _next_sessions(after: datetime, n: int) -> list[datetime]:
    cal = xnys()
    closes = [s.close for s in cal.between(after, after + timedelta(days=n * 2))]
    return [c for c in closes if c > after][:n]


def _bracket(harness: Harness) -> tuple[SubmitPermit, Decimal]:
    quote = harness.broker.market_snapshot(harness.intent("SPY").instrument)
    assert quote.reference_price is not None
    stop = (quote.reference_price * Decimal("0.99")).quantize(Decimal("0.01"))
    permit = permit_for(harness.log, "p-bracket", with_stop(harness.intent("SPY", 20), stop))
    return permit, stop


def test_bracket_stop_works_after_parent_fill_and_flattens_when_price_falls(
    harness: Harness,
) -> None:
    """Parent fills → stop works → price falls through it → stop fills → flat, nothing left."""
    broker = harness.broker
    permit, stop = _bracket(harness)
    ack = broker.submit(permit)
    assert [c.role for c in ack.children] == [OrderRole.PROTECTIVE_STOP]
    working = [o for o in broker.open_orders() if o.proposal_id == "p-bracket"]
    assert [(o.role, o.status, o.side, o.stop_price) for o in working] == [
        (OrderRole.PROTECTIVE_STOP, OrderStatus.SUBMITTED, Side.SELL, stop)
    ]
    for close in _next_sessions(harness.clock.now(), 30):
        harness.move_to(close)
        if not [o for o in harness.broker.open_orders() if o.proposal_id == "p-bracket"]:
            break
    broker = harness.broker
    assert not [o for o in broker.open_orders() if o.proposal_id == "p-bracket"]
    stop_fills = [f for f in broker.executions() if f.order_id == ack.children[0].order_id]
    assert sum(f.quantity for f in stop_fills) == 20 and all(f.price <= stop for f in stop_fills)
    assert broker.portfolio(harness.account).position("SPY") is None


def test_restart_in_the_middle_keeps_the_broker_state(harness: Harness) -> None:
    """Reopening the home mid-bracket gives the same portfolio, orders, fills and updates."""
    permit, _ = _bracket(harness)
    harness.broker.submit(permit)
    harness.broker.submit(permit_for(harness.log, "p-rest", harness.intent("IWM", 5)))
    before = _state(harness)
    harness.restart()
    assert _state(harness) == before


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"symbol": "ZZZZ"}, "unknown symbol"),
        ({"account": "NOSUCH"}, "unknown account"),
        (
            {"instrument": Instrument(type=InstrumentType.ETF, symbol="SPY", currency="EUR")},
            "currency EUR",
        ),
    ],
    ids=["symbol", "account", "currency"],
)
def test_rejects_what_a_broker_would(
    harness: Harness, changes: dict[str, object], fragment: str
) -> None:
    """An unknown symbol, account or currency is rejected with a reason and OrderRejected."""
    fields = dict(changes)
    order = harness.intent(str(fields.pop("symbol", "SPY")), **fields)
    with pytest.raises(OrderRejectedError, match=fragment):
        harness.broker.submit(permit_for(harness.log, "p-bad", order))
    assert current_state(harness.log, "p-bad") is OrderState.REJECTED
    assert not [f for f in harness.broker.executions() if f.proposal_id == "p-bad"]


def test_non_positive_quantity_that_slipped_past_validation_is_never_sent(
    harness: Harness,
) -> None:
    """A zero quantity in a permit built around the models is refused before anything is sent:
    no proposal in the log backs it."""
    real = permit_for(harness.log, "p-zero", harness.intent("SPY", 1, order_type=OrderType.LMT,
                                                    limit_price=Decimal(1)))  # fmt: skip
    bad = OrderIntent.model_construct(**{**dict(real.intent), "quantity": Decimal(0)})
    permit = SubmitPermit.model_construct(**{**dict(real), "intent": bad,
                                             "intent_hash": bad.intent_hash})  # fmt: skip
    with pytest.raises(PermitRefusedError, match="different intent_hash"):
        harness.broker.submit(permit)
    assert harness.broker.orders() == () and harness.broker.executions() == ()


@pytest.mark.parametrize("when", [SATURDAY, THANKSGIVING], ids=["saturday", "thanksgiving"])
def test_day_order_while_market_closed_is_rejected(harness: Harness, when: datetime) -> None:
    """A DAY order on a weekend or an NYSE holiday is rejected: the market is closed."""
    harness.clock.set(when)
    with pytest.raises(OrderRejectedError, match="market closed"):
        harness.broker.submit(permit_for(harness.log, "p-closed", harness.intent("SPY")))
    assert current_state(harness.log, "p-closed") is OrderState.REJECTED


def test_permit_without_its_submitted_event_is_refused(harness: Harness) -> None:
    """A permit whose OrderSubmitted event is missing or different is refused; no order exists."""
    real = permit_for(harness.log, "p-real", harness.intent("SPY", 3, order_type=OrderType.LMT,
                                                    limit_price=Decimal(1)))  # fmt: skip
    forged = [
        real.model_copy(update={"proposal_id": "p-forged"}),
        real.model_copy(update={"submitted_seq": real.submitted_seq - 1}),
        real.model_copy(update={"submitted_seq": 10_000}),
    ]
    for permit in forged:
        with pytest.raises(PermitRefusedError):
            harness.broker.submit(permit)
    assert harness.broker.orders() == ()
    assert current_state(harness.log, "p-real") is OrderState.SUBMITTED


def test_second_submit_of_a_proposal_is_refused(harness: Harness) -> None:
    """Submitting the same proposal twice sends one order: the second is refused as a duplicate."""
    permit = permit_for(harness.log, "p-dup", harness.intent("SPY", 2))
    harness.broker.submit(permit)
    with pytest.raises(DuplicateOrderError):
        harness.broker.submit(permit)
    parents = [o for o in harness.broker.orders() if o.proposal_id == "p-dup"]
    assert len(parents) == 1
    assert sum(f.quantity for f in harness.broker.executions()) == 2


def test_submit_inside_an_open_transaction_is_refused(harness: Harness) -> None:
    """submit refuses to run before the permit's OrderSubmitted transaction has committed."""
    permit = permit_for(harness.log, "p-tx", harness.intent("SPY", 1))
    with harness.log.transaction(), pytest.raises(BrokerError, match="committed"):
        harness.broker.submit(permit)
    assert harness.broker.orders() == ()


def test_cancel_a_resting_limit_order(harness: Harness) -> None:
    """A resting limit order cancels (recorded OrderCancelled); cancelling again is an error."""
    order = harness.intent("SPY", 4, order_type=OrderType.LMT, limit_price=Decimal(1),
                   time_in_force=TimeInForce.GTC)  # fmt: skip
    ack = harness.broker.submit(permit_for(harness.log, "p-cancel", order))
    assert ack.parent.status is OrderStatus.SUBMITTED
    (cancelled,) = harness.broker.cancel(proposal_id="p-cancel")
    assert cancelled.status is OrderStatus.CANCELLED
    assert current_state(harness.log, "p-cancel") is OrderState.CANCELLED
    with pytest.raises(OrderNotWorkingError):
        harness.broker.cancel(order_id=ack.parent.order_id)
    with pytest.raises(UnknownOrderError):
        harness.broker.cancel(order_id="no-such-order")


def test_every_lifecycle_event_from_the_broker_names_its_order(harness: Harness) -> None:
    """Each broker event for a proposal carries the order id and the broker label."""
    harness.broker.submit(permit_for(harness.log, "p-ev", harness.intent("SPY", 1)))
    types = (EventType.ORDER_CONFIRMED, EventType.ORDER_FILLED)
    events = harness.log.events(proposal_id="p-ev", types=types)
    assert [e.type for e in events] == [t.value for t in types]
    assert all(e.payload["order"]["order_id"] and e.payload["broker"] for e in events)
