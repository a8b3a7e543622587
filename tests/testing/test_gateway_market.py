"""Contracts and market data from the gateway: qualification, snapshots with tick times, delayed
and frozen data, streaming updates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from ib_async import IB, Contract, Stock
from ib_async.wrapper import RequestError

from testing.gwkit import START, codes, record_errors, wait_until
from workbench.testing import Gateway
from workbench.testing.book import con_id_for


def test_qualify_fills_in_conid_exchange_and_currency(ib: IB) -> None:
    """A universe symbol qualifies with its conId, primary exchange and currency."""
    spy, aapl = Stock("SPY", "SMART", "USD"), Stock("AAPL", "SMART", "USD")
    assert ib.qualifyContracts(spy, aapl) == [spy, aapl]
    assert spy.conId == con_id_for("SPY") and spy.primaryExchange == "ARCA"
    assert aapl.primaryExchange == "NASDAQ" and aapl.currency == "USD"
    assert spy.exchange == "SMART" and spy.secType == "STK"


def test_qualify_by_conid_alone(ib: IB) -> None:
    """A bare conId is enough to qualify."""
    contract = Contract(conId=con_id_for("QQQ"))
    ib.qualifyContracts(contract)
    assert contract.symbol == "QQQ" and contract.primaryExchange == "NASDAQ"


@pytest.mark.parametrize(
    "contract",
    [
        Stock("NOPE", "SMART", "USD"),
        Stock("SPY", "SMART", "EUR"),
        Stock("SPY", "NYSE", "USD"),
        Contract(conId=1),
    ],
    ids=["unknown-symbol", "wrong-currency", "wrong-exchange", "unknown-conid"],
)
def test_qualify_refuses_anything_outside_the_universe_with_200(ib: IB, contract: Contract) -> None:
    """Unknown or inconsistent contracts raise RequestError 200."""
    with pytest.raises(RequestError) as caught:
        ib.qualifyContracts(contract)
    assert caught.value.code == 200


def test_snapshot_carries_the_prices_and_the_tick_time_the_test_set(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reqTickers: bid/ask/last/close as set, lastTimestamp = the time they were set, live."""
    when = START - timedelta(minutes=3)
    gateway.set_quote("SPY", bid="601.10", ask="601.20", last="601.15", close="598", at=when)
    (ticker,) = ib.reqTickers(spy)
    assert (ticker.bid, ticker.ask, ticker.last, ticker.close) == (601.10, 601.20, 601.15, 598)
    assert ticker.lastTimestamp == when
    assert ticker.marketDataType == 1
    assert gateway.sent("tickSnapshotEnd")


def test_without_a_subscription_live_data_is_refused_with_354(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """An account without market data gets error 354 for live data."""
    gateway.set_live_data(False)
    with pytest.raises(RequestError) as caught:
        ib.reqTickers(spy)
    assert caught.value.code == 354


def test_delayed_data_is_labelled_type_3_and_dated_15_minutes_back(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """Not subscribed + reqMarketDataType(3): warning 10167, type 3, delayed ticks and time."""
    gateway.set_live_data(False, "SPY")
    gateway.set_price("SPY", "600", at=START)
    errors = record_errors(ib)
    ib.reqMarketDataType(3)
    (ticker,) = ib.reqTickers(spy)
    assert ticker.marketDataType == 3
    assert ticker.last == 600 and ticker.bid == 599.99
    assert ticker.delayedLastTimestamp == START - timedelta(minutes=15)
    assert ticker.lastTimestamp is None
    assert 10167 in codes(errors)


def test_market_data_type_3_still_gives_live_data_where_subscribed(
    gateway: Gateway, ib: IB
) -> None:
    """With type 3 requested, a subscribed symbol stays live and an unsubscribed one is delayed."""
    gateway.set_live_data(False, "QQQ")
    spy, qqq = Stock("SPY", "SMART", "USD"), Stock("QQQ", "SMART", "USD")
    ib.qualifyContracts(spy, qqq)
    ib.reqMarketDataType(3)
    live, delayed = ib.reqTickers(spy, qqq)
    assert (live.marketDataType, delayed.marketDataType) == (1, 3)


def test_frozen_data_when_the_market_is_closed_and_asked_for(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """A frozen symbol with reqMarketDataType(2) is labelled type 2."""
    gateway.set_frozen(True, "SPY")
    ib.reqMarketDataType(2)
    (ticker,) = ib.reqTickers(spy)
    assert ticker.marketDataType == 2 and ticker.last == 590


def test_streaming_market_data_follows_the_prices_the_test_sets(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reqMktData streams every change of the book; cancelling stops it."""
    ticker = ib.reqMktData(spy)
    wait_until(ib, lambda: ticker.last == 590)
    gateway.set_price("SPY", "612.5")
    wait_until(ib, lambda: ticker.last == 612.5 and ticker.ask == 612.51)
    ib.cancelMktData(spy)
    gateway.wait_received("cancelMktData")
    before = len(gateway.sent("tickPrice"))
    gateway.set_price("SPY", "613")
    assert len(gateway.sent("tickPrice")) == before


def test_quote_prices_must_be_exact_numbers(gateway: Gateway) -> None:
    """The book refuses floats, negative and non-finite prices, and unknown symbols."""
    with pytest.raises(TypeError):
        gateway.set_quote("SPY", last=600.0)  # type: ignore[arg-type]
    for bad in ("-1", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            gateway.set_quote("SPY", last=bad)
    with pytest.raises(KeyError):
        gateway.set_quote("NOPE", last=Decimal(1))


def test_daily_bars_end_with_the_session_still_trading_and_close_at_the_book(
    gateway: Gateway, ib: IB, spy: Contract
) -> None:
    """reqHistoricalData "1 day": completed sessions (the last closing at the book's close),
    then today's unfinished bar, as IB sends during a session."""
    gateway.set_quote("SPY", close=Decimal("585.00"), last=Decimal("590.00"))
    bars = ib.reqHistoricalData(spy, "", "10 D", "1 day", "TRADES", True)
    days = [b.date for b in bars]
    assert days == sorted(days) and days[-1] == START.date() and len(days) == 8  # Nov 9-18
    assert bars[-2].close == 585.0 and bars[-1].close == 590.0
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    assert gateway.received("reqHistoricalData")[0].fields["durationStr"] == "10 D"


@pytest.mark.allow_ib_log("Error 322")
def test_bars_other_than_daily_are_refused_with_322(ib: IB, spy: Contract) -> None:
    """Only daily bars are emulated: a 5-minute request is refused (322), not left to time out."""
    with pytest.raises(RequestError) as refused:
        ib.reqHistoricalData(spy, "", "1 D", "5 mins", "TRADES", True)
    assert refused.value.code == 322
