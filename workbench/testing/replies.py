"""Every other server message: errors, ids, contract details, ticks, account and positions.

Field layouts follow ib_async 2.1.0's ``decoder.py``; fixed-size ones (tickPrice 7, position 16,
portfolio 20, commissionReport 8) must match exactly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from workbench.testing.book import Instrument
from workbench.testing.wire import Field, Message, message

ERROR_TEXT: dict[int, str] = {
    100: "Max rate of messages per second has been exceeded.",
    103: "Duplicate order id",
    200: "No security definition has been found for the request",
    201: "Order rejected - reason:{reason}",
    202: "Order Canceled - reason:{reason}",
    320: "Error reading request: {reason}",
    321: "Error validating request.-'bN' : cause - {reason}",
    322: "Error processing request.-'loopback' : cause - {reason}",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed.",
    434: "The order size cannot be zero.",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    10147: "OrderId {reason} that needs to be cancelled is not found.",
    10148: "OrderId {reason} that needs to be cancelled cannot be cancelled, state: {state}.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10349: "Order TIF was set to DAY based on order preset.",
}
ANNOUNCE = "loopback-test-gateway (synthetic prices, not IBKR)"
FARM_NOTICES = (
    (2104, f"Market data farm connection is OK:{ANNOUNCE}"),
    (2106, f"HMDS data farm connection is OK:{ANNOUNCE}"),
    (2158, f"Sec-def data farm connection is OK:{ANNOUNCE}"),
)
LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "close": 9, "volume": 8, "time": 45}
DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "close": 75, "volume": 74, "time": 88}


def error_text(code: int, reason: str = "", state: str = "") -> str:
    return ERROR_TEXT.get(code, "{reason}").format(reason=reason, state=state)


def error(req_id: int, code: int, text: str) -> Message:
    """error (msg 4); the trailing advancedOrderRejectJson field is required even when empty."""
    return message("error", 4, 2, req_id, code, text, "")


def next_valid_id(order_id: int) -> Message:
    return message("nextValidId", 9, 1, order_id)


def managed_accounts(account: str) -> Message:
    return message("managedAccounts", 15, 1, account)


def current_time(epoch: int) -> Message:
    return message("currentTime", 49, 1, epoch)


def contract_details(req_id: int, inst: Instrument, exchange: str) -> Message:
    """contractDetails (msg 10, server ≥ 164: no version field)."""
    exchanges = ",".join(inst.valid_exchanges)
    f: list[Field] = [req_id, inst.symbol, inst.sec_type, "", None, "", exchange, inst.currency]
    f += [inst.symbol, inst.symbol, inst.symbol, inst.con_id, Decimal("0.01")]
    f += ["", "ACTIVETIM,LMT,MKT,STP,STP LMT", exchanges, 1, 0, inst.long_name]
    f += [inst.primary_exchange, "", "", "", "", "US/Eastern", "", "", "", None, 0]
    f += [1, "", "", "26,26", "", inst.stock_type, 1, 1, 100]
    return message("contractDetails", 10, *f)


def contract_details_end(req_id: int) -> Message:
    return message("contractDetailsEnd", 52, 1, req_id)


def tick_req_params(req_id: int) -> Message:
    return message("tickReqParams", 81, req_id, Decimal("0.01"), "9c0001", 3)


def market_data_type(req_id: int, data_type: int) -> Message:
    return message("marketDataType", 58, 1, req_id, data_type)


def tick_price(req_id: int, tick_type: int, price: Decimal, size: Decimal) -> Message:
    return message("tickPrice", 1, 6, req_id, tick_type, price, size, 0)


def tick_size(req_id: int, tick_type: int, size: Decimal) -> Message:
    return message("tickSize", 2, 6, req_id, tick_type, size)


def tick_string(req_id: int, tick_type: int, value: str) -> Message:
    return message("tickString", 46, 6, req_id, tick_type, value)


def tick_snapshot_end(req_id: int) -> Message:
    return message("tickSnapshotEnd", 57, 1, req_id)


def position(account: str, inst: Instrument, quantity: Decimal, avg_cost: Decimal) -> Message:
    """position (msg 61): exactly 16 fields."""
    return message(
        "position",
        61,
        3,
        account,
        inst.con_id,
        inst.symbol,
        inst.sec_type,
        "",
        None,
        "",
        "",
        inst.primary_exchange,
        inst.currency,
        inst.symbol,
        inst.symbol,
        quantity,
        avg_cost,
    )


def position_end() -> Message:
    return message("positionEnd", 62, 1)


def portfolio(
    account: str, inst: Instrument, figures: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]
) -> Message:
    """updatePortfolio (msg 7): exactly 20 fields; figures = qty, price, value, avg cost, P&L."""
    quantity, price, value, avg_cost, unrealized = figures
    f: list[Field] = [inst.con_id, inst.symbol, inst.sec_type, "", None, "", ""]
    f += [inst.primary_exchange, inst.currency, inst.symbol, inst.symbol]
    f += [quantity, price, value, avg_cost, unrealized, Decimal(0), account]
    return message("updatePortfolio", 7, 8, *f)


def account_value(tag: str, value: str, currency: str, account: str) -> Message:
    return message("updateAccountValue", 6, 2, tag, value, currency, account)


def account_time(now: datetime) -> Message:
    return message("updateAccountTime", 8, 1, now.strftime("%H:%M"))


def account_download_end(account: str) -> Message:
    return message("accountDownloadEnd", 54, 1, account)


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> Message:
    return message("accountSummary", 63, 1, req_id, account, tag, value, currency)


def account_summary_end(req_id: int) -> Message:
    return message("accountSummaryEnd", 64, 1, req_id)


def account_update_multi(req_id: int, account: str, row: tuple[str, str, str]) -> Message:
    tag, value, currency = row
    return message("accountUpdateMulti", 73, 1, req_id, account, "", tag, value, currency)


def account_update_multi_end(req_id: int) -> Message:
    return message("accountUpdateMultiEnd", 74, 1, req_id)


def open_order_end() -> Message:
    return message("openOrderEnd", 53, 1)


def exec_details_end(req_id: int) -> Message:
    return message("execDetailsEnd", 55, 1, req_id)


def completed_orders_end() -> Message:
    return message("completedOrdersEnd", 102)
