"""Paper-broker specifics: book-keeping invariants, liquidity, expiry, restarts, its pure rules."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from brokerkit import TRADING_NOW, intent, permit_for, with_stop
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.audit import AuditLog, EventType
from workbench.brokers.base import OrderStatus, realized_pnl, unrealized_pnl
from workbench.brokers.paper import PaperBroker
from workbench.brokers.paper_rules import Book, PaperConfig, apply_fill, commission
from workbench.clock import FixedClock
from workbench.errors import OrderRejectedError
from workbench.keys import ApprovalKey
from workbench.lifecycle import OrderState, current_state
from workbench.models import OrderType, Side, TimeInForce
from workbench.sessions import xnys

START = Decimal(1_000_000)
THIN = PaperConfig(max_volume_fraction=Decimal("0.000005"))  # SPY: ~300 shares a day


@pytest.fixture
def paper(log: AuditLog) -> Iterator[PaperBroker]:
    """A paper broker on the test home's audit log."""
    yield PaperBroker(log, key=ApprovalKey(log.path.parent))


def _thin(log: AuditLog) -> PaperBroker:
    return PaperBroker(log, config=THIN, key=ApprovalKey(log.path.parent))


def _closes(after: datetime, n: int) -> list[datetime]:
    sessions = xnys().between(after, after + timedelta(days=3 * n))
    return [s.close for s in sessions if s.close > after][:n]


def check_books(broker: PaperBroker) -> None:
    """The invariants every sequence of fills must keep."""
    snap = broker.portfolio("PAPER1")
    fills = broker.executions()
    assert snap.net_liquidation == snap.cash + sum((p.market_value for p in snap.positions), 0)
    orders = {o.order_id: o for o in broker.orders()}
    assert {f.order_id for f in fills} <= set(orders)  # no fill without an order
    for order in orders.values():
        mine = sum((f.quantity for f in fills if f.order_id == order.order_id), Decimal(0))
        assert mine == order.filled_quantity <= order.quantity
    for symbol in {f.instrument.symbol for f in fills}:
        signed = sum((f.signed_quantity for f in fills if f.instrument.symbol == symbol), 0)
        held = snap.position(symbol)
        assert (held.quantity if held else 0) == signed
    spent = sum((f.signed_quantity * f.price + f.commission for f in fills), Decimal(0))
    assert snap.cash == START - spent
    pnl = realized_pnl(fills) + unrealized_pnl(snap)
    assert abs(snap.net_liquidation - START - pnl) < Decimal("1e-12")


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["SPY", "TLT", "AAPL", "KO", "GLD"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 400),
        st.sampled_from([None, -30, -5, 0, 5, 30]),  # None: market; else limit offset in bps/10
        st.integers(0, 900),  # minutes to move the clock first
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None)
@given(STEPS)
def test_random_fill_sequences_keep_cash_positions_and_nav_consistent(steps: list) -> None:  # type: ignore[type-arg]
    """At every step: NAV = cash + positions, positions = signed fills, no fill without an order."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock(TRADING_NOW)
        log = AuditLog(Path(tmp) / "workbench.sqlite", clock=clock)
        broker = _thin(log)
        for i, (symbol, side, qty, offset, minutes) in enumerate(steps):
            clock.advance(timedelta(minutes=minutes))
            broker.process()
            extra: dict[str, object] = {"side": side, "time_in_force": TimeInForce.GTC}
            if offset is not None:
                ref = broker.market_snapshot(intent(symbol).instrument).reference_price
                assert ref is not None
                limit = (ref * (1 + Decimal(offset) / 1000)).quantize(Decimal("0.01"))
                extra |= {"order_type": OrderType.LMT, "limit_price": limit}
            with contextlib.suppress(OrderRejectedError):  # e.g. insufficient funds
                broker.submit(permit_for(log, f"p{i}", intent(symbol, qty, **extra)))
            check_books(broker)
        log.close()


def test_fills_are_capped_by_the_days_volume_and_continue_next_session(log: AuditLog) -> None:
    """A big order fills at most max_volume_fraction of each day's volume, then completes later."""
    broker = _thin(log)
    order = intent("SPY", 1000, time_in_force=TimeInForce.GTC)
    ack = broker.submit(permit_for(log, "p-big", order))
    assert ack.parent.status is OrderStatus.PARTIALLY_FILLED and ack.parent.filled_quantity > 0
    assert current_state(log, "p-big") is OrderState.PARTIALLY_FILLED
    for close in _closes(log.clock.now(), 10):
        log.clock.set(close)  # type: ignore[attr-defined]
        broker.process()
    by_day: dict[object, Decimal] = {}
    for fill in broker.executions():
        by_day[fill.time.date()] = by_day.get(fill.time.date(), Decimal(0)) + fill.quantity
    for day, quantity in by_day.items():
        bar = broker.market.bar("SPY", day)  # type: ignore[arg-type]
        assert quantity <= THIN.max_volume_fraction * bar.volume
    assert len(by_day) > 1 and sum(by_day.values()) == 1000
    assert current_state(log, "p-big") is OrderState.FILLED


def test_day_order_expires_at_the_close(paper: PaperBroker, clock: FixedClock) -> None:
    """A DAY limit order that never becomes marketable is cancelled at the session's close."""
    order = intent("SPY", 5, order_type=OrderType.LMT, limit_price=Decimal(1))
    paper.submit(permit_for(paper.log, "p-day", order))
    clock.set(datetime(2026, 11, 18, 21, 0, tzinfo=UTC))
    (update,) = paper.process()
    assert update.status is OrderStatus.CANCELLED and "expired" in update.message
    assert current_state(paper.log, "p-day") is OrderState.CANCELLED


def test_ioc_remainder_is_cancelled_at_once(log: AuditLog) -> None:
    """An IOC order fills what liquidity allows now and the rest is cancelled immediately."""
    broker = _thin(log)
    ack = broker.submit(permit_for(log, "p-ioc", intent("SPY", 1000, time_in_force="IOC")))
    assert ack.parent.status is OrderStatus.CANCELLED and 0 < ack.parent.filled_quantity < 1000


def test_resting_limit_fills_when_the_price_comes_to_it(
    paper: PaperBroker, clock: FixedClock
) -> None:
    """A buy limit under the market rests, then fills at or below its limit when touched."""
    ref = paper.market_snapshot(intent().instrument).reference_price
    assert ref is not None
    limit = (ref * Decimal("0.995")).quantize(Decimal("0.01"))
    order = intent("SPY", 5, order_type=OrderType.LMT, limit_price=limit, time_in_force="GTC")
    ack = paper.submit(permit_for(paper.log, "p-lmt", order))
    assert ack.parent.status is OrderStatus.SUBMITTED
    for close in _closes(clock.now(), 30):
        clock.set(close)
        paper.process()
        if not paper.open_orders():
            break
    (fill,) = paper.executions()
    assert fill.price <= limit and current_state(paper.log, "p-lmt") is OrderState.FILLED


def test_gtc_order_on_a_saturday_fills_at_mondays_open(
    paper: PaperBroker, clock: FixedClock
) -> None:
    """A GTC market order sent on a weekend rests, then fills at the next session's open."""
    clock.set(datetime(2026, 11, 21, 15, 30, tzinfo=UTC))
    ack = paper.submit(permit_for(paper.log, "p-gtc", intent("SPY", 3, time_in_force="GTC")))
    assert ack.parent.status is OrderStatus.SUBMITTED and not paper.executions()
    clock.set(datetime(2026, 11, 23, 16, 0, tzinfo=UTC))
    paper.process()
    (fill,) = paper.executions()
    monday = paper.market.bar("SPY", fill.time.date())
    assert fill.price == (monday.open * Decimal("1.0002")).quantize(
        Decimal("0.01"), "ROUND_CEILING"
    )


def test_insufficient_funds_is_rejected(paper: PaperBroker) -> None:
    """An order whose margin the account's equity cannot carry is rejected with the reason."""
    with pytest.raises(OrderRejectedError, match="insufficient funds"):
        paper.submit(permit_for(paper.log, "p-huge", intent("SPY", 100_000)))
    assert current_state(paper.log, "p-huge") is OrderState.REJECTED


def test_every_fill_is_recorded_in_an_audit_event(paper: PaperBroker, clock: FixedClock) -> None:
    """Each fill in the broker's tables appears in exactly one audit event payload."""
    permit = permit_for(paper.log, "p-rec", with_stop(intent("SPY", 5), Decimal(600)))
    paper.submit(permit)
    paper.submit(permit_for(paper.log, "p-rec2", intent("KO", 5, side=Side.SELL)))
    logged = [e.payload["fill"]["exec_id"] for e in paper.log.events() if e.payload.get("fill")]
    assert sorted(logged) == sorted(f.exec_id for f in paper.executions())


def test_parent_cancelled_after_a_partial_fill_releases_its_stop_for_that_quantity(
    log: AuditLog,
) -> None:
    """Cancelling a part-filled parent leaves its protective stop working for the filled part."""
    broker = _thin(log)
    order = with_stop(intent("SPY", 1000, time_in_force="GTC"), Decimal(500))
    ack = broker.submit(permit_for(log, "p-part", order))
    broker.cancel(order_id=ack.parent.order_id)
    (stop,) = broker.open_orders()
    assert stop.status is OrderStatus.SUBMITTED and stop.quantity == ack.parent.filled_quantity


def test_reopening_continues_exactly_like_never_closing(tmp_path: Path) -> None:
    """A broker closed and reopened mid-run ends in the same state as one that never closed."""

    def run(home: Path, restart: bool) -> tuple[object, ...]:
        clock = FixedClock(TRADING_NOW)
        broker = PaperBroker.open(home, clock, config=THIN)
        order = with_stop(intent("SPY", 900, time_in_force="GTC"), Decimal(630))
        broker.submit(permit_for(broker.log, "p1", order))
        for close in _closes(clock.now(), 6):
            if restart and close.day == 19:
                broker.close()
                broker = PaperBroker.open(home, clock, config=THIN)
            clock.set(close)
            broker.process()
        state = (broker.portfolio("PAPER1"), broker.orders(), broker.executions(), broker.updates())
        broker.close()
        return state

    assert run(tmp_path / "a", restart=False) == run(tmp_path / "b", restart=True)


def test_account_is_opened_once_with_an_event(home: Path, clock: FixedClock) -> None:
    """The paper account is created once, recorded by PaperAccountOpened; reopening adds none."""
    for _ in range(2):
        broker = PaperBroker.open(home, clock)
        assert broker.portfolio("PAPER1").cash == START
        broker.close()
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        assert len(log.events(types=(EventType.PAPER_ACCOUNT_OPENED,))) == 1


def test_bars_never_include_the_session_still_trading(paper: PaperBroker) -> None:
    """In session, the broker's bars end with yesterday's: no look-ahead into today's close."""
    bars = paper.bars("SPY", TRADING_NOW.date(), 3)
    assert bars[-1].day == datetime(2026, 11, 17).date()


@pytest.mark.parametrize(
    ("quantity", "price", "expected"),
    [
        (100, "50", "1.0000"),  # 0.50 per share is below the 1.00 minimum
        (1000, "50", "5.0000"),  # per share
        (10, "5", "0.5000"),  # the 1% of notional cap beats the minimum
        (333, "100", "1.6650"),
    ],
)
def test_commission_per_share_with_min_and_max(quantity: int, price: str, expected: str) -> None:
    """Commission is 0.005/share, at least 1.00, at most 1% of the notional."""
    assert commission(PaperConfig(), Decimal(quantity), Decimal(price)) == Decimal(expected)


@pytest.mark.parametrize(
    ("book", "side", "qty", "price", "fee", "after", "realized"),
    [
        ((0, 0), Side.BUY, 10, "100", "1", (10, "100.1"), "0"),
        ((10, "100.1"), Side.SELL, 4, "110", "1", (6, "100.1"), "38.6"),
        ((10, "100"), Side.SELL, 15, "90", "3", (-5, "89.8"), "-102"),
        ((-5, "90"), Side.BUY, 5, "80", "1", (0, "0"), "49"),
    ],
    ids=["open", "reduce", "flip", "cover"],
)
def test_average_cost_and_realised_pnl(
    book: tuple[object, object], side: Side, qty: int, price: str, fee: str,
    after: tuple[object, object], realized: str,
) -> None:  # fmt: skip
    """Opening adds commission to the average cost; closing realises P&L net of commission."""
    start = Book(Decimal(str(book[0])), Decimal(str(book[1])))
    got, pnl = apply_fill(start, side, Decimal(qty), Decimal(price), Decimal(fee))
    assert (got.quantity, got.avg_cost) == (Decimal(str(after[0])), Decimal(str(after[1])))
    assert pnl == Decimal(realized)


def test_one_catch_up_over_many_sessions_fills_parent_then_its_stop(
    paper: PaperBroker, clock: FixedClock
) -> None:
    """process() after a long gap replays each session: the stop works from the parent's fill."""
    clock.set(datetime(2026, 11, 21, 15, 30, tzinfo=UTC))  # Saturday: the GTC parent rests
    monday = paper.market.bar("TLT", datetime(2026, 11, 23).date())
    stop = (monday.low * Decimal("0.98")).quantize(Decimal("0.01"))  # not hit on Monday
    order = with_stop(intent("TLT", 10, time_in_force="GTC"), stop)
    paper.submit(permit_for(paper.log, "p-gap", order))
    clock.set(datetime(2026, 12, 31, 22, 0, tzinfo=UTC))
    paper.process()
    parent_fill, stop_fill = paper.executions()
    assert parent_fill.time < stop_fill.time < clock.now()
    assert stop_fill.time.date() > parent_fill.time.date()
    assert parent_fill.price > stop >= stop_fill.price
    assert paper.portfolio("PAPER1").position("TLT") is None and not paper.open_orders()


def test_paper_checks_still_reject_a_quantity_that_slipped_past_validation(
    paper: PaperBroker,
) -> None:
    """Behind the permit check, the broker's own guard names a zero quantity (defence in depth)."""
    from workbench import models
    from workbench.brokers import paper_checks

    good = intent("SPY", 1)
    bad = models.OrderIntent.model_construct(**{**dict(good), "quantity": Decimal(0)})
    permit = models.SubmitPermit.model_construct(
        proposal_id="p0", intent=bad, intent_hash="0" * 64, submitted_seq=1, order_ref="wb:p0",
        protective_stop=None,
    )  # fmt: skip
    assert paper_checks.rejection(paper, permit, TRADING_NOW) == "quantity must be positive, got 0"
