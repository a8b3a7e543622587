"""The execution bridge (from the LiveExecutionBridge design): account monitor, sizing, Smart Stop
and order tags. Pure functions over snapshots, plus a monitor that caches the broker's account view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from workbench.errors import SimulationError
from workbench.models import PortfolioSnapshot, Position, Side

CENT = Decimal("0.01")
STOP_FLOOR = Decimal("0.01")
PROPAGATED_TAG = "PROHIBITED_LLM_DISCOVERY_LINK"
ORDER_REF_PREFIX = "wb"


class AccountMonitor:
    """AvailableFunds, NAV, positions and margin utilisation from the latest broker snapshot."""

    def __init__(self, fetch: Callable[[], PortfolioSnapshot]) -> None:
        self._fetch = fetch
        self._snapshot: PortfolioSnapshot | None = None

    def refresh(self) -> PortfolioSnapshot:
        """Ask the broker again and cache the answer."""
        self._snapshot = self._fetch()
        return self._snapshot

    @property
    def snapshot(self) -> PortfolioSnapshot:
        if self._snapshot is None:
            return self.refresh()
        return self._snapshot

    def available_funds(self) -> Decimal:
        return self.snapshot.available_funds

    def net_liquidation(self) -> Decimal:
        return self.snapshot.net_liquidation

    def positions(self) -> tuple[Position, ...]:
        return self.snapshot.positions

    def margin_utilisation(self) -> Decimal | None:
        """Maintenance margin over NAV; None when NAV is not positive (nothing to divide by)."""
        nav = self.snapshot.net_liquidation
        if nav <= 0:
            return None
        return self.snapshot.maint_margin / nav


def smart_stop(
    side: Side,
    entry_price: Decimal,
    atr_per_share: Decimal,
    k: Decimal,
    *,
    floor: Decimal = STOP_FLOOR,
) -> Decimal:
    """Protective stop for an entry: long entry − k·ATR (floored at 0.01), short entry + k·ATR."""
    if entry_price <= 0 or atr_per_share < 0 or k <= 0:
        raise SimulationError(
            f"smart stop needs entry > 0, ATR >= 0 and k > 0 (got {entry_price}, "
            f"{atr_per_share}, {k})"
        )
    distance = k * atr_per_share
    if side is Side.BUY:
        return max(entry_price - distance, floor).quantize(CENT, rounding=ROUND_HALF_UP)
    return (entry_price + distance).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class SizingRules:
    """Order size bounds in shares: below ``min_order_size`` no order; above it, capped."""

    min_order_size: Decimal
    max_order_size: Decimal

    def __post_init__(self) -> None:
        if not (0 < self.min_order_size <= self.max_order_size):
            raise ValueError("sizing: need 0 < min_order_size <= max_order_size")


def quantity_for_target(
    *,
    target_weight: Decimal,
    nav: Decimal,
    price: Decimal,
    held: Decimal,
    available_funds: Decimal,
    rules: SizingRules,
) -> Decimal:
    """Signed whole-share order that moves ``held`` toward ``target_weight`` of NAV.

    Buys are capped by AvailableFunds and by ``max_order_size``; an order smaller than
    ``min_order_size`` becomes zero (no order).
    """
    if nav <= 0:
        raise SimulationError(f"cannot size from a non-positive NAV ({nav})")
    if price <= 0:
        raise SimulationError(f"cannot size at a non-positive price ({price})")
    target = (target_weight * nav / price).to_integral_value(rounding=ROUND_DOWN)
    delta = target - held
    if delta > 0:
        affordable = (max(available_funds, Decimal(0)) / price).to_integral_value(ROUND_DOWN)
        delta = min(delta, affordable)
    delta = max(min(delta, rules.max_order_size), -rules.max_order_size)
    return Decimal(0) if abs(delta) < rules.min_order_size else delta


def order_ref(proposal_id: str, *, is_propagated: bool) -> str:
    """The broker orderRef: the proposal id, plus the compliance tag for propagated signals."""
    ref = f"{ORDER_REF_PREFIX}:{proposal_id}"
    return f"{ref}|{PROPAGATED_TAG}" if is_propagated else ref


def proposal_from_order_ref(ref: str) -> str | None:
    """The proposal id an orderRef carries, or None if it is not one of ours."""
    head = ref.split("|", 1)[0]
    prefix = f"{ORDER_REF_PREFIX}:"
    return head[len(prefix) :] if head.startswith(prefix) else None
