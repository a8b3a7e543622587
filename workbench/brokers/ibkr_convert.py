"""The border between ib_async's camelCase objects and the workbench's models. No I/O.

IB's floats become Decimals through their shortest text (``Decimal(str(x))``: the number IB
wrote), IB's empty markers (NaN, -1, UNSET_DOUBLE) become None, and anything the workbench needs
that IB did not give is a fault, never a default. Prices go to IB as Decimals (ib_async writes
them as text), quantities as whole numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from ib_async import (
    AccountValue,
    BarData,
    Contract,
    ContractDetails,
    Order,
    PortfolioItem,
    Stock,
    Ticker,
    Trade,
)
from ib_async import Fill as IbFill
from ib_async.util import UNSET_DOUBLE

from workbench.brokers.ibkr_reconcile import SIDES, BrokerView, SeenFill, SeenOrder
from workbench.errors import BrokerError, MarketDataError
from workbench.marketdata import Bar
from workbench.models import (
    Instrument,
    InstrumentType,
    MarketSnapshot,
    OrderType,
    PortfolioSnapshot,
    Position,
    QuoteFeed,
)
from workbench.orders import BrokerOrder

IB_ORDER_TYPES = {
    OrderType.MKT: "MKT",
    OrderType.LMT: "LMT",
    OrderType.STP: "STP",
    OrderType.STP_LMT: "STP LMT",
}
FEEDS = {1: QuoteFeed.LIVE, 2: QuoteFeed.FROZEN, 3: QuoteFeed.DELAYED, 4: QuoteFeed.DELAYED_FROZEN}
STOCK_TYPES = {"ETF": InstrumentType.ETF}  # every other IB stock type is a plain STK
COMPLETED = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


def number(value: float | str | None) -> Decimal | None:
    """An IB number as a Decimal, or None for IB's empty markers (NaN, UNSET, -1 prices)."""
    if value is None or value == "" or value == UNSET_DOUBLE:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    if not result.is_finite():
        return None
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result


def price(value: float | None) -> Decimal | None:
    """A price IB quoted: positive, else None (IB sends -1 for an empty side)."""
    found = number(value)
    return found if found is not None and found > 0 else None


# -- contracts -----------------------------------------------------------------------------------


def contract_for(instrument: Instrument) -> Contract:
    """The IB stock contract for an instrument of ours (qualified ones carry their conId)."""
    if instrument.type not in (InstrumentType.STK, InstrumentType.ETF):
        raise BrokerError(f"{instrument.symbol}: the IBKR adapter trades stocks and ETFs only,"
                          f" not {instrument.type.value}")  # fmt: skip
    return Stock(
        instrument.symbol,
        instrument.exchange,
        instrument.currency,
        primaryExchange=instrument.primary_exchange or "",
        conId=instrument.con_id or 0,
    )


def instrument_from(symbol: str, details: Sequence[ContractDetails]) -> Instrument:
    """Our instrument from IB's contract details (exactly one match, a US-style stock)."""
    if len(details) != 1 or details[0].contract is None:
        raise MarketDataError(symbol, f"IB returned {len(details)} contracts for it: ambiguous")
    found, contract = details[0], details[0].contract
    if contract.secType != "STK" or contract.symbol != symbol:
        raise MarketDataError(symbol, f"IB qualified it as {contract.secType} {contract.symbol}")
    return Instrument(
        type=STOCK_TYPES.get(found.stockType, InstrumentType.STK),
        symbol=symbol,
        exchange="SMART",
        currency=contract.currency,
        primary_exchange=contract.primaryExchange or None,
        con_id=contract.conId,
    )


# -- orders --------------------------------------------------------------------------------------


def ib_order(order: BrokerOrder, ib_order_id: int, *, parent_id: int, transmit: bool) -> Order:
    """The IB order for one of our broker orders (account and orderRef set, prices as text)."""
    if order.quantity != order.quantity.to_integral_value():
        raise BrokerError(f"{order.order_id}: IB stock orders are in whole shares")
    return Order(
        orderId=ib_order_id,
        action=order.side.value,
        totalQuantity=float(order.quantity),
        orderType=IB_ORDER_TYPES[order.order_type],
        lmtPrice=order.limit_price if order.limit_price is not None else UNSET_DOUBLE,
        auxPrice=order.stop_price if order.stop_price is not None else UNSET_DOUBLE,
        tif=order.time_in_force.value,
        account=order.account,
        orderRef=order.order_ref,
        transmit=transmit,
        parentId=parent_id,
    )


# -- account -------------------------------------------------------------------------------------

ACCOUNT_TAGS = {
    "net_liquidation": "NetLiquidation",
    "cash": "TotalCashValue",
    "available_funds": "AvailableFunds",
    "buying_power": "BuyingPower",
    "maint_margin": "MaintMarginReq",
    "init_margin": "InitMarginReq",
}


def account_figures(
    values: Iterable[AccountValue], account: str, currency: str
) -> dict[str, Decimal]:
    """The account's money figures in ``currency`` by our field name; a missing one is a fault."""
    by_tag = {v.tag: v.value for v in values if v.account == account and v.currency == currency}
    figures: dict[str, Decimal] = {}
    for field, tag in ACCOUNT_TAGS.items():
        found = number(by_tag.get(tag))
        if found is None:
            raise BrokerError(f"IB sent no {tag} in {currency} for account {account}")
        figures[field] = found
    return figures


def positions_from(
    items: Iterable[PortfolioItem], types: dict[int, InstrumentType]
) -> tuple[Position, ...]:
    """Our positions from IB's portfolio items (flat ones dropped); ``types`` by conId."""
    found = []
    for item in sorted(items, key=lambda i: i.contract.symbol):
        quantity, mark = number(item.position), price(item.marketPrice)
        if quantity is None or quantity == 0:
            continue
        symbol = item.contract.symbol
        if mark is None:
            raise MarketDataError(symbol, "IB marks the position at no price")
        instrument = Instrument(
            type=types.get(item.contract.conId, InstrumentType.STK),
            symbol=symbol,
            exchange="SMART",
            currency=item.contract.currency,
            primary_exchange=item.contract.primaryExchange or None,
            con_id=item.contract.conId,
        )
        cost = abs(number(item.averageCost) or Decimal(0))
        found.append(Position(instrument=instrument, quantity=quantity, avg_cost=cost,
                              market_price=mark))  # fmt: skip
    return tuple(found)


def portfolio_from(
    figures: dict[str, Decimal],
    positions: tuple[Position, ...],
    *,
    account: str,
    currency: str,
    at: datetime,
    label: str,
) -> PortfolioSnapshot:
    return PortfolioSnapshot(
        account=account,
        currency=currency,
        positions=positions,
        cash=figures["cash"],
        net_liquidation=figures["net_liquidation"],
        available_funds=figures["available_funds"],
        buying_power=max(Decimal(0), figures["buying_power"]),
        maint_margin=figures["maint_margin"],
        init_margin=figures["init_margin"],
        timestamp=at,
        broker=label,
    )


# -- market data ---------------------------------------------------------------------------------


def snapshot_from(
    instrument: Instrument, ticker: Ticker, *, label: str, synthetic: bool
) -> MarketSnapshot:
    """A quote dated by the tick time IB sent (``lastTimestamp``, or ``delayedLastTimestamp`` for
    delayed data), never by when it arrived; labelled with its feed (live, frozen, delayed)."""
    feed = FEEDS.get(ticker.marketDataType)
    if feed is None:
        raise MarketDataError(
            instrument.symbol, f"unknown market data type {ticker.marketDataType}"
        )
    delayed = feed in (QuoteFeed.DELAYED, QuoteFeed.DELAYED_FROZEN)
    stamp = ticker.delayedLastTimestamp if delayed else ticker.lastTimestamp
    if stamp is None:
        raise MarketDataError(instrument.symbol, f"IB's {feed.value} quote carries no tick time:"
                              " its age cannot be judged")  # fmt: skip
    bid, ask = price(ticker.bid), price(ticker.ask)
    if bid is not None and ask is not None and bid > ask:
        raise MarketDataError(instrument.symbol, f"IB quotes a crossed market ({bid} > {ask})")
    source = label if feed is QuoteFeed.LIVE else f"{label}, {feed.value} data"
    return MarketSnapshot(
        instrument=instrument,
        bid=bid,
        ask=ask,
        last=price(ticker.last),
        close=price(ticker.close),
        timestamp=stamp.astimezone(UTC),
        synthetic=synthetic,
        source=source,
        feed=feed,
    )


def bars_from(
    symbol: str, found: Iterable[BarData], *, through: date, label: str, synthetic: bool
) -> list[Bar]:
    """Daily bars up to ``through`` (a session still trading is dropped), oldest first."""
    bars = []
    for b in found:
        day = b.date.date() if isinstance(b.date, datetime) else b.date
        if day > through:
            continue
        prices = [price(x) for x in (b.open, b.high, b.low, b.close)]
        if any(p is None for p in prices):
            raise MarketDataError(symbol, f"IB's bar for {day} has no price")
        opened, high, low, close = (p for p in prices if p is not None)
        volume = max(0, int(b.volume))
        bars.append(Bar(symbol=symbol, day=day, open=opened, high=high, low=low, close=close,
                        volume=volume, synthetic=synthetic, source=label))  # fmt: skip
    return sorted(bars, key=lambda b: b.day)


# -- reconciliation ------------------------------------------------------------------------------


def seen_order(trade: Trade) -> SeenOrder | None:
    """An order IB listed (open, or completed: orderId 0), as the reconciliation reads it;
    None for one without a usable side or size."""
    order, status = trade.order, trade.orderStatus
    side, quantity = SIDES.get(order.action), number(order.totalQuantity)
    if side is None or quantity is None:
        return None
    return SeenOrder(
        client_id=order.clientId,
        order_id=order.orderId,
        perm_id=status.permId or order.permId or None,
        order_ref=order.orderRef or "",
        symbol=trade.contract.symbol,
        side=side,
        quantity=quantity,
        order_type=order.orderType,
        status=status.status,
        open=status.status not in COMPLETED,
    )


def seen_fill(fill: IbFill, currency: str) -> SeenFill | None:
    """An execution IB listed; None for one without a usable size or price."""
    ex, report = fill.execution, fill.commissionReport
    shares, at = number(ex.shares), price(ex.price)
    side = SIDES.get(ex.side)
    if shares is None or at is None or side is None or ex.time.tzinfo is None:
        return None
    commission = number(report.commission) if report.execId else None
    realized = number(report.realizedPNL) if report.execId else None
    return SeenFill(
        exec_id=ex.execId, client_id=ex.clientId, order_id=ex.orderId, perm_id=ex.permId or None,
        order_ref=ex.orderRef or "", side=side, shares=shares, price=at, time=ex.time,
        commission=abs(commission) if commission is not None else None,
        currency=report.currency or currency,
        realized_pnl=realized if realized is not None else Decimal(0),
    )  # fmt: skip


def broker_view(trades: Iterable[Trade], fills: Iterable[IbFill], currency: str) -> BrokerView:
    """Everything ib_async holds about orders and executions on this connection."""
    orders = (seen_order(t) for t in trades)
    seen = (seen_fill(f, currency) for f in fills)
    return BrokerView(tuple(o for o in orders if o is not None),
                      tuple(f for f in seen if f is not None))  # fmt: skip
