"""The gateway's instruments and its deterministic quote book (prices only ever set by a test)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

SPREAD = Decimal("0.02")
DEFAULT_SIZE = Decimal(100)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A contract the gateway can qualify: IB-style ids for one universe row."""

    symbol: str
    con_id: int
    stock_type: str
    primary_exchange: str
    long_name: str
    reference_price: Decimal
    currency: str = "USD"
    sec_type: str = "STK"

    @property
    def valid_exchanges(self) -> tuple[str, ...]:
        return ("SMART", self.primary_exchange)


@dataclass(frozen=True, slots=True)
class Quote:
    """Bid/ask/last/close of one symbol and the time it was set (the tick time clients see)."""

    time: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    close: Decimal | None = None
    bid_size: Decimal = DEFAULT_SIZE
    ask_size: Decimal = DEFAULT_SIZE
    last_size: Decimal = DEFAULT_SIZE
    volume: Decimal | None = None

    def mark(self) -> Decimal | None:
        """The price positions are valued at: last, else the mid, else the close."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.close


def con_id_for(symbol: str) -> int:
    """A stable synthetic conId (nine digits) derived from the symbol alone."""
    digest = hashlib.sha256(symbol.encode()).digest()
    return 100_000_000 + int.from_bytes(digest[:4], "big") % 900_000_000


def default_universe_path() -> Path:
    return Path(str(resources.files("workbench") / "data" / "universe.csv"))


def load_universe(path: Path | None = None) -> dict[str, Instrument]:
    """Instruments from a universe CSV (``symbol,type,primary_exchange,name,price``)."""
    source = path or default_universe_path()
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    instruments: dict[str, Instrument] = {}
    for row in rows:
        symbol = row["symbol"].strip()
        if not symbol or symbol in instruments:
            raise ValueError(f"{source}: empty or repeated symbol {symbol!r}")
        instruments[symbol] = Instrument(
            symbol=symbol,
            con_id=con_id_for(symbol),
            stock_type="ETF" if row["type"].strip() == "ETF" else "COMMON",
            primary_exchange=row["primary_exchange"].strip(),
            long_name=row["name"].strip(),
            reference_price=Decimal(row["price"]),
        )
    if len({i.con_id for i in instruments.values()}) != len(instruments):
        raise ValueError(f"{source}: two symbols share a synthetic conId")
    return instruments


def positive(value: Decimal | int | str | None, what: str) -> Decimal | None:
    """A price or size given by a test: None passes, anything else must be a finite number ≥ 0."""
    if value is None:
        return None
    if isinstance(value, float):
        raise TypeError(f"{what}: give a Decimal, int or str, not a float")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError(f"{what}: {value!r} is not a finite non-negative number")
    return number


class Book:
    """Quotes per symbol plus the market-data permissions the account has."""

    def __init__(self, instruments: dict[str, Instrument]) -> None:
        self.instruments = instruments
        self._by_con_id = {i.con_id: i for i in instruments.values()}
        self.quotes: dict[str, Quote] = {}
        self.live_data = True
        self.unsubscribed: set[str] = set()
        self.frozen: set[str] = set()

    def seed(self, at: datetime) -> None:
        """Start every symbol at its universe price, one cent either side."""
        for inst in self.instruments.values():
            price = inst.reference_price
            self.quotes[inst.symbol] = Quote(
                time=at, bid=price - SPREAD / 2, ask=price + SPREAD / 2, last=price, close=price
            )

    def instrument(self, symbol: str = "", con_id: int = 0) -> Instrument | None:
        """The instrument by conId (when given) or symbol; None when unknown or inconsistent."""
        if con_id:
            found = self._by_con_id.get(con_id)
            return found if found and (not symbol or symbol == found.symbol) else None
        return self.instruments.get(symbol)

    def quote(self, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)

    def update(self, symbol: str, at: datetime, **changes: Decimal | None) -> Quote:
        """Change some fields of a symbol's quote (the others are kept) and date it ``at``."""
        if symbol not in self.instruments:
            raise KeyError(f"{symbol} is not in the gateway's universe")
        given = {k: v for k, v in changes.items() if v is not None}
        current = self.quotes.get(symbol) or Quote(time=at)
        quote = replace(current, time=at, **given)
        self.quotes[symbol] = quote
        return quote

    def is_live(self, symbol: str) -> bool:
        """True when the account holds a live subscription for ``symbol``."""
        return self.live_data and symbol not in self.unsubscribed

    def delayed_time(self, quote: Quote, delayed_by: int) -> datetime:
        return quote.time - timedelta(seconds=delayed_by)
