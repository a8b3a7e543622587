"""From a placeOrder to an order the gateway can work: parse, refuse, and price the margin.

Refusals follow IB's codes: 321 read-only API, 320 unreadable, 200 unknown contract, 434 zero
size, 201 for everything else the gateway will not take (unsupported type or tif, missing prices,
fractional shares, a foreign account, a flagged symbol, initial margin above equity).
"""

from __future__ import annotations

from decimal import Decimal

from workbench.testing.book import Book, Instrument
from workbench.testing.config import GatewayConfig
from workbench.testing.ledger import Ledger
from workbench.testing.order_codec import MarginState
from workbench.testing.orders import SUPPORTED_TYPES, WorkingOrder, touch
from workbench.testing.requests import Request
from workbench.testing.wire import parse_bool, parse_decimal, parse_int

TIFS = frozenset({"", "DAY", "GTC", "IOC"})
Refusal = tuple[int, str]


def _blank(symbol: str) -> Instrument:
    return Instrument(symbol, 0, "", "", "", Decimal(0))


def build_order(
    config: GatewayConfig, book: Book, client_id: int, order_id: int, req: Request, seq: int
) -> tuple[WorkingOrder, Refusal | None]:
    """The order a placeOrder describes, and why it cannot be accepted (or None)."""
    symbol = req.get("symbol")
    inst = book.instrument(symbol, parse_int(req.get("conId")))
    try:
        order = WorkingOrder(
            seq=seq,
            client_id=client_id,
            order_id=order_id,
            instrument=inst or _blank(symbol),
            exchange=req.get("exchange") or "SMART",
            action=req.get("action"),
            quantity=parse_decimal(req.get("totalQuantity")) or Decimal(0),
            order_type=req.get("orderType"),
            limit_price=parse_decimal(req.get("lmtPrice")),
            stop_price=parse_decimal(req.get("auxPrice")),
            tif=req.get("tif"),
            oca_group=req.get("ocaGroup"),
            oca_type=parse_int(req.get("ocaType")),
            account=req.get("account"),
            order_ref=req.get("orderRef"),
            transmit=parse_bool(req.get("transmit")),
            parent_id=parse_int(req.get("parentId")),
            outside_rth=parse_bool(req.get("outsideRth")),
            what_if=parse_bool(req.get("whatIf")),
        )
    except (ValueError, ArithmeticError) as exc:
        bad = WorkingOrder(
            seq, client_id, order_id, _blank(symbol), "", "", Decimal(0), "", None, None
        )
        return bad, (320, f"unreadable order field: {exc}")
    refusal = refuse(config, order, req, inst)
    order.account = order.account or config.account
    return order, refusal


def refuse(
    config: GatewayConfig, o: WorkingOrder, req: Request, inst: Instrument | None
) -> Refusal | None:
    """Why the order cannot be accepted (code, reason), or None."""
    if config.read_only:
        return (321, "The API interface is currently in Read-Only mode.")
    if req.problem:
        return (201 if "not emulated" in req.problem else 320, req.problem)
    if inst is None:
        return (200, "")
    checks: tuple[tuple[bool, Refusal], ...] = (
        (o.action not in ("BUY", "SELL"), (201, f"unknown action {o.action!r}")),
        (o.order_type not in SUPPORTED_TYPES, (201, f"{o.order_type} orders are not emulated")),
        (o.quantity <= 0, (434, "")),
        (o.quantity != o.quantity.to_integral_value(), (201, "fractional shares")),
        (o.tif not in TIFS, (201, f"time in force {o.tif!r} is not emulated")),
        (o.order_type in ("LMT", "STP LMT") and not o.limit_price, (201, "no limit price")),
        (o.order_type in ("STP", "STP LMT") and not o.stop_price, (201, "no stop price")),
        (bool(o.account) and o.account != config.account, (201, "invalid account")),
    )
    return next((refusal for failed, refusal in checks if failed), None)


def _reference_price(book: Book, order: WorkingOrder) -> Decimal | None:
    quote = book.quote(order.instrument.symbol)
    return order.limit_price or (touch(order, quote) if quote else None)


def margin_shortfall(
    config: GatewayConfig, book: Book, ledger: Ledger, order: WorkingOrder
) -> str | None:
    """IB's margin reject text when the order would need more initial margin than equity."""
    price = _reference_price(book, order)
    if not config.margin_check or order.is_child or price is None:
        return None
    equity = ledger.values()["EquityWithLoanValue"]
    signed = order.sign * order.quantity
    needed = ledger.initial_margin_after(order.instrument.symbol, signed, price)
    if needed <= equity:
        return None
    return (
        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH"
        f" LOAN VALUE [{equity} USD] MUST EXCEED THE INITIAL MARGIN [{needed} USD]"
    )


def what_if_margin(
    config: GatewayConfig, book: Book, ledger: Ledger, order: WorkingOrder
) -> MarginState:
    """The margin and commission figures a whatIf order is answered with."""
    price = _reference_price(book, order) or Decimal(0)
    values = ledger.values()
    after = ledger.initial_margin_after(order.instrument.symbol, order.sign * order.quantity, price)
    rate = config.maintenance_margin_rate / config.initial_margin_rate
    commission = ledger.commission_total(order.quantity, order.quantity * price)
    return MarginState(
        init_before=values["InitMarginReq"],
        maint_before=values["MaintMarginReq"],
        equity_before=values["EquityWithLoanValue"],
        init_change=after - values["InitMarginReq"],
        maint_change=(after * rate).quantize(Decimal("0.01")) - values["MaintMarginReq"],
        equity_change=-commission,
        commission=commission,
        currency=config.currency,
    )
