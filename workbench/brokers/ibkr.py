"""The IBKR adapter: the ``Broker`` contract over ib_async, for IBKR *paper* accounts only.

Only ``workbench/brokers/ibkr*.py`` import ib_async. The session (``ibkr_session``) runs ib_async
on its own thread and loop; the recorder (``ibkr_recorder``) writes what IB says about our orders
to the audit log on another; this class is the synchronous face the workbench calls.

``submit`` proves the permit with the shared :class:`~workbench.permits.PermitCheck` first (a
refused permit never reaches the socket), checks what a broker would (account, prices, currency,
the NYSE session, the contract at IB: an unknown symbol is refused before any order), then writes
the order rows (IB order ids, orderRef = the permit's, which carries the proposal id and the
propagated-signal tag) in the same transaction, sends the bracket (parent with ``transmit`` off,
the protective stop as its child with ``transmit`` on, the account set) and waits on the
recorder's events — never a sleep, never a polling loop — until IB has answered: a market or IOC
order until it is done and its stop works, any other order until IB acknowledged it (then one
round trip, so a fill that came at once is recorded too). A 201 reject raises with IB's message.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from ib_async import BarData, RequestError, Ticker

from workbench import sessions
from workbench.audit import AuditLog, EventType, Transaction
from workbench.broker_policy import IbkrSettings
from workbench.brokers import ibkr_convert as convert
from workbench.brokers.base import BrokerLink
from workbench.brokers.ibkr_checks import data_error, is_active, order_id_for, order_problem
from workbench.brokers.ibkr_history import HistoryPacing
from workbench.brokers.ibkr_link import LinkState, Pause
from workbench.brokers.ibkr_recorder import Recorder
from workbench.brokers.ibkr_session import IbSession
from workbench.brokers.ibkr_store import COMPONENT, MIGRATIONS, IbkrStore, SentOrder
from workbench.brokers.paper_checks import parent_order, stop_child
from workbench.clock import Clock
from workbench.db import migrate
from workbench.errors import (
    BrokerError,
    BrokerUnavailableError,
    DuplicateOrderError,
    MarketDataError,
    OrderNotWorkingError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    PermitRefusedError,
    UnknownAccountError,
    UnknownOrderError,
    UnknownSymbolError,
)
from workbench.events import BrokerConnected, BrokerUpdate, PermitRefused, ReconciliationRun
from workbench.keys import ApprovalKey
from workbench.lifecycle import advance
from workbench.marketdata import Bar
from workbench.models import (
    Instrument,
    InstrumentType,
    MarketSnapshot,
    OrderType,
    PortfolioSnapshot,
    SubmitPermit,
    TimeInForce,
)
from workbench.orders import DONE_STATES, BrokerOrder, Fill, OrderStatus, OrderUpdate, SubmitAck
from workbench.permits import PermitCheck

ACTOR = "ibkr-broker"
READ_ONLY = "the IBKR session is read-only (policies/broker.yaml read_only): it sends no order"
IMMEDIATE = (OrderType.MKT,)


class IbkrBroker:
    """An IBKR paper account through IB Gateway or TWS (the loopback test gateway in tests)."""

    def __init__(
        self,
        log: AuditLog,
        settings: IbkrSettings,
        *,
        key: ApprovalKey | None,
        clock: Clock | None = None,
        config_hash: str,
        pause: Pause | None = None,
    ) -> None:
        """Not connected yet: use :meth:`connect`. ``key`` None (a proposer's handle) or
        ``settings.read_only`` connect read-only and refuse every submit. ``pause`` is how the
        reconnect loop waits (asyncio's sleep; tests move the gateway's clock instead)."""
        self.log = log
        self.settings = settings
        self.clock = clock or log.clock
        self.read_only = settings.read_only or key is None
        self.permits = PermitCheck(log, key)
        self.store = IbkrStore(log)
        self.config_hash = config_hash
        self.recorder = Recorder(log, self.clock)
        self.session = IbSession(settings, read_only=self.read_only, facts=self.recorder.put,
                                 clock=self.clock, on_lost=self.recorder.wake,
                                 pause=pause or asyncio.sleep)  # fmt: skip
        self.recorder.on_reconciled = self._reconciled
        self.history: HistoryPacing[list[BarData]] = HistoryPacing(self.clock)
        self._instruments: dict[str, Instrument] = {}
        self._types: dict[int, InstrumentType] = {}
        self._lock = threading.Lock()
        self._label = ""
        migrate(log.conn, COMPONENT, MIGRATIONS)

    @classmethod
    def connect(
        cls,
        log: AuditLog,
        settings: IbkrSettings,
        *,
        key: ApprovalKey | None,
        clock: Clock | None = None,
        config_hash: str,
        pause: Pause | None = None,
    ) -> IbkrBroker:
        """Connect to IB Gateway/TWS (paper only: a live port or account is refused before
        anything could trade), record ``BrokerConnected``, start recording order updates, and
        return once IB's orders and executions are reconciled with the log."""
        broker = cls(log, settings, key=key, clock=clock, config_hash=config_hash, pause=pause)
        broker.session.open()
        try:
            broker._connected()
        except BaseException:
            broker.close()
            raise
        return broker

    def _connected(self) -> None:
        s, session = self.settings, self.session
        gateway = " (loopback TEST gateway, synthetic prices)" if session.test_gateway else ""
        self._label = f"IBKR paper account {session.account} via {s.endpoint}{gateway}"
        connected = BrokerConnected(broker=self._label, account=session.account,
                                    endpoint=s.endpoint, client_id=s.client_id,
                                    server_version=session.server_version,
                                    test_gateway=session.test_gateway, read_only=self.read_only,
                                    config_hash=self.config_hash)  # fmt: skip
        self.log.append(EventType.BROKER_CONNECTED, connected, actor=ACTOR)
        self.recorder.connected = connected
        self.recorder.start(self._label)
        link, timeout = self.session.link, s.timeouts.connect_seconds
        if not self.recorder.wait_for(lambda: link.state is not LinkState.RECONCILING, timeout):
            raise BrokerUnavailableError(f"the reconciliation with IB took more than {timeout}s")
        if not link.ready:
            raise BrokerUnavailableError(f"not connected to IB: {link.refusal()}")

    def wait_ready(self, timeout: float, *, after: int = 0) -> bool:
        """Wait (on the recorder's events, no polling) until the link is READY on a connection
        newer than generation ``after``: connected and reconciled; False when it is not within
        ``timeout`` or the adapter gave up."""
        link = self.session.link
        done = (LinkState.GAVE_UP, LinkState.CLOSED)
        self.recorder.wait_for(
            lambda: (link.ready and link.generation > after) or link.state in done, timeout
        )
        return link.ready and link.generation > after

    def _reconciled(self, generation: int) -> None:
        self.session.link.reconciled(generation)
        self.recorder.wake()

    def link(self) -> BrokerLink:
        """The link to IB now (state, since when, connections), and the last reconciliation."""
        status = self.session.link.status()
        runs = self.log.events(types=(EventType.RECONCILIATION_RUN,), newest_first=True)
        last = next((e for e in runs if e.data_as(ReconciliationRun).at_broker is not None), None)
        at = None if last is None else datetime.fromisoformat(last.ts)
        found = "" if last is None else found_text(last.data_as(ReconciliationRun))
        return BrokerLink(status.state.value, status.connected_since, status.connections,
                          status.problem, at, found)  # fmt: skip

    def close(self) -> None:
        """Disconnect, then record what IB said before it (orders keep working at IB)."""
        self.session.close()
        self.recorder.stop()

    @property
    def label(self) -> str:
        """Who trades: "IBKR paper account DU… via host:port" (+ the test gateway's mark)."""
        return self._label

    @property
    def account(self) -> str:
        return self.session.account

    @property
    def test_gateway(self) -> bool:
        return self.session.test_gateway

    def now(self) -> datetime:
        return self.clock.now()

    # -- reads -----------------------------------------------------------------------------------

    def accounts(self) -> tuple[str, ...]:
        return (self.account,)

    def portfolio(self, account: str) -> PortfolioSnapshot:
        """The account as IB last reported it (values and positions, read after a round trip),
        stamped with the clock's now."""
        if account != self.account:
            raise UnknownAccountError(account)
        values, items = self.session.call(self.session.account_view(), "the account snapshot")
        for item in items:
            if item.contract.conId not in self._types and item.position:
                self.instrument(item.contract.symbol)
        figures = convert.account_figures(values, account, self.settings.currency)
        positions = convert.positions_from(items, self._types)
        return convert.portfolio_from(figures, positions, account=account,
                                      currency=self.settings.currency, at=self.now(),
                                      label=self.label)  # fmt: skip

    def instrument(self, symbol: str) -> Instrument:
        """The contract IB qualifies for ``symbol`` (cached); unknown: UnknownSymbolError."""
        with self._lock:
            known = self._instruments.get(symbol)
        if known is not None:
            return known
        plain = Instrument(type=InstrumentType.STK, symbol=symbol, currency=self.settings.currency)
        try:
            details = self.session.call(self.session.details(convert.contract_for(plain)),
                                        f"the {symbol} contract")  # fmt: skip
        except RequestError as exc:
            if exc.code == 200:
                raise UnknownSymbolError(symbol) from None
            raise MarketDataError(symbol, f"IB error {exc.code}: {exc.message}") from None
        found = convert.instrument_from(symbol, details)
        with self._lock:
            self._instruments[symbol] = found
            assert found.con_id is not None
            self._types[found.con_id] = found.type
        return found

    def market_snapshot(self, instrument: Instrument) -> MarketSnapshot:
        """A snapshot dated by IB's tick time and labelled live, frozen or delayed."""
        qualified = self.instrument(instrument.symbol)
        synthetic, label = self.test_gateway, self.label

        def read(ticker: Ticker) -> MarketSnapshot:
            return convert.snapshot_from(qualified, ticker, label=label, synthetic=synthetic)

        contract = convert.contract_for(qualified)
        what = f"a {instrument.symbol} quote"
        try:
            return self.session.call(self.session.quote(contract, read), what)
        except RequestError as exc:
            raise MarketDataError(instrument.symbol, data_error(exc)) from None

    def bars(self, symbol: str, end: date, n: int) -> tuple[Bar, ...]:
        """The ``n`` completed daily bars ending on ``end`` or before (IB's, regular hours)."""
        qualified = self.instrument(symbol)
        calendar = sessions.xnys()
        through = min(end, calendar.last_closed(self.now()).day)
        first = calendar.ending(through, n)[0].day
        days = (calendar.local_date(self.now()) - first).days + 1
        duration = f"{days} D" if days <= 365 else f"{days // 365 + 1} Y"
        key = (qualified.con_id, duration)
        found = self.history.recent(key)  # an identical request within 15 s: IB's answer again
        if found is None:
            self.history.admit(symbol)  # at most 60 in 10 minutes (IB's pacing)
            try:
                found = self.session.call(
                    self.session.history(convert.contract_for(qualified), duration),
                    f"{symbol} daily bars",
                )
            except RequestError as exc:
                raise MarketDataError(symbol, data_error(exc)) from None
            self.history.answered(key, found)
        bars = convert.bars_from(symbol, found, through=through, label=self.label,
                                 synthetic=self.test_gateway)[-n:]  # fmt: skip
        if len(bars) < n:
            raise MarketDataError(symbol, f"IB has {len(bars)} daily bars to {through}, {n} needed")
        return tuple(bars)

    def orders(self) -> tuple[BrokerOrder, ...]:
        return tuple(self.store.orders())

    def open_orders(self) -> tuple[BrokerOrder, ...]:
        return tuple(o for o in self.store.orders() if o.is_active)

    def executions(self) -> tuple[Fill, ...]:
        return tuple(self.store.fills())

    def updates(self, after: int = 0) -> tuple[OrderUpdate, ...]:
        return tuple(self.store.updates(after))

    def settle(self) -> None:
        """Wait until everything IB has sent so far is recorded (one round trip, then the
        recorder catches up): a barrier, not a sleep."""
        self.session.call(self.session.barrier(), "a round trip")
        self.recorder.drain(self.settings.timeouts.request_seconds)

    # -- submit ----------------------------------------------------------------------------------

    def submit(self, permit: SubmitPermit) -> SubmitAck:
        """Prove the permit, check, record, send the bracket, wait for IB's answer."""
        if self.log.conn.in_transaction:
            raise BrokerError("submit runs after the permit's transaction has committed")
        generation = self.session.link.generation
        with self.log.transaction() as tx:
            claimed = self._claim(tx, permit)
        if isinstance(claimed, BrokerError):
            raise claimed
        self._send(permit, claimed, generation)
        return self._answer(permit, claimed, generation)

    def _claim(self, tx: Transaction, permit: SubmitPermit) -> list[SentOrder] | BrokerError:
        """In one transaction: refuse, reject, or write the rows of the orders about to go."""
        existing = self.store.parent_for(permit.proposal_id, permit.order_ref)
        if existing is not None:
            self._refuse(tx, permit, f"duplicate of order {existing.order.order_id}")
            return DuplicateOrderError(permit.proposal_id, existing.order.order_id)
        problem = self.permits.problem(permit, lambda: self._held(permit))
        if problem is None and self.read_only:
            problem = READ_ONLY
        if problem is None and not self.session.link.ready:
            problem = f"nothing was sent: {self.session.link.refusal()}"
        if problem is not None:
            self._refuse(tx, permit, problem)
            return PermitRefusedError(problem, proposal_id=permit.proposal_id)
        found = self._rejection(permit)
        if isinstance(found, str):
            self._reject(tx, permit, found)
            return OrderRejectedError(found, proposal_id=permit.proposal_id)
        return self._write_orders(tx, permit, found)

    def _rejection(self, permit: SubmitPermit) -> str | Instrument:
        """Why a broker would refuse the permit's order before sending it, else the contract."""
        intent, now = permit.intent, self.now()
        reason = order_problem(permit, self.account, self.settings.currency, now)
        if reason is not None:
            return reason
        try:
            qualified = self.instrument(intent.symbol)
        except UnknownSymbolError:
            return f"unknown symbol {intent.symbol}: IB has no such contract (error 200)"
        if qualified.type is not intent.instrument.type:
            return f"{intent.symbol} is {qualified.type.value} at IB, the order says" \
                   f" {intent.instrument.type.value}"  # fmt: skip
        asked = intent.instrument.con_id
        if asked is not None and asked != qualified.con_id:
            return f"{intent.symbol}: conId {asked} is not IB's {qualified.con_id}"
        return qualified

    def _write_orders(
        self, tx: Transaction, permit: SubmitPermit, qualified: Instrument
    ) -> list[SentOrder]:
        count, client = 1 if permit.protective_stop is None else 2, self.settings.client_id
        floor = self.store.highest_order_id(client) + 1
        ids = self.session.call(self.session.next_ids(count, floor), "order ids")
        now = self.now()
        parent = parent_order(permit, order_id_for(client, ids[0]), now)
        parent = parent.model_copy(update={"instrument": qualified, "account": self.account})
        orders = [parent]
        child = stop_child(permit, parent, order_id_for(client, ids[-1]))
        if child is not None:
            orders.append(child)
        sent = [SentOrder(client, i, None, False, now, o) for i, o in zip(ids, orders, strict=True)]
        try:
            for row in sent:
                self.store.insert_sent(tx, row)
        except sqlite3.IntegrityError:
            raise BrokerError(
                f"IB gave order ids {ids} that this home already used for client {client}: was"
                " the API order-id sequence reset in TWS? Use another --client-id"
            ) from None
        return sent

    def _send(self, permit: SubmitPermit, sent: list[SentOrder], generation: int) -> None:
        parent, children = sent[0], sent[1:]
        contract = convert.contract_for(parent.order.instrument)
        placed = [convert.ib_order(parent.order, parent.ib_order_id, parent_id=0,
                                   transmit=not children)]  # fmt: skip
        placed += [
            convert.ib_order(c.order, c.ib_order_id, parent_id=parent.ib_order_id,
                             transmit=i == len(children) - 1)
            for i, c in enumerate(children)
        ]  # fmt: skip
        for ib_order, row in zip(placed, sent, strict=True):
            ib_order.ocaGroup = row.order.oca_group or ""
        try:
            what = "placing the order"
            self.session.call(self.session.place(contract, placed, generation), what)
        except BrokerError as exc:
            raise OrderOutcomeUnknownError(
                f"sending to IB failed ({exc}): the order may or may not be at IB; nothing is"
                " re-sent; after the reconnect it is adopted if IB holds it, else marked"
                " UNKNOWN (`workbench reconcile`)", proposal_id=permit.proposal_id,
            ) from None  # fmt: skip

    def _answer(self, permit: SubmitPermit, sent: list[SentOrder], generation: int) -> SubmitAck:
        ids = [row.order.order_id for row in sent]
        immediate = permit.intent.order_type in IMMEDIATE or (
            permit.intent.time_in_force is TimeInForce.IOC
        )
        timeout = self.settings.timeouts.order_seconds

        def cut() -> bool:
            return self.session.interrupted(generation)

        answered = self.recorder.wait_for(lambda: self._answered(ids, immediate, cut), timeout)
        rows = [self._row(i) for i in ids]
        if not rows[0].acked:
            why = self.session.link.refusal() if cut() else f"no answer in {timeout}s"
            raise OrderOutcomeUnknownError(
                f"IB has not acknowledged the order ({why}): it may be working; nothing is"
                " re-sent; after a reconnect it is adopted if IB holds it, else marked UNKNOWN"
                " (`workbench reconcile`)", proposal_id=permit.proposal_id,
            )  # fmt: skip
        rejected = rows[0].order.status is OrderStatus.REJECTED
        if answered and (rejected or not immediate) and not cut():
            self.settle()  # what came with the answer: a marketable order's fill, a leg's reject
            rows = [self._row(i) for i in ids]
        parent = rows[0].order
        if parent.status is OrderStatus.REJECTED:
            raise OrderRejectedError(parent.reason, proposal_id=permit.proposal_id)
        return SubmitAck(
            broker=self.label, parent=parent, children=tuple(r.order for r in rows[1:])
        )

    def _answered(self, ids: list[str], immediate: bool, cut: Callable[[], bool]) -> bool:
        if cut():
            return True
        rows = [self._row(i) for i in ids]
        parent = rows[0]
        if not parent.acked:
            return False
        if not immediate or parent.order.status is OrderStatus.REJECTED:
            return True
        if parent.order.status not in DONE_STATES:
            return False
        released = OrderStatus.PRE_SUBMITTED if parent.order.status is OrderStatus.FILLED else None
        return all(r.acked and r.order.status is not released for r in rows[1:])

    def _row(self, order_id: str) -> SentOrder:
        row = self.store.by_order_id(order_id)
        if row is None:
            raise UnknownOrderError(order_id)
        return row

    def _held(self, permit: SubmitPermit) -> Decimal:
        found = self.portfolio(self.account).position(permit.intent.symbol)
        return found.quantity if found else Decimal(0)

    def _refuse(self, tx: Transaction, permit: SubmitPermit, reason: str) -> None:
        refused = PermitRefused(reason=reason[:2000], order_ref=permit.order_ref,
                                submitted_seq=permit.submitted_seq, broker=self.label)  # fmt: skip
        tx.append(EventType.PERMIT_REFUSED, refused, actor=ACTOR,
                  proposal_id=permit.proposal_id)  # fmt: skip

    def _reject(self, tx: Transaction, permit: SubmitPermit, reason: str) -> None:
        """A rejection before anything was sent: recorded on the proposal, no order exists."""
        update = BrokerUpdate(order=None, fill=None, message=reason[:2000], broker=self.label,
                              cursor=None, order_ref=permit.order_ref)  # fmt: skip
        advance(tx, permit.proposal_id, EventType.ORDER_REJECTED, update, actor=ACTOR)

    # -- cancel ----------------------------------------------------------------------------------

    def cancel(
        self, *, order_id: str | None = None, proposal_id: str | None = None
    ) -> tuple[BrokerOrder, ...]:
        """Cancel one order (IB cancels a parent's children with it), or every active order of
        a proposal; waits for IB's confirmation and returns the orders it cancelled."""
        if (order_id is None) == (proposal_id is None):
            raise BrokerError("cancel needs exactly one of order_id or proposal_id")
        if self.log.conn.in_transaction:
            raise BrokerError("cancel runs outside an audit transaction")
        targets, watched = self._cancel_targets(order_id, proposal_id)
        if self.read_only:
            raise BrokerError(f"{READ_ONLY}: cancel in TWS, or open the workbench to trade")
        for row in targets:
            what = f"cancelling {row.order.order_id}"
            self.session.call(self.session.cancel(row.client_id, row.ib_order_id), what)
        ids = [row.order.order_id for row in watched]
        timeout = self.settings.timeouts.order_seconds
        if not self.recorder.wait_for(
            lambda: all(not is_active(self._row(i)) for i in ids), timeout
        ):
            raise BrokerError(f"IB has not confirmed cancelling {', '.join(ids)} in {timeout}s:"
                              " it may still work")  # fmt: skip
        done = [self._row(i).order for i in ids]
        return tuple(o for o in done if o.status is OrderStatus.CANCELLED)

    def _cancel_targets(
        self, order_id: str | None, proposal_id: str | None
    ) -> tuple[list[SentOrder], list[SentOrder]]:
        """(orders to cancel at IB, orders whose cancellation to wait for)."""
        if order_id is not None:
            row = self.store.by_order_id(order_id)
            if row is None:
                raise UnknownOrderError(order_id)
            rows = [row]
        else:
            assert proposal_id is not None
            rows = self.store.for_proposal(proposal_id)
            if not rows:
                raise UnknownOrderError(proposal_id)
        active = [r for r in rows if is_active(r)]
        if not active:
            raise OrderNotWorkingError(rows[0].order.order_id, rows[0].order.status.value)
        parents = [r for r in active if r.order.parent_id is None]
        if not parents:
            return active, active
        family = self.store.for_proposal(str(parents[0].order.proposal_id))
        kids = [
            r for r in family if r.order.parent_id == parents[0].order.order_id and is_active(r)
        ]
        return parents, parents + kids


def found_text(run: ReconciliationRun) -> str:
    """What a reconciliation with IB found, in words."""
    at = run.at_broker
    if at is None:
        return ""
    text = (
        f"{at.trigger}: {len(at.matched)} of our orders at IB, {len(at.fills_adopted)} fills"
        f" adopted, {len(at.unknown)} marked UNKNOWN, {len(at.foreign)} orders this home never"
        " sent"
    )
    if at.foreign:
        text += " (" + "; ".join(
            f"{o.side.value} {o.quantity} {o.symbol} permId {o.perm_id} {o.status}"
            for o in at.foreign
        ) + ")"  # fmt: skip
    return text
