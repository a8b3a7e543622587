"""What the gateway answers to each client request (everything except the order engine itself)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from workbench.testing import history, replies
from workbench.testing import order_codec as oc
from workbench.testing.book import Instrument, Quote
from workbench.testing.ledger import SUMMARY_TAGS, value_rows
from workbench.testing.orders import Execution
from workbench.testing.requests import Request
from workbench.testing.session import Session, Stream
from workbench.testing.wire import Message, parse_bool, parse_int

if TYPE_CHECKING:
    from workbench.testing.core import Core

Handler = Callable[["Core", Session, Request], None]


# -- contracts and market data -----------------------------------------------------------------


def match_contract(core: Core, req: Request) -> Instrument | None:
    """The universe instrument a request's contract names, or None (IB answers 200)."""
    inst = core.book.instrument(req.get("symbol"), parse_int(req.get("conId")))
    if inst is None:
        return None
    wanted = (
        (req.get("secType"), (inst.sec_type,)),
        (req.get("currency"), (inst.currency,)),
        (req.get("exchange"), inst.valid_exchanges),
        (req.get("primaryExchange"), (inst.primary_exchange,)),
    )
    if any(value and value not in allowed for value, allowed in wanted):
        return None
    return inst


def contract_details(core: Core, session: Session, req: Request) -> None:
    req_id = parse_int(req.get("reqId"))
    inst = match_contract(core, req)
    if inst is None:
        session.send([replies.error(req_id, 200, replies.error_text(200))])
        return
    exchange = req.get("exchange") or "SMART"
    details = replies.contract_details(req_id, inst, exchange)
    session.send([details, replies.contract_details_end(req_id)])


def quote_ticks(req_id: int, quote: Quote, delayed: bool, delayed_by: int) -> list[Message]:
    """Tick messages for one quote; delayed data uses the delayed tick types and an older time."""
    ids = replies.DELAYED_TICKS if delayed else replies.LIVE_TICKS
    out: list[Message] = []
    sides = (
        ("bid", quote.bid, quote.bid_size),
        ("ask", quote.ask, quote.ask_size),
        ("last", quote.last, quote.last_size),
    )
    for name, price, size in sides:
        if price is not None:
            out.append(replies.tick_price(req_id, ids[name], price, size))
    if quote.close is not None:
        out.append(replies.tick_price(req_id, ids["close"], quote.close, Decimal(0)))
    if quote.volume is not None:
        out.append(replies.tick_size(req_id, ids["volume"], quote.volume))
    when = quote.time.timestamp() - (delayed_by if delayed else 0)
    out.append(replies.tick_string(req_id, ids["time"], str(int(when))))
    return out


def _feed(core: Core, session: Session, symbol: str) -> tuple[int, bool] | None:
    """(market data type, delayed?) this session gets for ``symbol``; None when it gets none."""
    requested = session.market_data_type
    frozen = symbol in core.book.frozen
    if core.book.is_live(symbol):
        return (2 if frozen and requested in (2, 4) else 1), False
    if requested in (3, 4):
        return (4 if frozen and requested == 4 else 3), True
    return None


def market_data(core: Core, session: Session, req: Request) -> None:
    req_id = parse_int(req.get("reqId"))
    inst = match_contract(core, req)
    if inst is None:
        session.send([replies.error(req_id, 200, replies.error_text(200))])
        return
    feed = _feed(core, session, inst.symbol)
    if feed is None:
        session.send([replies.error(req_id, 354, replies.error_text(354))])
        return
    data_type, delayed = feed
    out = [replies.tick_req_params(req_id)]
    if delayed:
        out.append(replies.error(req_id, 10167, replies.error_text(10167)))
    out.append(replies.market_data_type(req_id, data_type))
    quote = core.book.quote(inst.symbol)
    if quote is not None and not core.exchange.connectivity_lost:
        out += quote_ticks(req_id, quote, delayed, core.config.delayed_by_seconds)
    if parse_bool(req.get("snapshot")):
        out.append(replies.tick_snapshot_end(req_id))
    else:
        session.streams[req_id] = Stream(inst.symbol, delayed, data_type)
    session.send(out)


def historical_data(core: Core, session: Session, req: Request) -> None:
    """Daily bars only (see ``history``); anything else is refused with 322, as IB would."""
    req_id = parse_int(req.get("reqId"))
    inst = match_contract(core, req)
    if inst is None:
        session.send([replies.error(req_id, 200, replies.error_text(200))])
        return
    try:
        if req.get("barSizeSetting") != "1 day" or parse_bool(req.get("keepUpToDate")):
            raise history.HistoryError(322, "the test gateway serves daily bars only, not live")
        end = history.parse_end(req.get("endDateTime"), core.clock.now())
        duration = req.get("durationStr")
        bars = history.daily_bars(inst.symbol, end, duration, core.book.quote(inst.symbol))
    except history.HistoryError as exc:
        text = exc.args[0] if exc.code == 162 else replies.error_text(exc.code, exc.args[0])
        session.send([replies.error(req_id, exc.code, text)])
        return
    session.send([history.historical_data(req_id, end, duration, bars)])


def cancel_market_data(core: Core, session: Session, req: Request) -> None:
    session.streams.pop(parse_int(req.get("reqId")), None)


def market_data_type(core: Core, session: Session, req: Request) -> None:
    data_type = parse_int(req.get("marketDataType"), 1)
    if data_type in (1, 2, 3, 4):
        session.market_data_type = data_type


# -- orders ------------------------------------------------------------------------------------


def place_order(core: Core, session: Session, req: Request) -> None:
    assert session.client_id is not None
    core.exchange.place(session.client_id, req)


def cancel_order(core: Core, session: Session, req: Request) -> None:
    assert session.client_id is not None
    order_id = parse_int(req.get("orderId"))
    session.send(core.exchange.cancel_request(session.client_id, order_id))


def global_cancel(core: Core, session: Session, req: Request) -> None:
    core.exchange.cancel_all()


def _open_orders(core: Core, session: Session, everyone: bool) -> None:
    out: list[Message] = []
    for order in sorted(core.exchange.orders.values(), key=lambda o: o.perm_id):
        mine = order.client_id == session.client_id
        if order.is_active and (everyone or mine):
            out += [oc.open_order(order, session.version), oc.order_status(order)]
    session.send([*out, replies.open_order_end()])


def open_orders(core: Core, session: Session, req: Request) -> None:
    _open_orders(core, session, everyone=False)


def all_open_orders(core: Core, session: Session, req: Request) -> None:
    _open_orders(core, session, everyone=True)


def completed_orders(core: Core, session: Session, req: Request) -> None:
    out: list[Message] = []
    for order in sorted(core.exchange.orders.values(), key=lambda o: o.perm_id):
        if order.is_done:
            parent = core.exchange.by_key.get((order.client_id, order.parent_id))
            parent_perm = parent.perm_id if parent and order.is_child else 0
            out.append(oc.completed_order(order, session.version, parent_perm))
    session.send([*out, replies.completed_orders_end()])


def _time_filter(text: str) -> datetime | None:
    cleaned = text.strip().replace("-", " ")
    if not cleaned:
        return None
    parts = cleaned.split(" ")
    stamp = datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S")
    return stamp.replace(tzinfo=UTC)


def _execution_matches(e: Execution, req: Request, since: datetime | None) -> bool:
    client = parse_int(req.get("clientId"))
    side = {"BUY": "BOT", "SELL": "SLD"}.get(req.get("side"), req.get("side"))
    checks = (
        (req.get("account"), e.account),
        (req.get("symbol"), e.instrument.symbol),
        (req.get("secType"), e.instrument.sec_type),
        (side, e.side),
    )
    if any(want and want != have for want, have in checks):
        return False
    exchange = req.get("exchange")
    if exchange and exchange not in (e.exchange, e.instrument.primary_exchange):
        return False
    return (not client or client == e.client_id) and (since is None or e.time >= since)


def executions(core: Core, session: Session, req: Request) -> None:
    req_id = parse_int(req.get("reqId"))
    try:
        since = _time_filter(req.get("time"))
    except ValueError:
        text = replies.error_text(322, f"bad execution filter time {req.get('time')!r}")
        session.send([replies.error(req_id, 322, text)])
        return
    out: list[Message] = []
    for e in core.exchange.executions:
        if _execution_matches(e, req, since):
            out.append(oc.exec_details(e, req_id, session.version))
            out.append(oc.commission_report(e, core.config.currency))
    session.send([*out, replies.exec_details_end(req_id)])


# -- account -----------------------------------------------------------------------------------


def positions(core: Core, session: Session, req: Request) -> None:
    session.positions_sub = True
    out = [core.position_message(symbol) for symbol in sorted(core.ledger.positions)]
    session.send([*out, replies.position_end()])


def cancel_positions(core: Core, session: Session, req: Request) -> None:
    session.positions_sub = False


def account_updates(core: Core, session: Session, req: Request) -> None:
    account = req.get("account")
    if not parse_bool(req.get("subscribe")):
        session.account_sub = False
        return
    if account and account != core.config.account:
        text = replies.error_text(321, f"account {account} is not managed by this login")
        session.send([replies.error(-1, 321, text)])
        return
    session.account_sub = True
    out = core.account_value_messages()
    out += [core.portfolio_message(s) for s in sorted(core.ledger.positions)]
    out.append(replies.account_time(core.clock.now()))
    out.append(replies.account_download_end(core.config.account))
    session.send(out)


def account_updates_multi(core: Core, session: Session, req: Request) -> None:
    req_id = parse_int(req.get("reqId"))
    account = req.get("account")
    if account and account not in (core.config.account, "All"):
        text = replies.error_text(322, f"account {account} is not managed by this login")
        session.send([replies.error(req_id, 322, text)])
        return
    session.multi_subs.add(req_id)
    rows = value_rows(core.ledger, SUMMARY_TAGS, ledger_tags=True)
    out = [replies.account_update_multi(req_id, core.config.account, row) for row in rows]
    session.send([*out, replies.account_update_multi_end(req_id)])


def cancel_account_updates_multi(core: Core, session: Session, req: Request) -> None:
    session.multi_subs.discard(parse_int(req.get("reqId")))


def account_summary(core: Core, session: Session, req: Request) -> None:
    req_id = parse_int(req.get("reqId"))
    tags = tuple(t.strip() for t in req.get("tags").split(",") if t.strip())
    ledger = any(t.startswith("$LEDGER") for t in tags)
    rows = value_rows(core.ledger, tags, ledger_tags=ledger)
    account = core.config.account
    out = [replies.account_summary(req_id, account, *row) for row in rows]
    session.send([*out, replies.account_summary_end(req_id)])


# -- ids, time, accounts -----------------------------------------------------------------------


def request_ids(core: Core, session: Session, req: Request) -> None:
    assert session.client_id is not None
    session.send([replies.next_valid_id(core.exchange.next_valid_id(session.client_id))])


def current_time(core: Core, session: Session, req: Request) -> None:
    session.send([replies.current_time(int(core.clock.now().timestamp()))])


def managed_accounts(core: Core, session: Session, req: Request) -> None:
    session.send([replies.managed_accounts(core.config.account)])


def nothing(core: Core, session: Session, req: Request) -> None:
    """Acknowledged requests that need no answer (auto-bind, cancels of one-shot requests)."""


HANDLERS: dict[str, Handler] = {
    "reqContractDetails": contract_details,
    "reqMktData": market_data,
    "reqHistoricalData": historical_data,
    "cancelMktData": cancel_market_data,
    "reqMarketDataType": market_data_type,
    "placeOrder": place_order,
    "cancelOrder": cancel_order,
    "reqGlobalCancel": global_cancel,
    "reqOpenOrders": open_orders,
    "reqAllOpenOrders": all_open_orders,
    "reqCompletedOrders": completed_orders,
    "reqExecutions": executions,
    "reqPositions": positions,
    "cancelPositions": cancel_positions,
    "reqAccountUpdates": account_updates,
    "reqAccountUpdatesMulti": account_updates_multi,
    "cancelAccountUpdatesMulti": cancel_account_updates_multi,
    "reqAccountSummary": account_summary,
    "cancelAccountSummary": nothing,
    "reqIds": request_ids,
    "reqCurrentTime": current_time,
    "reqManagedAccts": managed_accounts,
    "reqAutoOpenOrders": nothing,
}
