"""Order messages from the server: openOrder, orderStatus, completedOrder, execDetails,
commissionReport. Layouts follow ib_async 2.1.0's ``decoder.py`` field by field (non-combo,
no algo, no conditions, no scale or hedge parameters): at server version 176 openOrder has 128
fields; 177 drops ``faProfile``; 178 appends ``pendingPriceRevision`` to execDetails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from workbench.testing.orders import Execution, WorkingOrder
from workbench.testing.wire import UNSET_DOUBLE, Field, Message, message


@dataclass(frozen=True, slots=True)
class MarginState:
    """What-if figures an openOrder carries back for ``whatIf`` orders."""

    init_before: Decimal
    maint_before: Decimal
    equity_before: Decimal
    init_change: Decimal
    maint_change: Decimal
    equity_change: Decimal
    commission: Decimal
    currency: str


def _contract(o: WorkingOrder) -> list[Field]:
    c = o.instrument
    return [c.con_id, c.symbol, c.sec_type, "", None, "", "", o.exchange, c.currency]


def _names(o: WorkingOrder) -> list[Field]:
    return [o.instrument.symbol, o.instrument.symbol]


def _head(o: WorkingOrder) -> list[Field]:
    """action … orderRef: the part openOrder and completedOrder share."""
    return [
        o.action,
        o.quantity,
        o.order_type,
        o.limit_price,
        o.stop_price,
        o.tif,
        o.oca_group,
        o.account,
        "",  # openClose
        0,  # origin
        o.order_ref,
    ]


def _state(o: WorkingOrder, margin: MarginState | None) -> list[Field]:
    if margin is None:
        return [o.status, "", "", "", "", "", "", "", "", "", None, None, None, "", ""]
    m = margin
    return [
        o.status,
        m.init_before,
        m.maint_before,
        m.equity_before,
        m.init_change,
        m.maint_change,
        m.equity_change,
        m.init_before + m.init_change,
        m.maint_before + m.maint_change,
        m.equity_before + m.equity_change,
        m.commission,
        m.commission,
        m.commission,
        m.currency,
        "",
    ]


def open_order(o: WorkingOrder, version: int, margin: MarginState | None = None) -> Message:
    """openOrder (msg 5) for ``o`` with its current status."""
    f: list[Field] = [o.order_id, *_contract(o), *_names(o), *_head(o)]
    f += [o.client_id, o.perm_id, o.outside_rth, False, 0, "", "", "", "", ""]
    if version < 177:
        f.append("")  # faProfile
    f += ["", "", "", None, "", 0, "", -1, 0, None, None, None, None, None]
    f += [None, False, False, False, None, o.oca_type, False, False, None, o.parent_id, 0]
    f += [None, None, "", None]  # volatility, volatilityType, deltaNeutral type and aux price
    f += [False, None, None, None, None, None, ""]  # continuousUpdate … comboLegsDescrip
    f += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    f += [None, None, None, ""]  # scale init/subs level size, price increment; hedgeType
    f += [False, "", "", False, False, ""]  # optOutSmartRouting … deltaNeutral flag, algo
    f += [False, o.what_if, *_state(o, margin), False, False]
    f += [0]  # conditions
    f += ["", None, None, None, None, None, None, 0, "", "", "", None, False, False, False, False]
    f += [None, None, False]  # duration, postToAts, autoCancelParent
    f += [None, None, None, None, None]  # minTradeQty … midOffsetAtHalf
    return message("openOrder", 5, *f)


def order_status(o: WorkingOrder) -> Message:
    """orderStatus (msg 3): status, filled, remaining, prices, ids."""
    return message(
        "orderStatus",
        3,
        o.order_id,
        o.status,
        o.filled,
        o.remaining,
        o.avg_fill_price,
        o.perm_id,
        o.parent_id,
        o.last_fill_price,
        o.client_id,
        "",
        0,
    )


def completed_order(o: WorkingOrder, version: int, parent_perm_id: int) -> Message:
    """completedOrder (msg 101): a done order, without orderId (clients match it by permId)."""
    f: list[Field] = [*_contract(o), *_names(o), *_head(o)]
    f += [o.perm_id, o.outside_rth, False, 0, "", "", "", ""]
    if version < 177:
        f.append("")  # faProfile
    f += ["", "", "", None, "", 0, "", -1, None, None, None, None, None, None]
    f += [False, False, None, o.oca_type, 0, None, None, "", None]
    f += [False, None, None, None, ""]  # continuousUpdate … comboLegsDescrip
    f += [0, 0, 0, None, None, None, ""]  # legs, order legs, params, scale x3, hedgeType
    f += ["", "", False, False, ""]  # clearingAccount, clearingIntent, notHeld, dnc flag, algo
    f += [False, o.status, False, False, 0]  # solicited, status, randomize x2, conditions
    f += [None, None, None, False, False, "", o.filled, 0, False, "", False, False]
    f += [parent_perm_id, o.completed_time, o.completed_status]
    f += [None, None, None, None, None]
    return message("completedOrder", 101, *f)


def exec_time(when: datetime) -> str:
    return when.strftime("%Y%m%d %H:%M:%S") + " UTC"


def exec_details(e: Execution, req_id: int, version: int) -> Message:
    """execDetails (msg 11); ``req_id`` is -1 for a live fill."""
    c = e.instrument
    f: list[Field] = [req_id, e.order_id, c.con_id, c.symbol, c.sec_type, "", None, "", ""]
    f += [e.exchange, c.currency, c.symbol, c.symbol, e.exec_id, exec_time(e.time), e.account]
    f += [c.primary_exchange, e.side, e.shares, e.price, e.perm_id, e.client_id, 0]
    f += [e.cum_qty, e.avg_price, e.order_ref, "", None, "", e.liquidity]
    if version >= 178:
        f.append(False)
    return message("execDetails", 11, *f)


def commission_report(e: Execution, currency: str) -> Message:
    """commissionReport (msg 59): the commission and, when a position was closed, realized P&L."""
    realized: Field = e.realized_pnl if e.realized_pnl is not None else UNSET_DOUBLE
    return message(
        "commissionReport", 59, 1, e.exec_id, e.commission, currency, realized, UNSET_DOUBLE, ""
    )
