"""The trade simulator: the deterministic pre-trade impact of one intent on one portfolio.

Pure and exact: all money is ``Decimal``, nothing reads a clock, the same inputs give the same
``SimResult``. Assumptions, chosen to err against the trader:

- The reference price is the quote's mid, else last, else close; no quote at all is a
  :class:`MarketDataError`, never a made-up price.
- The order trades at its *worst* price: a BUY at max(reference, limit, stop), a SELL at
  min(reference, limit, stop). ``notional`` is quantity × max(reference, limit, stop), the largest
  value the order can carry, so the size caps use it whichever the side.
- Slippage per share is max(spread/2, k·reference·notional/liquidity) where liquidity is
  avg_daily_volume × reference. With no volume only the spread term is used; with neither a spread
  nor a volume the quote cannot price slippage and that is a :class:`MarketDataError`.
- Fees are per share, at least ``min_per_order`` and at most ``max_pct_of_notional`` of the trade
  value (the cap applies last), rounded half-up to the cent. Slippage is rounded the same way.
- Positions are marked at the reference price after the trade; NAV after = NAV − fees − slippage −
  the adverse gap between the worst price and the reference.
- Margin impact = initial_margin_rate × (|exposure after| − |exposure before|) of the symbol.
- Zero or negative NAV (before or after), an account or currency mismatch: :class:`SimulationError`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from workbench.errors import MarketDataError, SimulationError
from workbench.models import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    Instrument,
    IntentConstraints,
    MarketSnapshot,
    OrderIntent,
    PortfolioSnapshot,
    ProtectiveStop,
    SimResult,
)
from workbench.policy import CostModel

CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_RATIO = Decimal(1000)

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    """Results remembered per live object (by identity): for frozen models that are reused."""

    def __init__(self, compute: Callable[[K], V]) -> None:
        self._compute = compute
        self._items: dict[int, tuple[weakref.ref[K], V]] = {}

    def __call__(self, obj: K) -> V:
        hit = self._items.get(id(obj))
        if hit is not None and hit[0]() is obj:
            return hit[1]
        value = self._compute(obj)
        key = id(obj)
        self._items[key] = (weakref.ref(obj, lambda _r: self._items.pop(key, None)), value)
        return value


@dataclass(frozen=True, slots=True)
class PortfolioIndex:
    """What every simulation over one snapshot needs, computed once per snapshot."""

    quantity: dict[str, Decimal]
    exposure: dict[str, Decimal]
    gross: Decimal
    net: Decimal
    count: int
    top: tuple[tuple[Decimal, str], ...]


def _build_index(portfolio: PortfolioSnapshot) -> PortfolioIndex:
    quantity = {p.instrument.symbol: p.quantity for p in portfolio.positions}
    exposure = {p.instrument.symbol: p.quantity * p.market_price for p in portfolio.positions}
    ranked = sorted(((abs(v), s) for s, v in exposure.items()), reverse=True)[:2]
    return PortfolioIndex(
        quantity=quantity,
        exposure=exposure,
        gross=sum((abs(v) for v in exposure.values()), ZERO),
        net=sum(exposure.values(), ZERO),
        count=sum(1 for q in quantity.values() if q != 0),
        top=tuple(ranked),
    )


index_portfolio: IdentityCache[PortfolioSnapshot, PortfolioIndex] = IdentityCache(_build_index)


# The fields (sorted) that the specialised intent writer below spells out. If a model gains or
# loses a field, the writer is switched off and the general canonical writer is used instead.
_INTENT_SHAPE: dict[type[BaseModel], tuple[str, ...]] = {
    OrderIntent: (
        "account", "constraints", "instrument", "is_propagated", "limit_price", "order_type",
        "protective_stop", "quantity", "reason", "side", "source", "stop_price", "strategy_tag",
        "time_in_force",
    ),
    IntentConstraints: ("max_notional", "max_slippage_bps"),
    Instrument: ("con_id", "currency", "exchange", "primary_exchange", "symbol", "type"),
    ProtectiveStop: ("limit_price", "stop_price"),
}  # fmt: skip
FAST_INTENT_HASH = all(tuple(sorted(m.model_fields)) == f for m, f in _INTENT_SHAPE.items())


def plain_decimal(value: Decimal) -> str:
    """``canonical.decimal_str`` of a finite Decimal: fixed point, no exponent, no trailing 0."""
    if not value:
        return "0"
    text = format(value, "f")  # exact digits; 'f' without a precision never rounds
    return text.rstrip("0").rstrip(".") if "." in text else text


def _dec(value: Decimal | None) -> str:
    return "null" if value is None else f'"{plain_decimal(value)}"'


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def intent_json(i: OrderIntent) -> str:
    """Canonical JSON of an intent, byte for byte what ``canonical.dumps`` writes, but faster."""
    n, c, p = i.instrument, i.constraints, i.protective_stop
    stop = (
        "null"
        if p is None
        else (f'{{"limit_price":{_dec(p.limit_price)},"stop_price":{_dec(p.stop_price)}}}')
    )
    con_id = "null" if n.con_id is None else str(n.con_id)
    return (
        f'{{"account":{_text(i.account)},"constraints":{{"max_notional":{_dec(c.max_notional)},'
        f'"max_slippage_bps":{_dec(c.max_slippage_bps)}}},"instrument":{{"con_id":{con_id},'
        f'"currency":{_text(n.currency)},"exchange":{_text(n.exchange)},'
        f'"primary_exchange":{_text(n.primary_exchange)},"symbol":{_text(n.symbol)},'
        f'"type":{_text(n.type.value)}}},"is_propagated":{"true" if i.is_propagated else "false"},'
        f'"limit_price":{_dec(i.limit_price)},"order_type":{_text(i.order_type.value)},'
        f'"protective_stop":{stop},"quantity":{_dec(i.quantity)},"reason":{_text(i.reason)},'
        f'"side":{_text(i.side.value)},"source":{_text(i.source.value)},'
        f'"stop_price":{_dec(i.stop_price)},"strategy_tag":{_text(i.strategy_tag)},'
        f'"time_in_force":{_text(i.time_in_force.value)}}}'
    )


def _plain_types(i: OrderIntent) -> bool:
    return (
        type(i) is OrderIntent
        and type(i.instrument) is Instrument
        and type(i.constraints) is IntentConstraints
        and (i.protective_stop is None or type(i.protective_stop) is ProtectiveStop)
    )


def _intent_hash(intent: OrderIntent) -> str:
    """``intent.intent_hash``, through the specialised writer when the models are the known ones."""
    if not (FAST_INTENT_HASH and _plain_types(intent)):
        return intent.intent_hash
    return hashlib.sha256(intent_json(intent).encode("ascii")).hexdigest()


intent_hash: IdentityCache[OrderIntent, str] = IdentityCache(_intent_hash)


M = TypeVar("M", bound=BaseModel)
_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A frozen model from values computed out of already-validated inputs, not re-validated.

    For the hot path only. Every field must be given. It sets what ``model_construct`` sets,
    without its per-field loop; tests pin that the result equals a validated instance.
    """
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS.setdefault(cls, frozenset(cls.model_fields))
    if values.keys() != fields:
        raise TypeError(f"{cls.__name__}: fields {sorted(fields ^ values.keys())} do not match")
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _result(**values: Any) -> SimResult:
    return trusted(SimResult, values)


def cents(value: Decimal) -> Decimal:
    """``value`` rounded half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fees(quantity: Decimal, notional: Decimal, costs: CostModel) -> Decimal:
    """Commission: per share, at least the minimum, at most a fraction of notional, to the cent."""
    fee = max(quantity * costs.per_share, costs.min_per_order)
    return cents(min(fee, notional * costs.max_pct_of_notional))


def slippage_per_share(
    market: MarketSnapshot, reference: Decimal, notional: Decimal, costs: CostModel
) -> Decimal:
    """max(spread/2, k·reference·notional/liquidity); the spread term alone without volume."""
    spread = market.spread
    terms: list[Decimal] = [] if spread is None else [spread / 2]
    volume = market.avg_daily_volume
    if volume:
        terms.append(costs.slippage_k * notional / volume)  # = k·ref·notional/(volume·ref)
    if not terms:
        raise MarketDataError(
            market.instrument.symbol, "no bid/ask spread and no volume: slippage is unknown"
        )
    return max(terms)


def reference_price(intent: OrderIntent, market: MarketSnapshot) -> Decimal:
    """The quote's reference price for this intent; MarketDataError when missing or mismatched."""
    symbol = intent.instrument.symbol
    if market.instrument.symbol != symbol:
        raise MarketDataError(symbol, f"quote is for {market.instrument.symbol}")
    ref = market.reference_price
    if ref is None:
        raise MarketDataError(symbol, "no bid/ask, last or close: no reference price")
    return ref


def _prices(intent: OrderIntent, ref: Decimal) -> tuple[Decimal, Decimal]:
    """(worst price for the side, highest price the order can carry)."""
    prices = [ref]
    if intent.limit_price is not None:
        prices.append(intent.limit_price)
    if intent.stop_price is not None:
        prices.append(intent.stop_price)
    high = max(prices)
    return (high if intent.side.sign > 0 else min(prices)), high


def _check_account(intent: OrderIntent, portfolio: PortfolioSnapshot) -> None:
    if intent.account != portfolio.account:
        raise SimulationError(
            f"intent for account {intent.account}, snapshot of {portfolio.account}"
        )
    if intent.instrument.currency != portfolio.currency:
        raise SimulationError(
            f"{intent.instrument.symbol} trades in {intent.instrument.currency}, the account is in"
            f" {portfolio.currency}: no FX conversion is simulated"
        )
    if portfolio.net_liquidation <= 0:
        raise SimulationError(f"NAV is {portfolio.net_liquidation}: cannot size against it")


def _ratio(value: Decimal, what: str) -> Decimal:
    if abs(value) > MAX_RATIO:
        raise SimulationError(f"{what} {value} is out of range: NAV is too small for this trade")
    return value


def simulate(
    intent: OrderIntent,
    portfolio: PortfolioSnapshot,
    market: MarketSnapshot,
    costs: CostModel,
) -> SimResult:
    """The deterministic impact of ``intent`` on ``portfolio`` at ``market`` (see module doc)."""
    _check_account(intent, portfolio)
    ref = reference_price(intent, market)
    index = index_portfolio(portfolio)
    symbol, qty, sign = intent.instrument.symbol, intent.quantity, intent.side.sign
    worst, high = _prices(intent, ref)
    notional = qty * high
    if notional > MAX_AMOUNT:
        raise SimulationError(f"notional {notional} is beyond any sane order")
    fee = fees(qty, notional, costs)
    slip = cents(qty * slippage_per_share(market, ref, notional, costs))
    nav = portfolio.net_liquidation
    nav_after = nav + sign * qty * (ref - worst) - fee - slip
    if nav_after <= 0:
        raise SimulationError(f"NAV after the trade would be {nav_after}")
    before = index.quantity.get(symbol, ZERO)
    after = before + sign * qty
    if abs(after) > MAX_QUANTITY:
        raise SimulationError(f"position after the trade would be {after}")
    old_exposure = index.exposure.get(symbol, ZERO)
    new_exposure = after * ref
    exposures = dict(index.exposure)
    exposures[symbol] = new_exposure
    gross = index.gross - abs(old_exposure) + abs(new_exposure)
    others = next((v for v, s in index.top if s != symbol), ZERO)
    return _result(
        intent_hash=intent_hash(intent),
        currency=portfolio.currency,
        reference_price=ref,
        notional=notional,
        estimated_slippage=slip,
        fees=fee,
        cash_before=portfolio.cash,
        cash_after=portfolio.cash - sign * qty * worst - fee - slip,
        nav_before=nav,
        nav_after=nav_after,
        position_before=before,
        position_after=after,
        exposure_by_symbol_after=exposures,
        weight_after=_ratio(new_exposure / nav_after, "weight"),
        concentration_after=_ratio(max(abs(new_exposure), others) / nav_after, "concentration"),
        gross_exposure_after=gross,
        net_exposure_after=index.net - old_exposure + new_exposure,
        leverage_after=_ratio(gross / nav_after, "leverage"),
        margin_impact=costs.initial_margin_rate * (abs(new_exposure) - abs(before * ref)),
        positions_after=index.count - (before != 0) + (after != 0),
        opens_or_increases=abs(after) > abs(before) or before * after < 0,
    )
