"""What the paper broker checks before it accepts an order, and how it books a fill.

:func:`rejection` runs a table of ``check_*`` functions in order; the first reason wins. They are
what a real broker would refuse: an unknown account or symbol, a non-positive quantity, missing
prices, a foreign currency, a DAY/IOC order while the market is closed, not enough funds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from workbench.brokers.base import BrokerOrder, Fill, OrderRole, OrderStatus
from workbench.brokers.paper_rules import Book, apply_fill, commission, market_price
from workbench.errors import MarketDataError
from workbench.models import (
    MAX_QUANTITY,
    OrderType,
    Side,
    SubmitPermit,
    TimeInForce,
)

if TYPE_CHECKING:
    from workbench.brokers.paper import PaperBroker

Check = Callable[["PaperBroker", SubmitPermit, datetime], str | None]


def check_account(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    account = permit.intent.account
    return None if account in broker.accounts() else f"unknown account {account}"


def check_quantity(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    quantity = Decimal(permit.intent.quantity)
    if quantity.is_finite() and 0 < quantity <= MAX_QUANTITY:
        return None
    return f"quantity must be positive, got {quantity}"


def check_prices(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    intent = permit.intent
    needs_limit = intent.order_type in (OrderType.LMT, OrderType.STP_LMT)
    needs_stop = intent.order_type in (OrderType.STP, OrderType.STP_LMT)
    for needed, price, name in ((needs_limit, intent.limit_price, "limit"),
                                (needs_stop, intent.stop_price, "stop")):  # fmt: skip
        if needed and (price is None or not price > 0):
            return f"{intent.order_type.value} order needs a positive {name} price"
    stop = permit.protective_stop
    if stop is not None and not stop.stop_price > 0:
        return "the protective stop needs a positive stop price"
    return None


def check_currency(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    currency = permit.intent.instrument.currency
    wanted = broker.config.currency
    return None if currency == wanted else f"currency {currency}: this account trades {wanted}"


def check_symbol(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    symbol = permit.intent.instrument.symbol
    return None if symbol in broker.market.symbols() else f"unknown symbol {symbol}"


def check_session(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    tif = permit.intent.time_in_force
    if tif is TimeInForce.GTC or broker.market.calendar.session_at(now) is not None:
        return None
    when = now.strftime("%A %Y-%m-%d %H:%M %Z")
    return f"market closed ({when}): a {tif.value} order needs an open NYSE session"


def check_funds(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    """Refuse an order that adds exposure beyond the initial margin the equity can carry."""
    intent = permit.intent
    try:
        snapshot = broker.portfolio(intent.account)
        reference = broker.mark(intent.symbol, now)
    except MarketDataError as exc:
        return f"no market data: {exc}"
    held = snapshot.position(intent.symbol)
    held_qty = held.quantity if held else Decimal(0)
    after = held_qty + intent.side.sign * intent.quantity
    if abs(after) <= abs(held_qty):
        return None
    price = _estimate(broker, permit, reference)
    fee = commission(broker.config, intent.quantity, price)
    held_value = abs(held.market_value) if held else Decimal(0)
    gross_after = snapshot.gross_exposure - held_value + abs(after) * price
    equity_after = snapshot.net_liquidation - fee - intent.quantity * abs(price - reference)
    needed = gross_after * broker.config.initial_margin
    if equity_after >= needed:
        return None
    return f"insufficient funds: needs {needed:.2f} initial margin, equity after {equity_after:.2f}"


def _estimate(broker: PaperBroker, permit: SubmitPermit, reference: Decimal) -> Decimal:
    intent = permit.intent
    taken = market_price(intent.side, reference, broker.market.spread_bps,
                         broker.config.slippage_bps)  # fmt: skip
    worst = intent.limit_price or intent.stop_price
    return taken if worst is None else max(worst, taken) if intent.side is Side.BUY else worst


CHECKS: tuple[Check, ...] = (
    check_account,
    check_quantity,
    check_prices,
    check_currency,
    check_symbol,
    check_session,
    check_funds,
)


def rejection(broker: PaperBroker, permit: SubmitPermit, now: datetime) -> str | None:
    """The first reason a broker would refuse this order, or None."""
    for check in CHECKS:
        reason = check(broker, permit, now)
        if reason is not None:
            return reason
    return None


def parent_order(permit: SubmitPermit, order_id: str, now: datetime) -> BrokerOrder:
    """The broker order for the permit's intent, working."""
    intent = permit.intent
    return BrokerOrder(
        order_id=order_id,
        proposal_id=permit.proposal_id,
        order_ref=permit.order_ref,
        account=intent.account,
        instrument=intent.instrument,
        role=OrderRole.PARENT,
        side=intent.side,
        quantity=intent.quantity,
        order_type=intent.order_type,
        limit_price=intent.limit_price,
        stop_price=intent.stop_price,
        time_in_force=intent.time_in_force,
        status=OrderStatus.SUBMITTED,
        created_at=now,
        updated_at=now,
    )


def stop_child(permit: SubmitPermit, parent: BrokerOrder, order_id: str) -> BrokerOrder | None:
    """The bracket's protective stop (GTC, opposite side), held until the parent is done."""
    stop = permit.protective_stop
    if stop is None:
        return None
    return BrokerOrder(
        order_id=order_id,
        proposal_id=permit.proposal_id,
        order_ref=permit.order_ref,
        account=parent.account,
        instrument=parent.instrument,
        role=OrderRole.PROTECTIVE_STOP,
        parent_id=parent.order_id,
        oca_group=f"OCA-{permit.proposal_id}",
        side=Side.SELL if parent.side is Side.BUY else Side.BUY,
        quantity=parent.quantity,
        order_type=OrderType.STP if stop.limit_price is None else OrderType.STP_LMT,
        limit_price=stop.limit_price,
        stop_price=stop.stop_price,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.PRE_SUBMITTED,
        created_at=parent.created_at,
        updated_at=parent.created_at,
    )


def execute(
    broker: PaperBroker, order: BrokerOrder, quantity: Decimal, price: Decimal, when: datetime
) -> tuple[Fill, Book, Decimal]:
    """The fill, the position's new book and the account's new cash for one execution."""
    fee = commission(broker.config, quantity, price)
    book = broker.store.book(order.account, order.instrument.symbol)
    book, realized = apply_fill(book, order.side, quantity, price, fee)
    account = broker.store.account(order.account)
    assert account is not None
    cash = account.cash - order.side.sign * quantity * price - fee
    fill = Fill(
        exec_id=f"{order.order_id}.{broker.store.fill_count(order.order_id) + 1}",
        order_id=order.order_id,
        proposal_id=order.proposal_id,
        order_ref=order.order_ref,
        account=order.account,
        instrument=order.instrument,
        side=order.side,
        quantity=quantity,
        price=price,
        commission=fee,
        currency=account.currency,
        realized_pnl=realized,
        time=when,
    )
    return fill, book, cash
