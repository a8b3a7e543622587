"""Proposers turn targets, signals or LLM JSON into ``OrderIntent`` proposals — never orders.

Prices for sizing and limits come from market snapshots the workbench fetched itself; a signal's
own ``entry_price`` is kept only as metadata (SPEC rule 3).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, StrictBool, StrictInt, ValidationError, model_validator

from workbench.bridge import SizingRules, quantity_for_target, smart_stop
from workbench.errors import WorkbenchError, problems
from workbench.models import (
    Instrument,
    LiveSignal,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    PortfolioSnapshot,
    ProtectiveStop,
    Side,
    Source,
    Symbol,
)
from workbench.policy import Config, load_config

CENT = Decimal("0.01")
BPS = Decimal("0.0001")
TARGETS_FILE = "targets.yaml"
SIGNAL_COLUMNS = ("ticker", "weight", "direction", "is_propagated", "atr_per_share", "entry_price")


class ProposalError(WorkbenchError, ValueError):
    """A proposal cannot be built: malformed JSON, a wrong account, no quote to price it."""


class SignalsError(ProposalError):
    """A signals table is malformed; ``row`` is the 1-based data row at fault (None: the header)."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message if row is None else f"signals row {row}: {message}")
        self.row = row


Weight = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]


class Targets(Config):
    """``policies/targets.yaml``: target weights of NAV and how to trade toward them."""

    version: Annotated[StrictInt, Field(ge=1)]
    strategy_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    drift_band: Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
    limit_offset_bps: Annotated[Decimal, Field(ge=0, le=500, allow_inf_nan=False)]
    max_order_notional: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    protective_stops: StrictBool
    weights: dict[Symbol, Weight] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_fit(self) -> Self:
        total = sum(self.weights.values(), Decimal(0))
        if total > 1:
            raise ValueError(f"weights: target weights sum to {total}, above 1")
        return self


def load_targets(path: Path) -> Targets:
    """Load ``targets.yaml`` (a file path, or a folder holding it); ConfigError on any fault."""
    path = Path(path)
    return load_config(Targets, path / TARGETS_FILE if path.is_dir() else path)


@dataclass(frozen=True)
class Market:
    """What a proposer may look at: the broker's quotes, ATRs and instruments, fetched by us."""

    quote: Callable[[str], MarketSnapshot]
    atr: Callable[[str], Decimal]
    instrument: Callable[[str], Instrument]


@dataclass(frozen=True)
class StopRules:
    """Smart Stop settings from ``strategy_params.yaml``."""

    atr_multiplier: Decimal
    floor: Decimal


def _limit_price(side: Side, quote: MarketSnapshot, offset_bps: Decimal) -> Decimal:
    ref = quote.reference_price
    if ref is None:
        raise ProposalError(f"{quote.instrument.symbol}: no quote to price a limit order")
    factor = 1 + side.sign * offset_bps * BPS
    return (ref * factor).quantize(CENT, rounding=ROUND_HALF_UP)


def _intent(
    *,
    account: str,
    instrument: Instrument,
    qty: Decimal,
    limit: Decimal,
    stop: Decimal | None,
    reason: str,
    tag: str,
    source: Source,
    is_propagated: bool = False,
) -> OrderIntent:
    side = Side.BUY if qty > 0 else Side.SELL
    return OrderIntent(
        account=account,
        instrument=instrument,
        side=side,
        quantity=abs(qty),
        order_type=OrderType.LMT,
        limit_price=limit,
        reason=reason,
        strategy_tag=tag,
        protective_stop=None if stop is None else ProtectiveStop(stop_price=stop),
        source=source,
        is_propagated=is_propagated,
    )


def _opening_stop(
    qty: Decimal, held: Decimal, entry: Decimal, atr: Decimal, stops: StopRules
) -> Decimal | None:
    """A Smart Stop for an order that opens or adds to a position; None for reducing orders."""
    if held * qty < 0 and abs(qty) <= abs(held):
        return None
    side = Side.BUY if qty > 0 else Side.SELL
    return smart_stop(side, entry, atr, stops.atr_multiplier, floor=stops.floor)


def _size(
    target: Decimal,
    price: Decimal,
    held: Decimal,
    portfolio: PortfolioSnapshot,
    sizing: SizingRules,
) -> Decimal:
    """Whole shares toward ``target`` of NAV, capped by AvailableFunds and the sizing rules."""
    return quantity_for_target(
        target_weight=target,
        nav=portfolio.net_liquidation,
        price=price,
        held=held,
        available_funds=portfolio.available_funds,
        rules=sizing,
    )


def _cap_notional(qty: Decimal, price: Decimal, cap: Decimal) -> Decimal:
    most = (cap / price).to_integral_value(rounding="ROUND_DOWN")
    return max(min(qty, most), -most)


def rebalance(
    portfolio: PortfolioSnapshot,
    targets: Targets,
    market: Market,
    sizing: SizingRules,
    stops: StopRules,
) -> list[OrderIntent]:
    """Intents that move each drifted holding toward its target weight, in symbol order.

    Held symbols missing from the targets have target 0 (they are sold down).
    """
    nav = portfolio.net_liquidation
    held = {p.instrument.symbol: p for p in portfolio.positions}
    intents = []
    for symbol in sorted(set(targets.weights) | set(held)):
        target = targets.weights.get(symbol, Decimal(0))
        quote = market.quote(symbol)
        price = quote.reference_price
        if price is None:
            raise ProposalError(f"{symbol}: no quote, cannot rebalance")
        qty_held = held[symbol].quantity if symbol in held else Decimal(0)
        if nav > 0 and abs(qty_held * price / nav - target) <= targets.drift_band:
            continue
        qty = _cap_notional(
            _size(target, price, qty_held, portfolio, sizing), price, targets.max_order_notional
        )
        if qty == 0:
            continue
        side = Side.BUY if qty > 0 else Side.SELL
        stop = (
            _opening_stop(qty, qty_held, price, market.atr(symbol), stops)
            if targets.protective_stops
            else None
        )
        intents.append(
            _intent(
                account=portfolio.account,
                instrument=market.instrument(symbol),
                qty=qty,
                limit=_limit_price(side, quote, targets.limit_offset_bps),
                stop=stop,
                reason=f"rebalance {symbol} toward {target:%} of NAV",
                tag=targets.strategy_tag,
                source=Source.RULE,
            )
        )
    return intents


def from_signals(
    signals: Iterable[LiveSignal],
    portfolio: PortfolioSnapshot,
    market: Market,
    sizing: SizingRules,
    stops: StopRules,
    *,
    strategy_tag: str = "signals",
    limit_offset_bps: Decimal = Decimal(10),
) -> list[OrderIntent]:
    """One intent per signal that needs a trade; SELL signals aim at −weight (0 closes)."""
    held = {p.instrument.symbol: p.quantity for p in portfolio.positions}
    intents = []
    for signal in signals:
        quote = market.quote(signal.ticker)
        price = quote.reference_price
        if price is None:
            raise ProposalError(f"{signal.ticker}: no quote for the signal")
        target = signal.weight * signal.direction.sign
        qty_held = held.get(signal.ticker, Decimal(0))
        qty = _size(target, price, qty_held, portfolio, sizing)
        if qty == 0:
            continue
        atr = signal.atr_per_share if signal.atr_per_share > 0 else market.atr(signal.ticker)
        side = Side.BUY if qty > 0 else Side.SELL
        intents.append(
            _intent(
                account=portfolio.account,
                instrument=market.instrument(signal.ticker),
                qty=qty,
                limit=_limit_price(side, quote, limit_offset_bps),
                stop=_opening_stop(qty, qty_held, price, atr, stops),
                reason=f"signal {signal.direction.value} {signal.ticker} weight {signal.weight}",
                tag=strategy_tag,
                source=Source.SIGNAL,
                is_propagated=signal.is_propagated,
            )
        )
    return intents


_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


def _signal_row(raw: Mapping[str, Any], row: int) -> LiveSignal:
    if None in raw:
        raise SignalsError("more values than the header has columns", row=row)
    data = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}
    try:
        flag = str(data.get("is_propagated", "")).lower()
        if flag not in _TRUE:
            raise SignalsError(f"is_propagated: {data.get('is_propagated')!r} is not a boolean")
        data["is_propagated"] = _TRUE[flag]
        meta = data.pop("metadata", None)
        data["metadata"] = loads_untrusted(meta, "metadata", max_chars=8_000) if meta else {}
        return LiveSignal.model_validate(data)
    except SignalsError as exc:
        raise SignalsError(str(exc), row=row) from None
    except ProposalError as exc:
        raise SignalsError(str(exc), row=row) from None
    except ValidationError as exc:
        raise SignalsError(problems(exc), row=row) from None


def with_weights(targets: Targets, weights: Mapping[str, Decimal]) -> Targets:
    """``targets`` (its drift band, limit offset and per-order cap) with ``weights`` as its
    weights; a ProposalError naming what is wrong with them."""
    data = targets.model_dump()
    data["weights"] = dict(weights)
    try:
        return Targets.model_validate(data)
    except ValidationError as exc:
        raise ProposalError(f"invalid target weights: {problems(exc)}") from None


def parse_signals(text: str) -> list[LiveSignal]:
    """Signals from CSV text with exactly the LiveSignal columns (``metadata`` JSON optional)."""
    reader = csv.DictReader(io.StringIO(text))
    columns = tuple(reader.fieldnames or ())
    missing = [c for c in SIGNAL_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in (*SIGNAL_COLUMNS, "metadata")]
    if missing or unknown:
        raise SignalsError(f"columns: missing {missing}, unknown {unknown}")
    signals = [_signal_row(raw, n) for n, raw in enumerate(reader, start=1)]
    first: dict[str, int] = {}
    for n, signal in enumerate(signals, start=1):
        if signal.ticker in first:
            why = f"ticker {signal.ticker} appears twice (first in row {first[signal.ticker]})"
            raise SignalsError(why, row=n)
        first[signal.ticker] = n
    return signals


def read_signals(path: Path) -> list[LiveSignal]:
    """Signals from a CSV file; a missing or unreadable file is a SignalsError."""
    try:
        return parse_signals(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SignalsError(f"cannot read the signals file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SignalsError(f"cannot read the signals file {path}: not UTF-8 text") from exc


MAX_JSON_CHARS = 64_000  # an order proposal is a few hundred characters
MAX_JSON_DEPTH = 16  # an intent nests three levels; deeper is garbage or an attack


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (brackets inside strings aside)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads_untrusted(
    text: str | bytes,
    what: str,
    *,
    max_chars: int = MAX_JSON_CHARS,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """JSON from an untrusted source, size and nesting checked before parsing (no
    RecursionError, no memory blow-up); every fault is a :class:`ProposalError` naming ``what``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProposalError(f"{what} is not UTF-8 text") from None
    if len(text) > max_chars:
        raise ProposalError(f"{what} is {len(text):,} characters, above the {max_chars:,} allowed")
    if json_depth(text) > max_depth:
        raise ProposalError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProposalError(f"{what} is not JSON: {exc.msg}") from None
    except RecursionError:  # unreachable after the depth check; never let it escape regardless
        raise ProposalError(f"{what} nests too deeply") from None


def intent_from_json(
    text: str | bytes, *, account: str, source: Source = Source.LLM
) -> OrderIntent:
    """An intent from untrusted JSON (an LLM's proposal): strict schema, our account, our source.

    The caller's ``source`` overrides what the JSON claims, so an LLM cannot pass as a human.
    Oversized or deeply nested text is refused before it is parsed.
    """
    raw = loads_untrusted(text, "proposal")
    if not isinstance(raw, dict):
        raise ProposalError("proposal must be a JSON object")
    if "account" in raw and raw["account"] != account:  # absent: it gets ours below
        raise ProposalError(f"proposal names account {raw['account']!r}, not {account!r}")
    raw = {**raw, "account": account, "source": source.value}
    try:
        return OrderIntent.model_validate(raw)
    except ValidationError as exc:
        raise ProposalError(f"invalid proposal: {problems(exc)}") from None
