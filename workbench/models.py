"""Domain models: frozen pydantic v2 models with ``extra="forbid"``. No I/O here.

Money is ``Decimal`` with an explicit currency on the model that holds it; NaN and infinities are
rejected; times are timezone-aware. ``OrderIntent.intent_hash`` is the sha256 of its canonical JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from workbench import canonical
from workbench.exposures import ExposureAfter

# Bounds that no sane order or account reaches; beyond them the input is treated as garbage.
MAX_QUANTITY = Decimal("1000000000")
MAX_PRICE = Decimal("100000000")
MAX_AMOUNT = Decimal("1000000000000000")
# No broker takes an order size finer than this: more decimal places are garbage, not precision.
MAX_QUANTITY_PLACES = 8

Quantity = Annotated[Decimal, Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False)]
SignedQuantity = Annotated[Decimal, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, allow_inf_nan=False)]
Price = Annotated[Decimal, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]
Amount = Annotated[Decimal, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, allow_inf_nan=False)]
NonNegativeAmount = Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
Ratio = Annotated[Decimal, Field(ge=-1000, le=1000, allow_inf_nan=False)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9.\-/]{0,19}$")]
Exchange = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,32}$")]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{0,64}$")]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def decimal_places(value: Decimal) -> int:
    """How many digits a finite Decimal has after the point, trailing zeros aside (10.50 → 1)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int), "a finite Decimal"
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + zeros)) if any(digits) else 0


class Frozen(BaseModel):
    """Base of every domain model: immutable, strict about unknown keys, no NaN."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        validate_default=True,
        use_enum_values=False,
    )

    def canonical_json(self) -> str:
        """Canonical JSON of this model (sorted keys, Decimals as strings, UTC times)."""
        return canonical.dumps(self)


class InstrumentType(StrEnum):
    STK = "STK"
    ETF = "ETF"
    FUT = "FUT"
    FX = "FX"
    CRYPTO = "CRYPTO"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MKT = "MKT"
    LMT = "LMT"
    STP = "STP"
    STP_LMT = "STP_LMT"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


class Source(StrEnum):
    RULE = "rule"
    SIGNAL = "signal"
    LLM = "llm"
    HUMAN = "human"


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    REVIEW = "REVIEW"


class Severity(StrEnum):
    BLOCKER = "BLOCKER"
    MAJOR = "MAJOR"
    MINOR = "MINOR"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RuleId(StrEnum):
    """Every risk rule's id. R1–R8 come from the seed design; the rest extend it."""

    R1_MAX_NOTIONAL = "R1_MAX_NOTIONAL"
    R2_MAX_POSITION_WEIGHT = "R2_MAX_POSITION_WEIGHT"
    R3_MAX_POSITIONS = "R3_MAX_POSITIONS"
    R4_INSTRUMENT_ALLOWED = "R4_INSTRUMENT_ALLOWED"
    R5_ORDER_TYPE = "R5_ORDER_TYPE"
    R6_TRADING_STATE = "R6_TRADING_STATE"
    R7_DAILY_LOSS = "R7_DAILY_LOSS"
    R8_MARKET_DATA_STALE = "R8_MARKET_DATA_STALE"
    R9_MAX_DRAWDOWN = "R9_MAX_DRAWDOWN"
    R10_MAX_LEVERAGE = "R10_MAX_LEVERAGE"
    R11_TRADING_WINDOW = "R11_TRADING_WINDOW"
    R12_PRICE_COLLAR = "R12_PRICE_COLLAR"
    R13_DUPLICATE_ORDER = "R13_DUPLICATE_ORDER"
    R14_ORDER_RATE = "R14_ORDER_RATE"
    R15_CASH_AND_SHORTS = "R15_CASH_AND_SHORTS"
    R16_PROTECTIVE_STOP = "R16_PROTECTIVE_STOP"
    R17_PROPAGATED_SIGNAL = "R17_PROPAGATED_SIGNAL"
    R18_MIN_ORDER_SIZE = "R18_MIN_ORDER_SIZE"
    R19_INTENT_CONSTRAINTS = "R19_INTENT_CONSTRAINTS"


class Instrument(Frozen):
    """A tradable instrument; ``con_id`` is set once a broker has qualified it."""

    type: InstrumentType
    symbol: Symbol
    exchange: Exchange = "SMART"
    currency: Currency = "USD"
    primary_exchange: Exchange | None = None
    con_id: Annotated[int, Field(gt=0)] | None = None


class IntentConstraints(Frozen):
    """Limits the proposer asks for on its own order (the gate enforces them too)."""

    max_slippage_bps: Annotated[Decimal, Field(ge=0, le=10000, allow_inf_nan=False)] | None = None
    max_notional: Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)] | None = None


class ProtectiveStop(Frozen):
    """A stop order attached to an opening order as a bracket child."""

    stop_price: Price
    limit_price: Price | None = None


class OrderIntent(Frozen):
    """A proposed order. It is only ever a proposal: nothing sends it without a token."""

    account: AccountId
    instrument: Instrument
    side: Side
    quantity: Quantity
    order_type: OrderType
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    reason: ShortText = ""
    strategy_tag: Tag = ""
    constraints: IntentConstraints = IntentConstraints()
    protective_stop: ProtectiveStop | None = None
    source: Source
    is_propagated: bool = False

    @field_validator("quantity")
    @classmethod
    def _quantity_has_few_places(cls, value: Decimal) -> Decimal:
        if decimal_places(value) > MAX_QUANTITY_PLACES:
            raise ValueError(
                f"{canonical.decimal_str(value)} has more than {MAX_QUANTITY_PLACES} decimal places"
            )
        return value

    @model_validator(mode="after")
    def _prices_match_order_type(self) -> Self:
        needs_limit = self.order_type in (OrderType.LMT, OrderType.STP_LMT)
        needs_stop = self.order_type in (OrderType.STP, OrderType.STP_LMT)
        if needs_limit != (self.limit_price is not None):
            want = "requires" if needs_limit else "must not have"
            kind = self.order_type.value
            raise ValueError(f"limit_price: order_type {kind} {want} a limit_price")
        if needs_stop != (self.stop_price is not None):
            want = "requires" if needs_stop else "must not have"
            raise ValueError(f"stop_price: order_type {self.order_type.value} {want} a stop_price")
        return self

    @property
    def intent_hash(self) -> str:
        """sha256 of the canonical JSON of this intent."""
        return canonical.digest(self)

    @property
    def symbol(self) -> str:
        return self.instrument.symbol


class Position(Frozen):
    """A holding: signed quantity (negative is short), average cost and last mark."""

    instrument: Instrument
    quantity: SignedQuantity
    avg_cost: NonNegativeAmount
    market_price: Price

    @property
    def market_value(self) -> Decimal:
        return self.quantity * self.market_price


class PortfolioSnapshot(Frozen):
    """An account at one moment, as the broker reported it."""

    account: AccountId
    currency: Currency
    positions: tuple[Position, ...] = ()
    cash: Amount
    net_liquidation: Amount
    available_funds: Amount
    buying_power: NonNegativeAmount
    maint_margin: NonNegativeAmount = Decimal(0)
    init_margin: NonNegativeAmount = Decimal(0)
    timestamp: AwareDatetime
    broker: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _positions_unique(self) -> Self:
        symbols = [p.instrument.symbol for p in self.positions]
        if len(symbols) != len(set(symbols)):
            raise ValueError("positions: the same symbol appears twice")
        return self

    def position(self, symbol: str) -> Position | None:
        return next((p for p in self.positions if p.instrument.symbol == symbol), None)

    @property
    def gross_exposure(self) -> Decimal:
        return sum((abs(p.market_value) for p in self.positions), Decimal(0))


class QuoteFeed(StrEnum):
    """Which market-data feed a broker quote came from (IB's market data types 1-4)."""

    LIVE = "live"
    FROZEN = "frozen"  # the last live quote while the market is closed
    DELAYED = "delayed"  # no live subscription: IB's delayed data (usually 15 minutes)
    DELAYED_FROZEN = "delayed-frozen"


class MarketSnapshot(Frozen):
    """A quote for one instrument at one moment. ``synthetic`` marks generated data; ``feed``
    says which broker feed it came from (None: not a broker feed, e.g. the paper broker's)."""

    instrument: Instrument
    bid: Price | None = None
    ask: Price | None = None
    last: Price | None = None
    close: Price | None = None
    avg_daily_volume: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None = None
    timestamp: AwareDatetime
    synthetic: bool = False
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    feed: QuoteFeed | None = None

    @model_validator(mode="after")
    def _bid_not_above_ask(self) -> Self:
        if self.bid is not None and self.ask is not None and self.bid > self.ask:
            raise ValueError(f"bid: bid {self.bid} is above ask {self.ask}")
        return self

    @model_serializer(mode="wrap")
    def _feed_only_when_known(self, handler: SerializerFunctionWrapHandler) -> object:
        """A quote that is not from a broker feed serialises as it did before ``feed`` existed
        (the canonical bytes of the paper broker's quotes do not change)."""
        data = handler(self)
        if self.feed is None and isinstance(data, dict):
            data.pop("feed", None)
        return data

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    @property
    def reference_price(self) -> Decimal | None:
        """Mid if both sides are quoted, else last, else close; None when nothing is quoted."""
        return self.mid or self.last or self.close

    @property
    def spread(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return self.ask - self.bid


class SimResult(Frozen):
    """Deterministic pre-trade impact of one intent on one portfolio."""

    intent_hash: Sha256Hex
    currency: Currency
    reference_price: Price
    notional: NonNegativeAmount
    estimated_slippage: NonNegativeAmount
    fees: NonNegativeAmount
    cash_before: Amount
    cash_after: Amount
    nav_before: Amount
    nav_after: Amount
    position_before: SignedQuantity
    position_after: SignedQuantity
    # A read-only mapping: the simulator shares the portfolio's exposures and overrides the traded
    # symbol (workbench.exposures); validated input becomes a dict. Serialised as the full dict.
    exposure_by_symbol_after: Mapping[str, Amount]
    weight_after: Ratio
    concentration_after: Ratio
    gross_exposure_after: NonNegativeAmount
    net_exposure_after: Amount
    leverage_after: Ratio
    margin_impact: Amount
    positions_after: Annotated[int, Field(ge=0)]
    opens_or_increases: bool

    @field_serializer("exposure_by_symbol_after", mode="wrap")
    def _exposures_as_dict(
        self, value: Mapping[str, Decimal], handler: SerializerFunctionWrapHandler
    ) -> object:
        if isinstance(value, ExposureAfter):
            return handler(value.to_dict())
        return handler(value if type(value) is dict else dict(value))


class Violation(Frozen):
    """One rule's finding: a denial is data, not an exception."""

    rule_id: RuleId
    severity: Severity
    message: ShortText
    data: dict[str, JsonValue] = Field(default_factory=dict)


class RiskDecision(Frozen):
    """The gate's verdict with every violation, the figures it used and the policy hash."""

    decision: Decision
    violations: tuple[Violation, ...] = ()
    computed: dict[str, JsonValue] = Field(default_factory=dict)
    policy_hash: Sha256Hex
    intent_hash: Sha256Hex
    evaluated_at: AwareDatetime


class LiveSignal(Frozen):
    """A signal row from a pipeline: target weight, direction and what the Smart Stop needs."""

    ticker: Symbol
    weight: Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
    direction: Side
    is_propagated: bool = False
    atr_per_share: Annotated[Decimal, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
    entry_price: Price
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class SubmitPermit(Frozen):
    """What a broker's ``submit`` takes: an intent whose token was consumed in the audit log.

    Only the approval module creates one, inside the transaction that consumed the token and
    wrote ``OrderSubmitted`` at ``submitted_seq``. Brokers check that event before sending.
    """

    proposal_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    intent: OrderIntent
    intent_hash: Sha256Hex
    submitted_seq: Annotated[int, Field(gt=0)]
    order_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    protective_stop: ProtectiveStop | None = None

    @model_validator(mode="after")
    def _hash_matches(self) -> Self:
        if self.intent.intent_hash != self.intent_hash:
            raise ValueError("intent_hash: does not match the intent")
        return self
