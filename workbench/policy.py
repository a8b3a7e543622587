"""Frozen, hashed configuration from ``policies/*.yaml``: the risk policy and strategy params.

Loading is strict: a missing file, corrupt YAML, a duplicate or unknown key, or a value of the wrong
type raises :class:`ConfigError`. Nothing here ever falls back to a default: every key that matters
must be written in the file. YAML floats are read as ``Decimal`` from their text (``0.1`` is exactly
one tenth), and :func:`policy_hash` is the sha256 of the model's canonical JSON.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from yaml.nodes import MappingNode

from workbench import canonical
from workbench.errors import ConfigError, problems
from workbench.models import (
    MAX_QUANTITY_PLACES,
    Currency,
    Exchange,
    InstrumentType,
    OrderType,
    Symbol,
    decimal_places,
)

RISK_POLICY_FILE = "risk_policy.yaml"
STRATEGY_PARAMS_FILE = "strategy_params.yaml"

Fraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveMoney = Annotated[Decimal, Field(gt=0, le=Decimal("1e15"), allow_inf_nan=False)]
NonNegativeMoney = Annotated[Decimal, Field(ge=0, le=Decimal("1e15"), allow_inf_nan=False)]
Seconds = Annotated[StrictInt, Field(gt=0, le=86_400)]
CalendarCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{3,8}$")]


class Config(BaseModel):
    """Base of every config model: frozen, unknown keys are errors, no defaults for policy keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @property
    def digest(self) -> str:
        """sha256 of this config's canonical JSON: stamped on every decision that used it."""
        return canonical.digest(self)


# -- risk policy ---------------------------------------------------------------------------------


WHOLE = Decimal(1)
SizeIncrement = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


class InstrumentRules(Config):
    """R4: what may be traded at all; and in what size steps (whole units unless listed)."""

    allowed_types: frozenset[InstrumentType]
    allowed_exchanges: frozenset[Exchange]
    allowed_currencies: frozenset[Currency]
    restricted_symbols: frozenset[Symbol]
    fractional_quantities: dict[Symbol, SizeIncrement]

    @model_validator(mode="after")
    def _increments_are_sane(self) -> Self:
        for symbol, step in self.fractional_quantities.items():
            if decimal_places(step) > MAX_QUANTITY_PLACES:
                raise ValueError(f"fractional_quantities.{symbol}: {step} is finer than 1e-8")
        return self

    def size_increment(self, symbol: str) -> Decimal:
        """The smallest step an order in ``symbol`` may take: 1 (whole units) unless listed."""
        return self.fractional_quantities.get(symbol, WHOLE)

    def size_problem(self, symbol: str, quantity: Decimal) -> str | None:
        """Why ``quantity`` of ``symbol`` is not a whole number of its increments (None: it is)."""
        step = self.size_increment(symbol)
        if quantity % step == 0:
            return None
        unit = "whole units" if step == WHOLE else f"steps of {step:f}"
        return (
            f"{symbol}: quantity {quantity:f} is not in {unit} (fractions only where"
            " risk_policy.yaml instruments.fractional_quantities allows them)"
        )


class OrderRules(Config):
    """R5, R12, R16, R18: the shape of an acceptable order."""

    allowed_order_types: frozenset[OrderType]
    require_limit_orders: StrictBool
    price_collar_pct: Fraction
    require_protective_stop: StrictBool
    min_order_notional: NonNegativeMoney


class LimitRules(Config):
    """R1, R2, R3, R10, R15: size, concentration, breadth, leverage, cash and shorts."""

    max_notional_per_trade: PositiveMoney
    max_position_weight: Fraction
    max_positions: Annotated[StrictInt, Field(ge=0, le=100_000)]
    max_leverage: Annotated[Decimal, Field(gt=0, le=50, allow_inf_nan=False)]
    allow_shorts: StrictBool
    allow_margin: StrictBool


class LossRules(Config):
    """R7 and R9: how much may be lost in a day and from the peak before exposure may not grow."""

    max_daily_loss_pct: Fraction
    max_drawdown_pct: Fraction


class FreshnessRules(Config):
    """R8: how old a quote and a portfolio snapshot may be, and how far ahead of now (skew)."""

    max_quote_age_seconds: Seconds
    max_portfolio_age_seconds: Seconds
    max_clock_skew_seconds: Seconds


class FlowRules(Config):
    """R13, R14: duplicates and submission rate."""

    duplicate_window_seconds: Seconds
    max_submits_per_minute: Annotated[StrictInt, Field(ge=1, le=10_000)]


class TradingWindowRules(Config):
    """R11: which exchange calendar governs each exchange (regular sessions only)."""

    calendars: dict[Exchange, CalendarCode] = Field(min_length=1)


class AutoCommitRules(Config):
    """Auto-commit of trivial rebalances: no person, but only inside every one of these bounds."""

    enabled: StrictBool
    allowed_symbols: frozenset[Symbol]
    max_pct_of_nav: Fraction
    window_start: time
    window_end: time
    timezone: Annotated[str, Field(pattern=r"^[A-Za-z]+/[A-Za-z_]+$")]

    @model_validator(mode="after")
    def _window_is_a_day_range(self) -> Self:
        if self.window_start >= self.window_end:
            raise ValueError("window_start must be before window_end")
        return self


class ApprovalRules(Config):
    """What the approval step reads: token lifetime, second approver, auto-commit bounds."""

    token_expiry_seconds: Seconds
    second_approver_min_notional: PositiveMoney | None
    auto_commit: AutoCommitRules


class RiskPolicy(Config):
    """The whole risk policy (``policies/risk_policy.yaml``); its digest is the ``policy_hash``."""

    version: Annotated[StrictInt, Field(ge=1)]
    instruments: InstrumentRules
    orders: OrderRules
    limits: LimitRules
    losses: LossRules
    freshness: FreshnessRules
    flow: FlowRules
    trading_window: TradingWindowRules
    propagated_signal: Literal["REVIEW", "REJECT"]
    approval: ApprovalRules


# -- strategy params -----------------------------------------------------------------------------


class CircuitBreakerConfig(Config):
    """Trip HALTED when NAV falls this fraction below the trading day's peak (the NAV at the
    previous session's close on the exchange calendar, and every NAV since)."""

    enabled: StrictBool
    max_1d_drawdown_pct: Fraction


class SmartStopConfig(Config):
    """Protective stop distance: entry ∓ atr_multiplier·ATR, long stops floored at ``floor``."""

    atr_multiplier: Annotated[Decimal, Field(gt=0, le=100, allow_inf_nan=False)]
    floor: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class SizingConfig(Config):
    """Order sizing from a target weight (shares), capped by AvailableFunds when asked."""

    min_order_size: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    max_order_size: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    cap_by_available_funds: StrictBool


class CostModel(Config):
    """The simulator's config: fees, slippage and the margin estimate."""

    per_share: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]
    min_per_order: NonNegativeMoney
    max_pct_of_notional: Fraction
    slippage_k: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]
    initial_margin_rate: Fraction


class MarketDataConfig(Config):
    """Where the paper broker's daily bars come from: ``bars`` is the user's own file (CSV or
    Parquet, a path relative to the policies folder), or null for the seeded synthetic bars.
    Every command that marks positions reads it (``--bars`` overrides it)."""

    bars: Annotated[str, Field(min_length=1, max_length=4096)] | None


class StrategyParams(Config):
    """``policies/strategy_params.yaml``: breaker, smart stop, sizing, costs and market data."""

    version: Annotated[StrictInt, Field(ge=1)]
    circuit_breaker: CircuitBreakerConfig
    smart_stop: SmartStopConfig
    sizing: SizingConfig
    costs: CostModel
    market_data: MarketDataConfig


def bars_file(params: StrategyParams, policy_dir: Path) -> Path | None:
    """The user's bars file named by ``market_data.bars`` (resolved against the policies
    folder), or None for the seeded synthetic bars."""
    named = params.market_data.bars
    return None if named is None else (Path(policy_dir) / Path(named).expanduser()).resolve()


# -- loading -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML with floats read exactly as Decimal and duplicate keys refused."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _decimal_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    value = Decimal(text)
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(None, None, "NaN/inf not allowed", node.start_mark)
    return value


_StrictLoader.add_constructor("tag:yaml.org,2002:float", _decimal_float)

C = TypeVar("C", bound=Config)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, or ConfigError for a missing, unreadable or corrupt file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, ArithmeticError, ValueError) as exc:
        raise ConfigError(f"corrupt YAML: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", path=str(path))
    return data


def load_config(model: type[C], path: Path) -> C:
    """Validate the YAML file at ``path`` into ``model``; every fault is a ConfigError."""
    data = read_yaml(Path(path))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {model.__name__}: {problems(exc)}", path=str(path)) from None


def load_policy(path: Path) -> RiskPolicy:
    """Load ``risk_policy.yaml`` (a file path, or a folder holding it)."""
    path = Path(path)
    return load_config(RiskPolicy, path / RISK_POLICY_FILE if path.is_dir() else path)


def load_strategy_params(path: Path) -> StrategyParams:
    """Load ``strategy_params.yaml`` (a file path, or a folder holding it)."""
    path = Path(path)
    return load_config(StrategyParams, path / STRATEGY_PARAMS_FILE if path.is_dir() else path)


_HASHES: dict[int, tuple[Config, str]] = {}


def policy_hash(config: Config) -> str:
    """The canonical hash of a config model (what ``RiskDecision.policy_hash`` carries).

    Configs are frozen, so the hash is remembered per object (identity, not equality).
    """
    hit = _HASHES.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    if len(_HASHES) > 64:
        _HASHES.clear()
    digest = config.digest
    _HASHES[id(config)] = (config, digest)
    return digest
