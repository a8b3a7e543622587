"""Client → server messages, decoded into named fields (the gateway's received-message log).

Layouts follow ib_async 2.1.0's ``client.py``. placeOrder is walked field by field, with its
conditional groups, so that a layout drift shows up as a ``problem`` rather than a wrong order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.testing.wire import UNSET_DOUBLE

CONTRACT = (
    "conId",
    "symbol",
    "secType",
    "lastTradeDate",
    "strike",
    "right",
    "multiplier",
    "exchange",
    "primaryExchange",
    "currency",
    "localSymbol",
    "tradingClass",
)

EXEC_FILTER = ("clientId", "account", "time", "symbol", "secType", "exchange", "side")

SIMPLE: dict[int, tuple[str, tuple[str, ...]]] = {
    2: ("cancelMktData", ("version", "reqId")),
    4: ("cancelOrder", ("version", "orderId", "manualCancelOrderTime")),
    5: ("reqOpenOrders", ("version",)),
    6: ("reqAccountUpdates", ("version", "subscribe", "account")),
    7: (
        "reqExecutions",
        ("version", "reqId", *EXEC_FILTER),
    ),
    8: ("reqIds", ("version", "numIds")),
    9: (
        "reqContractDetails",
        ("version", "reqId", *CONTRACT, "includeExpired", "secIdType", "secId", "issuerId"),
    ),
    15: ("reqAutoOpenOrders", ("version", "autoBind")),
    16: ("reqAllOpenOrders", ("version",)),
    17: ("reqManagedAccts", ("version",)),
    49: ("reqCurrentTime", ("version",)),
    58: ("reqGlobalCancel", ("version",)),
    59: ("reqMarketDataType", ("version", "marketDataType")),
    61: ("reqPositions", ("version",)),
    62: ("reqAccountSummary", ("version", "reqId", "group", "tags")),
    63: ("cancelAccountSummary", ("version", "reqId")),
    64: ("cancelPositions", ("version",)),
    71: ("startApi", ("version", "clientId", "optionalCapabilities")),
    76: ("reqAccountUpdatesMulti", ("version", "reqId", "account", "modelCode", "ledgerAndNLV")),
    77: ("cancelAccountUpdatesMulti", ("version", "reqId")),
    99: ("reqCompletedOrders", ("apiOnly",)),
    20: (
        "reqHistoricalData",
        (
            "reqId",
            *CONTRACT,
            "includeExpired",
            "endDateTime",
            "barSizeSetting",
            "durationStr",
            "useRTH",
            "whatToShow",
            "formatDate",
            "keepUpToDate",
            "chartOptions",
        ),
    ),
}

# Requests the gateway does not emulate, with the index of their reqId (answered with error 322).
UNSUPPORTED: dict[int, tuple[str, int | None]] = {
    10: ("reqMktDepth", 2),
    12: ("reqNewsBulletins", None),
    14: ("setServerLogLevel", None),
    18: ("requestFA", None),
    22: ("reqScannerSubscription", 1),
    24: ("reqScannerParameters", None),
    50: ("reqRealTimeBars", 2),
    52: ("reqFundamentalData", 2),
    54: ("calculateImpliedVolatility", 2),
    55: ("calculateOptionPrice", 2),
    74: ("reqPositionsMulti", 2),
    78: ("reqSecDefOptParams", 1),
    81: ("reqMatchingSymbols", 1),
    87: ("reqHeadTimeStamp", 1),
    88: ("reqHistogramData", 1),
    92: ("reqPnL", 1),
    94: ("reqPnLSingle", 1),
    96: ("reqHistoricalTicks", 1),
    97: ("reqTickByTickData", 1),
}
QUIET_CANCELS = frozenset({11, 13, 23, 25, 51, 53, 56, 57, 75, 89, 90, 93, 95, 98})


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded client message."""

    msg_id: int
    name: str
    fields: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


class _Walker:
    """A cursor over raw fields that records names as it reads them."""

    def __init__(self, raw: list[str]) -> None:
        self.raw = raw
        self.pos = 1
        self.out: dict[str, str] = {}

    def take(self, *names: str) -> None:
        for name in names:
            if self.pos >= len(self.raw):
                raise ValueError(f"placeOrder ended before field {name!r}")
            self.out[name] = self.raw[self.pos]
            self.pos += 1

    def skip(self, count: int, label: str) -> None:
        for i in range(count):
            self.take(f"{label}{i}")

    def pairs(self, label: str) -> None:
        self.take(f"{label}Count")
        self.skip(2 * int(self.out[f"{label}Count"] or 0), label)


def _fixed(walk: _Walker) -> None:
    walk.take("orderId", *CONTRACT, "secIdType", "secId", "action", "totalQuantity", "orderType")
    walk.take("lmtPrice", "auxPrice", "tif", "ocaGroup", "account", "openClose", "origin")
    walk.take("orderRef", "transmit", "parentId", "blockOrder", "sweepToFill", "displaySize")
    walk.take("triggerMethod", "outsideRth", "hidden")
    if walk.out["secType"] == "BAG":
        raise ValueError("combo (BAG) orders are not emulated")


def _middle(walk: _Walker, version: int) -> None:
    walk.take("sharesAllocation", "discretionaryAmt", "goodAfterTime", "goodTillDate")
    walk.take("faGroup", "faMethod", "faPercentage")
    if version < 177:
        walk.take("faProfile")
    walk.take("modelCode", "shortSaleSlot", "designatedLocation", "exemptCode", "ocaType")
    walk.take("rule80A", "settlingFirm", "allOrNone", "minQty", "percentOffset", "eTradeOnly")
    walk.take("firmQuoteOnly", "nbboPriceCap", "auctionStrategy", "startingPrice")
    walk.take("stockRefPrice", "delta", "stockRangeLower", "stockRangeUpper")
    walk.take("overridePercentageConstraints", "volatility", "volatilityType")
    walk.take("deltaNeutralOrderType", "deltaNeutralAuxPrice")
    if walk.out["deltaNeutralOrderType"]:
        walk.skip(8, "deltaNeutral")
    walk.take("continuousUpdate", "referencePriceType", "trailStopPrice", "trailingPercent")
    walk.take("scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceIncrement")
    increment = walk.out["scalePriceIncrement"]
    if increment and increment != UNSET_DOUBLE and float(increment) > 0:
        walk.skip(7, "scale")
    walk.take("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
    if walk.out["hedgeType"]:
        walk.take("hedgeParam")
    walk.take("optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld", "dnc")
    if walk.out["dnc"] == "1":
        walk.skip(3, "dncField")
    walk.take("algoStrategy")
    if walk.out["algoStrategy"]:
        walk.pairs("algoParam")


def _tail(walk: _Walker, version: int) -> None:
    walk.take("algoId", "whatIf", "orderMiscOptions", "solicited", "randomizeSize")
    walk.take("randomizePrice")
    if walk.out["orderType"] in ("PEG BENCH", "PEGBENCH"):
        walk.skip(5, "pegBench")
    walk.take("conditionCount")
    if walk.out["conditionCount"] not in ("", "0"):
        raise ValueError("order conditions are not emulated")
    walk.take("adjustedOrderType", "triggerPrice", "lmtPriceOffset", "adjustedStopPrice")
    walk.take("adjustedStopLimitPrice", "adjustedTrailingAmount", "adjustableTrailingUnit")
    walk.take("extOperator", "softDollarTierName", "softDollarTierValue", "cashQty")
    walk.take("mifid2DecisionMaker", "mifid2DecisionAlgo", "mifid2ExecutionTrader")
    walk.take("mifid2ExecutionAlgo", "dontUseAutoPriceForHedge", "isOmsContainer")
    walk.take("discretionaryUpToLimitPrice", "usePriceMgmtAlgo", "duration", "postToAts")
    walk.take("autoCancelParent", "advancedErrorOverride", "manualOrderTime")
    if walk.out["exchange"] == "IBKRATS":
        walk.take("minTradeQty")
    if walk.out["orderType"] in ("PEG BEST", "PEGBEST", "PEG MID", "PEGMID"):
        raise ValueError("pegged orders are not emulated")


def decode_place_order(raw: list[str], version: int) -> Request:
    """placeOrder (msg 3, no version field): every field named, or a ``problem``."""
    walk = _Walker(raw)
    problem: str | None = None
    try:
        _fixed(walk)
        _middle(walk, version)
        _tail(walk, version)
        if walk.pos != len(raw):
            problem = f"placeOrder has {len(raw) - walk.pos} unexpected trailing fields"
    except (ValueError, KeyError) as exc:
        problem = str(exc)
    return Request(3, "placeOrder", walk.out, problem)


def decode_market_data(raw: list[str]) -> Request:
    """reqMktData (msg 1): contract, optional delta-neutral contract, ticks, snapshot flags."""
    walk = _Walker(raw)
    try:
        walk.take("version", "reqId", *CONTRACT)
        if walk.out["secType"] == "BAG":
            raise ValueError("combo (BAG) market data is not emulated")
        walk.take("deltaNeutral")
        if walk.out["deltaNeutral"] == "1":
            walk.skip(3, "deltaNeutralField")
        walk.take("genericTickList", "snapshot", "regulatorySnapshot", "mktDataOptions")
    except ValueError as exc:
        return Request(1, "reqMktData", walk.out, str(exc))
    extra = len(raw) - walk.pos
    return Request(1, "reqMktData", walk.out, f"{extra} unexpected fields" if extra else None)


def _decode_simple(msg_id: int, raw: list[str]) -> Request:
    name, names = SIMPLE[msg_id]
    values = raw[1:]
    fields = dict(zip(names, values, strict=False))
    problem = None
    if len(values) != len(names):
        problem = f"{name} has {len(values)} fields, expected {len(names)}"
    return Request(msg_id, name, fields, problem)


def decode(raw: list[str], version: int) -> Request:
    """Any client message after the handshake."""
    try:
        msg_id = int(raw[0])
    except (IndexError, ValueError):
        return Request(-1, "unparseable", {}, f"no message id in {raw[:3]!r}")
    decoders: dict[int, Callable[[], Request]] = {
        1: lambda: decode_market_data(raw),
        3: lambda: decode_place_order(raw, version),
    }
    if msg_id in decoders:
        return decoders[msg_id]()
    if msg_id in SIMPLE:
        return _decode_simple(msg_id, raw)
    if msg_id in UNSUPPORTED:
        name, index = UNSUPPORTED[msg_id]
        fields = {"reqId": raw[index]} if index is not None and index < len(raw) else {}
        return Request(msg_id, name, fields)
    name = "cancel (not emulated)" if msg_id in QUIET_CANCELS else f"message {msg_id}"
    return Request(msg_id, name, {f"field{i}": v for i, v in enumerate(raw[1:])})
