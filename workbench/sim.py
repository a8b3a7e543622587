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

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from workbench.errors import MarketDataError, SimulationError
from workbench.exposures import ExposureAfter
from workbench.fastpath import per_object
from workbench.intent_hash import intent_hash
from workbench.models import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    MarketSnapshot,
    OrderIntent,
    PortfolioSnapshot,
    Side,
    SimResult,
)
from workbench.policy import CostModel

CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_RATIO = Decimal(1000)


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


index_portfolio = per_object(_build_index, size=16)


def cents(value: Decimal) -> Decimal:
    """``value`` rounded half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fees(quantity: Decimal, notional: Decimal, costs: CostModel) -> Decimal:
    """Commission: per share, at least the minimum, at most a fraction of notional, to the cent."""
    fee, floor = quantity * costs.per_share, costs.min_per_order
    if floor > fee:  # max(fee, floor): the first on a tie
        fee = floor
    cap = notional * costs.max_pct_of_notional
    if cap < fee:  # min(fee, cap): the first on a tie
        fee = cap
    return fee.quantize(CENT, rounding=ROUND_HALF_UP)


def slippage_per_share(
    market: MarketSnapshot, reference: Decimal, notional: Decimal, costs: CostModel
) -> Decimal:
    """max(spread/2, k·reference·notional/liquidity); the spread term alone without volume."""
    spread = market.spread
    volume = market.avg_daily_volume
    if not volume:
        if spread is None:
            raise MarketDataError(
                market.instrument.symbol, "no bid/ask spread and no volume: slippage is unknown"
            )
        return spread / 2
    impact = costs.slippage_k * notional / volume  # = k·ref·notional/(volume·ref)
    if spread is None:
        return impact
    half = spread / 2
    return half if half >= impact else impact  # max(half, impact): the first on a tie


def reference_price(intent: OrderIntent, market: MarketSnapshot) -> Decimal:
    """The quote's reference price for this intent; MarketDataError when missing or mismatched."""
    symbol = intent.instrument.symbol
    if market.instrument.symbol != symbol:
        raise MarketDataError(symbol, f"quote is for {market.instrument.symbol}")
    ref = market.reference_price
    if ref is None:
        raise MarketDataError(symbol, "no bid/ask, last or close: no reference price")
    return ref


def _prices(intent: OrderIntent, ref: Decimal, buy: bool) -> tuple[Decimal, Decimal]:
    """(worst price for the side, highest price the order can carry).

    Like max/min over [ref, limit, stop]: on a tie the earlier price is kept.
    """
    high = low = ref
    for price in (intent.limit_price, intent.stop_price):
        if price is not None:
            if price > high:
                high = price
            if price < low:
                low = price
    return (high if buy else low), high


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


def _largest_other(top: tuple[tuple[Decimal, str], ...], symbol: str) -> Decimal:
    """The largest |exposure| among the other symbols (``top`` holds the two largest)."""
    for value, held in top:
        if held != symbol:
            return value
    return ZERO


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
    symbol, qty, buy = intent.instrument.symbol, intent.quantity, intent.side is Side.BUY
    signed = qty if buy else -qty  # the change in the position
    worst, high = _prices(intent, ref, buy)
    notional = qty * high
    if notional > MAX_AMOUNT:
        raise SimulationError(f"notional {notional} is beyond any sane order")
    fee = fees(qty, notional, costs)
    slip = cents(qty * slippage_per_share(market, ref, notional, costs))
    nav = portfolio.net_liquidation
    nav_after = nav + signed * (ref - worst) - fee - slip
    if nav_after <= 0:
        raise SimulationError(f"NAV after the trade would be {nav_after}")
    before = index.quantity.get(symbol, ZERO)
    after = before + signed
    if abs(after) > MAX_QUANTITY:
        raise SimulationError(f"position after the trade would be {after}")
    old_exposure = index.exposure.get(symbol, ZERO)
    new_exposure = after * ref
    size = abs(new_exposure)
    gross = index.gross - abs(old_exposure) + size
    largest = _largest_other(index.top, symbol)
    size_or_largest = largest if largest > size else size  # max(size, largest)
    return SimResult.model_construct(  # from validated parts: no second validation
        intent_hash=intent_hash(intent),
        currency=portfolio.currency,
        reference_price=ref,
        notional=notional,
        estimated_slippage=slip,
        fees=fee,
        cash_before=portfolio.cash,
        cash_after=portfolio.cash - signed * worst - fee - slip,
        nav_before=nav,
        nav_after=nav_after,
        position_before=before,
        position_after=after,
        exposure_by_symbol_after=ExposureAfter(index.exposure, symbol, new_exposure),
        weight_after=_ratio(new_exposure / nav_after, "weight"),
        concentration_after=_ratio(size_or_largest / nav_after, "concentration"),
        gross_exposure_after=gross,
        net_exposure_after=index.net - old_exposure + new_exposure,
        leverage_after=_ratio(gross / nav_after, "leverage"),
        margin_impact=costs.initial_margin_rate * (size - abs(before * ref)),
        positions_after=index.count - (before != 0) + (after != 0),
        opens_or_increases=abs(after) > abs(before) or before * after < 0,
    )
