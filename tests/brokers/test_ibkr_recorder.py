"""How the IBKR recorder folds IB's status words into an order: never backwards."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from workbench.brokers.ibkr_recorder import IB_STATUS, next_status
from workbench.models import Instrument, InstrumentType, OrderType, Side, TimeInForce
from workbench.orders import DONE_STATES, BrokerOrder, OrderRole, OrderStatus

S = OrderStatus
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)


def order(status: OrderStatus, filled: int = 0) -> BrokerOrder:
    return BrokerOrder(
        order_id="IB-1-1", proposal_id="p1", order_ref="wb:p1", account="DU1234567",
        instrument=Instrument(type=InstrumentType.ETF, symbol="SPY"), role=OrderRole.PARENT,
        side=Side.BUY, quantity=Decimal(10), order_type=OrderType.MKT,
        time_in_force=TimeInForce.DAY, status=status, filled_quantity=Decimal(filled),
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


@pytest.mark.parametrize("done", sorted(DONE_STATES))
@pytest.mark.parametrize("word", sorted(IB_STATUS))
def test_a_done_order_stays_done_whatever_ib_says_later(done: OrderStatus, word: str) -> None:
    """Filled, cancelled or rejected is final: a late or repeated status word changes nothing."""
    assert next_status(order(done), IB_STATUS[word], acked=True) is None


@pytest.mark.parametrize(
    ("status", "filled", "target", "acked", "expected"),
    [
        (S.SUBMITTED, 0, S.SUBMITTED, False, S.SUBMITTED),  # the first acknowledgement
        (S.SUBMITTED, 0, S.SUBMITTED, True, None),  # a repeat: nothing new
        (S.PRE_SUBMITTED, 0, S.SUBMITTED, True, S.SUBMITTED),  # a held stop starts working
        (S.PARTIALLY_FILLED, 4, S.SUBMITTED, True, None),  # fills, not words, say how much
        (S.PARTIALLY_FILLED, 4, S.REJECTED, True, S.CANCELLED),  # the rest is what ends
        (S.SUBMITTED, 0, S.CANCELLED, True, S.CANCELLED),
        (S.SUBMITTED, 0, S.REJECTED, False, S.REJECTED),  # IB refused it outright
    ],
)
def test_status_words_move_an_order_forward_only(
    status: OrderStatus, filled: int, target: OrderStatus, acked: bool, expected: object
) -> None:
    """Each IB word moves the order as IB means it, never back over a fill."""
    assert next_status(order(status, filled), target, acked=acked) is expected
