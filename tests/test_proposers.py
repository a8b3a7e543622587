"""Proposers: rebalance to targets, signals tables and LLM JSON → OrderIntents (never orders)."""

from __future__ import annotations

import json
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from wbkit import POLICIES

from workbench.audit import AuditLog
from workbench.bridge import SizingRules, smart_stop
from workbench.brokers.paper import PaperBroker
from workbench.errors import ConfigError
from workbench.marketdata import atr
from workbench.models import (
    OrderType,
    PortfolioSnapshot,
    Position,
    Side,
    Source,
)
from workbench.proposers import (
    Market,
    ProposalError,
    SignalsError,
    StopRules,
    Targets,
    from_signals,
    intent_from_json,
    load_targets,
    parse_signals,
    read_signals,
    rebalance,
)

D = Decimal
SIZING = SizingRules(min_order_size=D(1), max_order_size=D(10_000))
STOPS = StopRules(atr_multiplier=D(2), floor=D("0.01"))
HEADER = "ticker,weight,direction,is_propagated,atr_per_share,entry_price"


@pytest.fixture
def paper(log: AuditLog) -> PaperBroker:
    """The real paper broker: its quotes, ATRs and instruments feed the proposers."""
    return PaperBroker(log, key=None)


@pytest.fixture
def market(paper: PaperBroker) -> Market:
    """What a proposer may look at, fetched from the paper broker at the test clock's now."""
    day: date = paper.now().date()
    return Market(
        quote=lambda s: paper.market_snapshot(paper.instrument(s)),
        atr=lambda s: atr(paper.bars(s, day, 15)),
        instrument=paper.instrument,
    )


@pytest.fixture
def targets() -> Targets:
    """The repository's ``policies/targets.yaml``."""
    return load_targets(POLICIES)


def ref(market: Market, symbol: str) -> Decimal:
    price = market.quote(symbol).reference_price
    assert price is not None
    return price


def holding(market: Market, symbol: str, weight: str, nav: Decimal) -> Position:
    """A position worth about ``weight`` of ``nav``, marked at the broker's reference price."""
    price = ref(market, symbol)
    qty = (D(weight) * nav / price).to_integral_value(ROUND_HALF_UP)
    return Position(
        instrument=market.instrument(symbol), quantity=qty, avg_cost=price, market_price=price
    )


def account(
    paper: PaperBroker, positions: tuple[Position, ...], cash: Decimal
) -> PortfolioSnapshot:
    """A snapshot of the paper account holding ``positions`` (NAV = cash + their value)."""
    nav = cash + sum((p.market_value for p in positions), D(0))
    return PortfolioSnapshot(
        account="PAPER1",
        currency="USD",
        positions=positions,
        cash=cash,
        net_liquidation=nav,
        available_funds=cash,
        buying_power=cash,
        timestamp=paper.now(),
        broker=paper.label,
    )


# -- rebalance -------------------------------------------------------------------------------


def test_targets_yaml_loads_strictly(targets: Targets, tmp_path: Path) -> None:
    """The shipped targets load; an unknown key or weights summing above 1 is a ConfigError."""
    assert targets.weights["SPY"] == D("0.08") and targets.drift_band == D("0.01")
    text = (POLICIES / "targets.yaml").read_text()
    (tmp_path / "targets.yaml").write_text(text + "surprise: 1\n")
    with pytest.raises(ConfigError):
        load_targets(tmp_path)
    (tmp_path / "targets.yaml").write_text(text.replace("SPY: 0.08", "SPY: 0.90"))
    with pytest.raises(ConfigError):
        load_targets(tmp_path)


def test_rebalance_from_cash_buys_every_target_capped_with_smart_stops(
    paper: PaperBroker, market: Market, targets: Targets
) -> None:
    """From all cash: one LMT buy per target symbol, each under max_order_notional, limit 5 bps
    through the reference, and a Smart Stop (entry − 2·ATR) attached."""
    portfolio = paper.portfolio("PAPER1")
    intents = rebalance(portfolio, targets, market, SIZING, STOPS)
    assert [i.symbol for i in intents] == sorted(targets.weights)
    for i in intents:
        price = ref(market, i.symbol)
        want = (targets.weights[i.symbol] * portfolio.net_liquidation / price).to_integral_value(
            ROUND_DOWN
        )
        cap = (targets.max_order_notional / price).to_integral_value(ROUND_DOWN)
        assert (i.side, i.order_type, i.source) == (Side.BUY, OrderType.LMT, Source.RULE)
        assert i.quantity == min(want, cap)
        assert i.quantity * price <= targets.max_order_notional
        assert i.limit_price == (price * D("1.0005")).quantize(D("0.01"), ROUND_HALF_UP)
        assert i.protective_stop is not None
        expected_stop = smart_stop(Side.BUY, price, market.atr(i.symbol), D(2))
        assert i.protective_stop.stop_price == expected_stop < price
        assert i.account == "PAPER1" and i.strategy_tag == targets.strategy_tag


def test_rebalance_respects_the_drift_band_and_sells_without_stops(
    paper: PaperBroker, market: Market, targets: Targets
) -> None:
    """Holdings within the band are left alone; one past it is sold toward target, and a
    holding with no target is sold out — neither reducing sell gets a protective stop."""
    nav = D(1_000_000)
    held = (
        holding(market, "SPY", "0.085", nav),  # target 0.08: within the 0.01 band
        holding(market, "QQQ", "0.075", nav),  # target 0.06: 0.015 over, sell
        holding(market, "AAPL", "0.01", nav),  # no target: sell it all
    )
    in_band = ("AGG", "GLD", "IEF", "TLT", "VEA", "VWO", "XLK", "XLV")
    held += tuple(holding(market, s, str(targets.weights[s]), nav) for s in in_band)
    portfolio = account(paper, held, cash=nav - sum((p.market_value for p in held), D(0)))
    intents = {i.symbol: i for i in rebalance(portfolio, targets, market, SIZING, STOPS)}
    assert sorted(intents) == ["AAPL", "QQQ"]
    aapl, qqq = intents["AAPL"], intents["QQQ"]
    assert aapl.side is Side.SELL and aapl.quantity == portfolio.position("AAPL").quantity  # type: ignore[union-attr]
    assert qqq.side is Side.SELL
    assert aapl.protective_stop is None and qqq.protective_stop is None
    assert qqq.limit_price is not None and qqq.limit_price < ref(market, "QQQ")  # through the mid


def test_rebalance_caps_each_order_at_max_order_notional(
    paper: PaperBroker, market: Market, targets: Targets
) -> None:
    """A lower max_order_notional shrinks every order to the most whole shares under it."""
    cap = D(5_000)
    small = targets.model_copy(update={"max_order_notional": cap})
    for i in rebalance(paper.portfolio("PAPER1"), small, market, SIZING, STOPS):
        price = ref(market, i.symbol)
        assert i.quantity * price <= cap < (i.quantity + 1) * price


def test_rebalance_without_protective_stops_attaches_none(
    paper: PaperBroker, market: Market, targets: Targets
) -> None:
    """With protective_stops false the intents carry no stop (the gate will then object)."""
    off = targets.model_copy(update={"protective_stops": False})
    intents = rebalance(paper.portfolio("PAPER1"), off, market, SIZING, STOPS)
    assert intents and all(i.protective_stop is None for i in intents)


def test_from_signals_sizes_from_our_quote_not_the_signals_price(
    paper: PaperBroker, market: Market
) -> None:
    """A signal is sized and priced from the broker's quote; its entry_price is ignored."""
    (signal,) = parse_signals(f"{HEADER}\nSPY,0.01,BUY,true,4,1\n")
    (i,) = from_signals([signal], paper.portfolio("PAPER1"), market, SIZING, STOPS)
    price = ref(market, "SPY")
    assert i.quantity == (D(10_000) / price).to_integral_value(ROUND_DOWN)
    assert i.is_propagated and i.source is Source.SIGNAL
    assert i.protective_stop is not None
    assert i.protective_stop.stop_price == smart_stop(Side.BUY, price, D(4), D(2))


# -- signals tables --------------------------------------------------------------------------


def test_parse_signals_reads_a_good_table() -> None:
    """Each row becomes a LiveSignal with Decimals, a side, a boolean flag and JSON metadata."""
    text = (
        f"{HEADER},metadata\n"
        'SPY,0.05,BUY,false,5.2,590,"{""model"": ""m1""}"\n'
        "QQQ, 0.02 ,SELL,TRUE,6,510,\n"
    )
    spy, qqq = parse_signals(text)
    assert (spy.ticker, spy.weight, spy.direction, spy.is_propagated) == (
        "SPY",
        D("0.05"),
        Side.BUY,
        False,
    )
    assert spy.atr_per_share == D("5.2") and spy.metadata == {"model": "m1"}
    assert (qqq.weight, qqq.direction, qqq.is_propagated, qqq.metadata) == (
        D("0.02"),
        Side.SELL,
        True,
        {},
    )


@pytest.mark.parametrize(
    ("bad_row", "complaint"),
    [
        ("QQQ,abc,BUY,false,6,510", "weight"),
        ("QQQ,nan,BUY,false,6,510", "weight"),
        ("QQQ,NaN,BUY,false,6,510", "weight"),
        ("QQQ,inf,BUY,false,6,510", "weight"),
        ("QQQ,1.5,BUY,false,6,510", "weight"),
        ("QQQ,0.1,HOLD,false,6,510", "direction"),
        ("QQQ,0.1,BUY,maybe,6,510", "is_propagated"),
        ("QQQ,0.1,BUY,false,-1,510", "atr_per_share"),
        ("QQQ,0.1,BUY,false,6,0", "entry_price"),
        ("qqq!,0.1,BUY,false,6,510", "ticker"),
        ("QQQ,0.1,BUY,false,6", "entry_price"),
        ("QQQ,0.1,BUY,false,6,510,surplus", "more values"),
    ],
)
def test_parse_signals_names_the_bad_row(bad_row: str, complaint: str) -> None:
    """A malformed row raises SignalsError naming its (1-based) row and the field at fault."""
    text = f"{HEADER}\nSPY,0.05,BUY,false,5,590\n{bad_row}\n"
    with pytest.raises(SignalsError) as caught:
        parse_signals(text)
    assert caught.value.row == 2
    assert "row 2" in str(caught.value) and complaint in str(caught.value)


@pytest.mark.parametrize(
    ("header", "named"),
    [
        (HEADER + ",colour", "colour"),  # unknown column
        (HEADER.replace(",atr_per_share", ""), "atr_per_share"),  # missing column
        (HEADER.replace("weight", "wieght"), "wieght"),  # misspelt: both unknown and missing
    ],
)
def test_parse_signals_refuses_unknown_or_missing_columns(header: str, named: str) -> None:
    """The header must be exactly the LiveSignal columns (plus optional metadata)."""
    with pytest.raises(SignalsError) as caught:
        parse_signals(f"{header}\nSPY,0.05,BUY,false,5,590,x\n")
    assert caught.value.row is None and named in str(caught.value)


def test_parse_signals_refuses_a_duplicate_ticker() -> None:
    """The same ticker twice is ambiguous: refused, naming the ticker and the second row."""
    text = (
        f"{HEADER}\nSPY,0.05,BUY,false,5,590\nQQQ,0.01,BUY,false,5,510\nSPY,0.02,SELL,false,5,590\n"
    )
    with pytest.raises(SignalsError, match="SPY") as caught:
        parse_signals(text)
    assert caught.value.row == 3


def test_parse_signals_refuses_deeply_nested_metadata_without_recursion_error() -> None:
    """Metadata nested 100,000 levels deep is a SignalsError for its row, not a RecursionError."""
    deep = '"' + "[" * 7_000 + '"'  # one CSV field, quoted
    with pytest.raises(SignalsError, match="row 1: metadata nests deeper"):
        parse_signals(f"{HEADER},metadata\nSPY,0.05,BUY,false,5,590,{deep}\n")


def test_parse_signals_refuses_bad_metadata_json() -> None:
    """metadata that is not JSON is a SignalsError for that row."""
    with pytest.raises(SignalsError, match="row 1: metadata"):
        parse_signals(f"{HEADER},metadata\nSPY,0.05,BUY,false,5,590,{{oops\n")


def test_read_signals_reports_a_missing_file_as_signals_error(tmp_path: Path) -> None:
    """An unreadable signals file is a SignalsError, not an empty list."""
    with pytest.raises(SignalsError, match="cannot read"):
        read_signals(tmp_path / "nope.csv")


# -- LLM JSON --------------------------------------------------------------------------------


def llm_json(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "account": "PAPER1",
        "instrument": {"type": "ETF", "symbol": "SPY"},
        "side": "BUY",
        "quantity": "10",
        "order_type": "LMT",
        "limit_price": "590.00",
        "reason": "the model likes it",
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not ...})


def test_intent_from_json_builds_an_intent_and_forces_source_llm() -> None:
    """Valid JSON becomes an intent whose source is llm whatever the JSON claims."""
    for claimed in ({}, {"source": "human"}, {"source": "rule"}):
        got = intent_from_json(llm_json(**claimed), account="PAPER1")
        assert got.source is Source.LLM
        assert (got.symbol, got.quantity, got.limit_price) == ("SPY", D(10), D("590.00"))
    assert intent_from_json(llm_json(account=...), account="PAPER1").account == "PAPER1"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        (llm_json(account="DU999999"), "account"),
        (llm_json(approve=True), "approve"),
        (llm_json(token="abc"), "token"),
        (llm_json(quantity="NaN"), "quantity"),
        (llm_json(quantity=float("nan")), "quantity"),
        (llm_json(quantity="Infinity"), "quantity"),
        (llm_json(quantity="-5"), "quantity"),
        (llm_json(limit_price=None), "limit_price"),
        (llm_json(side="HOLD"), "side"),
        (llm_json(quantity="10.0000000000000000000000000001"), "decimal places"),
        (llm_json(reason=json.loads("[" * 20 + "]" * 20)), "deeper"),
        ("[" * 200_000 + "]" * 200_000, "characters"),
        ("[" * 30_000, "deeper"),
        (b"\xff\xfe", "UTF-8"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_intent_from_json_refuses_bad_proposals_with_a_typed_error(
    text: str, complaint: str
) -> None:
    """Malformed JSON, another account, extra keys or non-finite numbers: ProposalError."""
    with pytest.raises(ProposalError) as caught:
        intent_from_json(text, account="PAPER1")
    assert complaint in str(caught.value)
