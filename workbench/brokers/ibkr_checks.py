"""What the IBKR adapter checks before it sends an order, and how it names IB's orders and errors.

Pure functions: a broker's refusals that need no answer from IB (the account, whole shares,
positive prices, the currency, stocks and ETFs only, the NYSE session for DAY and IOC orders),
the adapter's order ids (``IB-<client>-<order>``), and IB's market-data errors in words.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ib_async import RequestError

from workbench import sessions
from workbench.brokers.ibkr_store import SentOrder
from workbench.models import InstrumentType, SubmitPermit, TimeInForce
from workbench.orders import DONE_STATES


def order_id_for(client_id: int, ib_order_id: int) -> str:
    return f"IB-{client_id}-{ib_order_id}"


def is_active(row: SentOrder) -> bool:
    """Not known to be done at IB (an order sent but not yet acknowledged counts as active)."""
    return not (row.acked and row.order.status in DONE_STATES)


def order_problem(permit: SubmitPermit, account: str, currency: str, now: datetime) -> str | None:
    """What a broker refuses before it looks at the contract; the first reason wins."""
    intent = permit.intent
    if intent.account != account:
        return f"unknown account {intent.account}: this IBKR session trades {account}"
    quantity = Decimal(intent.quantity)
    if not (quantity.is_finite() and quantity > 0 and quantity == quantity.to_integral_value()):
        return f"quantity must be a positive whole number of shares, got {quantity}"
    prices: list[tuple[str, Any]] = [("limit", intent.limit_price), ("stop", intent.stop_price)]
    if permit.protective_stop is not None:
        prices.append(("protective stop", permit.protective_stop.stop_price))
    for name, value in prices:
        if value is not None and not value > 0:
            return f"the {name} price must be positive"
    if intent.instrument.currency != currency:
        return f"currency {intent.instrument.currency}: this account trades {currency}"
    if intent.instrument.type not in (InstrumentType.STK, InstrumentType.ETF):
        return f"the IBKR adapter trades stocks and ETFs, not {intent.instrument.type.value}"
    tif = intent.time_in_force
    if tif is not TimeInForce.GTC and sessions.xnys().session_at(now) is None:
        when = now.strftime("%A %Y-%m-%d %H:%M %Z")
        return f"market closed ({when}): a {tif.value} order needs an open NYSE session"
    return None


def data_error(exc: RequestError) -> str:
    if exc.code == 354:
        return (
            "no live market-data subscription for it at IB (error 354): subscribe, or set"
            " market_data_type: 3 in policies/broker.yaml to use IB's delayed data"
        )
    if exc.code == 200:
        return "unknown symbol at IB (error 200)"
    return f"IB error {exc.code}: {exc.message}"
