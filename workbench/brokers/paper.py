"""The embedded paper broker: deterministic, durable, and written through the audit log.

State (account cash, positions, orders, fills, the update stream) lives in tables of the workbench
home's SQLite file and changes only inside an audit transaction together with the event that
records it: the parent order's lifecycle events via :func:`workbench.lifecycle.advance`, bracket
children's as ``BrokerOrderUpdated``. Closing and reopening the home gives the same broker.

Market time moves only with the injected clock (the log stamps events with its own, wall, clock).
``submit`` matches a new order against the quote at the clock's now; :meth:`PaperBroker.process`
matches every working order over the time since it was last looked at: a whole past session against
its bar (open, low, high), the current session along the day's open-to-close path. Stops trigger on
that range; limits fill when touched; fills are capped per order and session at
``max_volume_fraction`` of the day's volume; DAY orders expire at the close; a bracket's protective
stop starts working when its parent is done, for the quantity that filled, and OCA siblings cancel
each other.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from pydantic import ValidationError

from workbench import db, home
from workbench.audit import AuditLog, EventType, Transaction
from workbench.brokers import paper_checks
from workbench.brokers.base import (
    PAPER_LABEL,
    BrokerOrder,
    Fill,
    OrderRole,
    OrderStatus,
    OrderUpdate,
    SubmitAck,
)
from workbench.brokers.paper_rules import PaperConfig, Terms, Window, match
from workbench.brokers.paper_store import COMPONENT, MIGRATIONS, AccountRow, PaperStore, StoredOrder
from workbench.clock import Clock
from workbench.errors import (
    BrokerError,
    DuplicateOrderError,
    MarketDataError,
    OrderNotWorkingError,
    OrderRejectedError,
    PermitRefusedError,
    UnknownAccountError,
    UnknownOrderError,
)
from workbench.events import BrokerUpdate, PaperAccountOpened, PermitRefused
from workbench.keys import ApprovalKey
from workbench.lifecycle import advance, record_broker_update
from workbench.marketdata import Bar, MarketData
from workbench.models import (
    Instrument,
    MarketSnapshot,
    PortfolioSnapshot,
    Position,
    SubmitPermit,
    TimeInForce,
)
from workbench.permits import PermitCheck
from workbench.sessions import Session

ACTOR = "paper-broker"
PARENT_EVENTS = {
    OrderStatus.SUBMITTED: EventType.ORDER_CONFIRMED,
    OrderStatus.PARTIALLY_FILLED: EventType.ORDER_PARTIALLY_FILLED,
    OrderStatus.FILLED: EventType.ORDER_FILLED,
    OrderStatus.CANCELLED: EventType.ORDER_CANCELLED,
    OrderStatus.REJECTED: EventType.ORDER_REJECTED,
}


class PaperBroker:
    """A simulated broker whose state lives in the audit log's SQLite file."""

    def __init__(
        self,
        log: AuditLog,
        clock: Clock | None = None,
        *,
        market: MarketData | None = None,
        config: PaperConfig | None = None,
        key: ApprovalKey | None,
    ) -> None:
        """The broker on ``log``'s home. Market time is ``clock`` (a replay's fixed clock),
        else ``log.clock``; the log stamps its events with its own (wall) clock regardless.

        ``key`` is the home's approval key, with which every permit is proven before anything is
        sent (:class:`~workbench.permits.PermitCheck`); a broker opened with ``key=None`` (a
        read-only handle) refuses every submit."""
        self.log = log
        self.clock: Clock = clock if clock is not None else log.clock
        self.permits = PermitCheck(log, key)
        self.market = market if market is not None else MarketData()
        self.config = config if config is not None else PaperConfig()
        self.store = PaperStore(log)
        self._owns_log = False
        db.migrate(log.conn, COMPONENT, MIGRATIONS)
        self._open_account()

    @classmethod
    def open(
        cls,
        home_dir: str | Path,
        clock: Clock | None = None,
        *,
        market: MarketData | None = None,
        config: PaperConfig | None = None,
        with_key: bool = True,
    ) -> PaperBroker:
        """The paper broker of the workbench home ``home_dir`` (closing it closes its log); with
        ``with_key=False`` it never loads the approval key and refuses every submit."""
        key = ApprovalKey(home_dir) if with_key else None
        log = AuditLog(home.db_path(home_dir), clock=clock)
        broker = cls(log, market=market, config=config, key=key)
        broker._owns_log = True
        return broker

    def link(self) -> None:
        """The embedded paper broker has no connection."""
        return None

    def close(self) -> None:
        if self._owns_log:
            self.log.close()

    @property
    def label(self) -> str:
        return PAPER_LABEL

    def now(self) -> datetime:
        return self.clock.now()

    def _open_account(self) -> None:
        cfg = self.config
        if self.store.account(cfg.account) is not None:
            return
        row = AccountRow(cfg.account, cfg.currency, cfg.starting_cash, cfg.starting_cash)
        with self.log.transaction() as tx:
            self.store.open_account(tx, row, self.now())
            opened = PaperAccountOpened(account=cfg.account, currency=cfg.currency,
                                        broker=self.label, starting_cash=cfg.starting_cash,
                                        config=cfg)  # fmt: skip
            tx.append(EventType.PAPER_ACCOUNT_OPENED, opened, actor=ACTOR)

    # -- reads -----------------------------------------------------------------------------------

    def accounts(self) -> tuple[str, ...]:
        return self.store.accounts()

    def portfolio(self, account: str) -> PortfolioSnapshot:
        """The account marked at the clock's now (mid in session, else the last close)."""
        row = self.store.account(account)
        if row is None:
            raise UnknownAccountError(account)
        now = self.now()
        positions = tuple(
            Position(instrument=i, quantity=b.quantity, avg_cost=b.avg_cost,
                     market_price=self.mark(i.symbol, now))
            for i, b in self.store.positions(account)
        )  # fmt: skip
        value = sum((p.market_value for p in positions), Decimal(0))
        gross = sum((abs(p.market_value) for p in positions), Decimal(0))
        nav = row.cash + value
        available = nav - gross * self.config.initial_margin
        return PortfolioSnapshot(
            account=account,
            currency=row.currency,
            positions=positions,
            cash=row.cash,
            net_liquidation=nav,
            available_funds=available,
            buying_power=max(Decimal(0), available / self.config.initial_margin),
            maint_margin=gross * self.config.maintenance_margin,
            init_margin=gross * self.config.initial_margin,
            timestamp=now,
            broker=self.label,
        )

    def mark(self, symbol: str, when: datetime) -> Decimal:
        price = self.market.quote(symbol, when).reference_price
        if price is None:
            raise MarketDataError(symbol, "no price to mark the position at")
        return price

    def instrument(self, symbol: str) -> Instrument:
        return self.market.instrument(symbol)

    def market_snapshot(self, instrument: Instrument) -> MarketSnapshot:
        return self.market.quote(instrument.symbol, self.now())

    def bars(self, symbol: str, end: date, n: int) -> tuple[Bar, ...]:
        """Completed bars only: a session still trading is never returned (no look-ahead)."""
        last = self.market.calendar.last_closed(self.now()).day
        return self.market.bars(symbol, min(end, last), n)

    def orders(self) -> tuple[BrokerOrder, ...]:
        return tuple(s.order for s in self.store.orders())

    def open_orders(self) -> tuple[BrokerOrder, ...]:
        return tuple(s.order for s in self.store.orders() if s.order.is_active)

    def executions(self) -> tuple[Fill, ...]:
        return tuple(self.store.fills())

    def updates(self, after: int = 0) -> tuple[OrderUpdate, ...]:
        return tuple(self.store.updates(after))

    # -- submit ----------------------------------------------------------------------------------

    def submit(self, permit: SubmitPermit) -> SubmitAck:
        """Accept, match and record the permit's order; a refusal is recorded, then raised."""
        if self.log.conn.in_transaction:
            raise BrokerError("submit runs after the permit's transaction has committed")
        with self.log.transaction() as tx:
            outcome = self._submit(tx, permit)
        if isinstance(outcome, BrokerError):
            raise outcome
        return outcome

    def _submit(self, tx: Transaction, permit: SubmitPermit) -> SubmitAck | BrokerError:
        existing = self.store.parent_for(permit.proposal_id, permit.order_ref)
        if existing is not None:
            self._refuse(tx, permit, f"duplicate of order {existing.order.order_id}")
            return DuplicateOrderError(permit.proposal_id, existing.order.order_id)
        problem = self.permits.problem(permit, lambda: self._held(permit))
        if problem is not None:
            self._refuse(tx, permit, problem)
            return PermitRefusedError(problem, proposal_id=permit.proposal_id)
        now, order_id = self.now(), f"PB{self.store.next_order_seq()}"
        reason = paper_checks.rejection(self, permit, now)
        if reason is not None:
            self._reject(tx, permit, order_id, reason, now)
            return OrderRejectedError(reason, proposal_id=permit.proposal_id)
        return self._accept(tx, permit, paper_checks.parent_order(permit, order_id, now), now)

    def _held(self, permit: SubmitPermit) -> Decimal:
        return self.store.book(permit.intent.account, permit.intent.symbol).quantity

    def _reject(
        self, tx: Transaction, permit: SubmitPermit, order_id: str, reason: str, now: datetime
    ) -> None:
        """Record the rejection: as an order when the intent makes one, else as the event alone."""
        try:
            order = paper_checks.parent_order(permit, order_id, now)
        except ValidationError:
            update = BrokerUpdate(order=None, fill=None, message=reason[:2000], broker=self.label,
                                  cursor=None, order_ref=permit.order_ref)  # fmt: skip
            advance(tx, permit.proposal_id, EventType.ORDER_REJECTED, update, actor=ACTOR)
            return
        rejected = order.model_copy(update={"status": OrderStatus.REJECTED, "reason": reason})
        self.store.insert_order(tx, rejected, now)
        self._emit(tx, rejected, message=reason)

    def _accept(
        self, tx: Transaction, permit: SubmitPermit, parent: BrokerOrder, now: datetime
    ) -> SubmitAck:
        self.store.insert_order(tx, parent, now)
        self._emit(tx, parent, message="accepted")
        child = paper_checks.stop_child(permit, parent, f"PB{self.store.next_order_seq()}")
        if child is not None:
            self.store.insert_order(tx, child, now)
            self._emit(tx, child, message="protective stop held until the parent fills")
        session = self.market.calendar.session_at(now)
        if session is not None:
            self._evaluate(tx, self._stored(parent.order_id), session, now, now)
        if parent.time_in_force is TimeInForce.IOC:
            self._cancel_if_active(tx, parent.order_id, "IOC: unfilled remainder cancelled")
        children = () if child is None else (self._stored(child.order_id).order,)
        return SubmitAck(broker=self.label, parent=self._stored(parent.order_id).order,
                         children=children)  # fmt: skip

    def _refuse(self, tx: Transaction, permit: SubmitPermit, reason: str) -> None:
        refused = PermitRefused(reason=reason[:2000], order_ref=permit.order_ref,
                                submitted_seq=permit.submitted_seq, broker=self.label)  # fmt: skip
        tx.append(EventType.PERMIT_REFUSED, refused, actor=ACTOR,
                  proposal_id=permit.proposal_id)  # fmt: skip

    # -- moving time -----------------------------------------------------------------------------

    def process(self) -> tuple[OrderUpdate, ...]:
        """Match every working order over the time up to the clock's now; return the updates."""
        now, before = self.now(), self.store.last_cursor()
        with self.log.transaction() as tx:
            working = self.store.working()
            if not working:
                return ()
            since = min(s.evaluated_until for s in working)
            for session in self.market.calendar.between(since, now):
                self._process_session(tx, session, now)
        return self.updates(before)

    def _process_session(self, tx: Transaction, session: Session, now: datetime) -> None:
        end = min(now, session.close)
        for order_id in [s.order.order_id for s in self.store.working()]:
            stored = self._stored(order_id)
            start = max(stored.evaluated_until, session.open)
            if stored.order.status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED) and (
                start < end
            ):
                self._evaluate(tx, stored, session, start, end)
        if session.close <= now:
            for stored in self.store.working():
                day_order = stored.order.time_in_force is TimeInForce.DAY
                if day_order and stored.order.created_at < session.close:
                    reason = "DAY order expired at the close"
                    self._cancel(tx, stored.order, reason, when=session.close)

    def _evaluate(
        self, tx: Transaction, stored: StoredOrder, session: Session, start: datetime, end: datetime
    ) -> None:
        order = stored.order
        bar = self.market.source.bar(order.instrument.symbol, session)
        terms = Terms(order.side, order.order_type, order.limit_price, order.stop_price,
                      stored.triggered)  # fmt: skip
        spread, slip = self.market.spread_bps, self.config.slippage_bps
        result = match(terms, self._window(bar, session, start, end), spread, slip)
        self.store.mark_evaluated(tx, order.order_id, end, result.triggered)
        if result.triggered and not stored.triggered and result.price is None:
            message = f"stop {order.stop_price} triggered; working as a limit"
            self._emit(tx, order, message=message, moves_lifecycle=False)
        cap = self._liquidity(bar) - self.store.filled_on(order.order_id, session.day)
        quantity = min(order.remaining, cap)
        if result.price is not None and quantity > 0:
            self._fill(tx, order, quantity, result.price, end, session)

    def _window(self, bar: Bar, session: Session, start: datetime, end: datetime) -> Window:
        if start <= session.open and end >= session.close:
            return Window(bar.open, bar.low, bar.high)
        first = self.market.mid_at(bar, session, start)
        last = self.market.mid_at(bar, session, end)
        return Window(first, min(first, last), max(first, last))

    def _liquidity(self, bar: Bar) -> Decimal:
        allowed = (self.config.max_volume_fraction * bar.volume).to_integral_value(ROUND_FLOOR)
        return max(Decimal(1), allowed)

    # -- fills, cancels, brackets ----------------------------------------------------------------

    def _fill(
        self,
        tx: Transaction,
        order: BrokerOrder,
        quantity: Decimal,
        price: Decimal,
        when: datetime,
        session: Session,
    ) -> None:
        fill, book, cash = paper_checks.execute(self, order, quantity, price, when)
        self.store.put_book(tx, order.account, order.instrument, book)
        self.store.set_cash(tx, order.account, cash)
        self.store.insert_fill(tx, fill, session.day)
        filled = order.filled_quantity + quantity
        average = (order.avg_fill_price or Decimal(0)) * order.filled_quantity + price * quantity
        done = filled == order.quantity
        updated = order.model_copy(update={
            "filled_quantity": filled,
            "avg_fill_price": (average / filled).quantize(Decimal("0.0001")),
            "status": OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
            "updated_at": self.now(),
        })  # fmt: skip
        self.store.update_order(tx, updated)
        self._emit(tx, updated, fill=fill, message=f"filled {quantity} @ {price}")
        if done:
            self._after_done(tx, updated, when, release_children=True)

    def _after_done(
        self, tx: Transaction, order: BrokerOrder, when: datetime, *, release_children: bool
    ) -> None:
        """A parent done releases its held children; a filled child cancels its OCA siblings."""
        if order.role is OrderRole.PARENT:
            for child in self.store.orders("parent_id = ?", (order.order_id,)):
                if child.order.status is OrderStatus.PRE_SUBMITTED:
                    self._release(tx, order, child.order, when, activate=release_children)
        elif order.oca_group is not None and order.status is OrderStatus.FILLED:
            siblings = self.store.orders("parent_id = ?", (order.parent_id,))
            for sib in siblings:
                same_group = sib.order.oca_group == order.oca_group
                if same_group and sib.order.is_active and sib.order.order_id != order.order_id:
                    reason = f"OCA: {order.order_id} is {order.status.value}"
                    self._cancel(tx, sib.order, reason, when=when)

    def _release(
        self,
        tx: Transaction,
        parent: BrokerOrder,
        child: BrokerOrder,
        when: datetime,
        *,
        activate: bool,
    ) -> None:
        """Start the child working from ``when`` for what the parent filled, or cancel it."""
        if not activate or parent.filled_quantity == 0:
            reason = f"parent {parent.order_id} is {parent.status.value} with nothing filled"
            self._cancel(tx, child, reason, when=when)
            return
        working = child.model_copy(update={"status": OrderStatus.SUBMITTED,
                                           "updated_at": self.now(),
                                           "quantity": parent.filled_quantity})  # fmt: skip
        self.store.update_order(tx, working)
        self.store.mark_evaluated(tx, child.order_id, when, False)
        self._emit(tx, working, message=f"working: parent {parent.order_id} is done")

    def _cancel(
        self,
        tx: Transaction,
        order: BrokerOrder,
        reason: str,
        *,
        when: datetime | None = None,
        release_children: bool = True,
    ) -> BrokerOrder:
        """Cancel ``order`` as of ``when`` (default now), then release or cancel its children."""
        cancelled = order.model_copy(update={"status": OrderStatus.CANCELLED, "reason": reason,
                                             "updated_at": self.now()})  # fmt: skip
        self.store.update_order(tx, cancelled)
        self._emit(tx, cancelled, message=reason)
        self._after_done(tx, cancelled, when or self.now(), release_children=release_children)
        return cancelled

    def _cancel_if_active(self, tx: Transaction, order_id: str, reason: str) -> None:
        order = self._stored(order_id).order
        if order.is_active:
            self._cancel(tx, order, reason)

    def cancel(
        self, *, order_id: str | None = None, proposal_id: str | None = None
    ) -> tuple[BrokerOrder, ...]:
        """Cancel one order (its unfilled children go too), or every active order of a proposal."""
        if (order_id is None) == (proposal_id is None):
            raise BrokerError("cancel needs exactly one of order_id or proposal_id")
        with self.log.transaction() as tx:
            if order_id is not None:
                order = self._active(order_id)
                return (self._cancel(tx, order, "cancelled on request"),)
            assert proposal_id is not None
            return self._cancel_proposal(tx, proposal_id)

    def _active(self, order_id: str) -> BrokerOrder:
        stored = self.store.order(order_id)
        if stored is None:
            raise UnknownOrderError(order_id)
        if not stored.order.is_active:
            raise OrderNotWorkingError(order_id, stored.order.status.value)
        return stored.order

    def _cancel_proposal(self, tx: Transaction, proposal_id: str) -> tuple[BrokerOrder, ...]:
        orders = [s.order for s in self.store.orders("proposal_id = ?", (proposal_id,))]
        if not orders:
            raise UnknownOrderError(proposal_id)
        active = [o for o in orders if o.is_active]
        if not active:
            raise OrderNotWorkingError(orders[0].order_id, orders[0].status.value)
        ordered = sorted(active, key=lambda o: o.role is OrderRole.PARENT)  # children first
        reason = f"proposal {proposal_id} cancelled on request"
        return tuple(self._cancel(tx, o, reason, release_children=False) for o in ordered)

    # -- recording -------------------------------------------------------------------------------

    def _stored(self, order_id: str) -> StoredOrder:
        stored = self.store.order(order_id)
        if stored is None:
            raise UnknownOrderError(order_id)
        return stored

    def _emit(
        self,
        tx: Transaction,
        order: BrokerOrder,
        *,
        fill: Fill | None = None,
        message: str = "",
        moves_lifecycle: bool = True,
    ) -> None:
        """Record one order update: the stream row and its audit event, in ``tx``."""
        update = OrderUpdate(cursor=self.store.last_cursor() + 1, order=order, fill=fill,
                             message=message, time=self.now())  # fmt: skip
        self.store.insert_update(tx, update)
        recorded = BrokerUpdate(order=order, fill=fill, message=message, broker=self.label,
                                cursor=update.cursor, order_ref=order.order_ref)  # fmt: skip
        if order.proposal_id is None:
            raise BrokerError(f"order {order.order_id} belongs to no proposal")
        if order.role is OrderRole.PARENT and moves_lifecycle:
            event = PARENT_EVENTS[order.status]
            advance(tx, order.proposal_id, event, recorded, actor=ACTOR)
        else:
            record_broker_update(tx, order.proposal_id, recorded, actor=ACTOR)
