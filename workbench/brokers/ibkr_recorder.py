"""What IB says about our orders, written to the audit log exactly once, on the recorder's thread.

The IB session's thread turns each ib_async callback into a small immutable *fact* (a status, an
error, a fill with its commission) and queues it; it never touches SQLite, so a slow disk or a
caller holding the write lock never stalls the socket. The recorder thread applies the facts in
order, each in one audit transaction: it matches the fact to the order row written before the
order was sent (by IB client and order id), folds it into the order (never backwards: a done
order stays done, fills drive Filled), records the change as an ``OrderUpdate`` and its audit
event (the parent's lifecycle event when the order table allows it, else ``BrokerOrderUpdated``),
and wakes whoever waits. A fill is recorded once: its execId is unique in ``ibkr_fills``, so a
duplicate report, a replayed one at reconnect, or one that arrives twice is dropped.

On every (re)connect the session hands over what IB listed (a :class:`ReconcileFact`); it is
matched to the log (``ibkr_reconcile``) and applied in one transaction: IB's status of our
orders, the executions that came while away (once each), UNKNOWN for a proposal whose order IB
does not hold (``OrderOutcomeUnknown``: never re-sent; new orders on its symbol refused until an
approver resolves it with ``workbench reconcile resolve``), the orders IB holds that this home
never sent (reported), and a ``ReconciliationRun``. Only then is the link READY. No ib_async.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from workbench.audit import AuditLog, EventType, Transaction
from workbench.brokers import ibkr_reconcile as reconcile
from workbench.brokers.ibkr_reconcile import BrokerView
from workbench.brokers.ibkr_store import IbkrStore, SentOrder
from workbench.clock import Clock
from workbench.errors import BrokerError
from workbench.events import (
    BrokerConnected,
    BrokerReconciliation,
    BrokerUpdate,
    ForeignOrder,
    OrderOutcomeUnknown,
    ReconciliationRun,
)
from workbench.lifecycle import (
    TERMINAL_STATES,
    advance,
    can_advance,
    current_state,
    record_broker_update,
)
from workbench.models import Side
from workbench.orders import DONE_STATES, BrokerOrder, Fill, OrderRole, OrderStatus, OrderUpdate

ACTOR = "ibkr-broker"
log = logging.getLogger("workbench.brokers.ibkr")

IB_STATUS = {
    "PreSubmitted": OrderStatus.PRE_SUBMITTED,
    "Submitted": OrderStatus.SUBMITTED,
    "Cancelled": OrderStatus.CANCELLED,
    "ApiCancelled": OrderStatus.CANCELLED,
    "Inactive": OrderStatus.REJECTED,
}
PARENT_EVENTS = {
    OrderStatus.PRE_SUBMITTED: EventType.ORDER_CONFIRMED,
    OrderStatus.SUBMITTED: EventType.ORDER_CONFIRMED,
    OrderStatus.PARTIALLY_FILLED: EventType.ORDER_PARTIALLY_FILLED,
    OrderStatus.FILLED: EventType.ORDER_FILLED,
    OrderStatus.CANCELLED: EventType.ORDER_CANCELLED,
    OrderStatus.REJECTED: EventType.ORDER_REJECTED,
}
# Order errors that leave the order as it was (a warning, a note): never a state change.
NOTES = frozenset({399, 404, 10167, 10349, 161, 10147, 10148, *range(2100, 2200)})
CANCELLED_CODES = frozenset({202})
AVG_QUANTUM = Decimal("0.0001")
BATCH = 256  # facts recorded in one transaction at most


@dataclass(frozen=True, slots=True)
class StatusFact:
    """IB's status word for one of our orders (orderStatus / openOrder)."""

    client_id: int
    ib_order_id: int
    perm_id: int | None
    status: str


@dataclass(frozen=True, slots=True)
class ErrorFact:
    """An error or warning IB sent for one of our orders."""

    client_id: int
    ib_order_id: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class FillFact:
    """One execution of one of our orders, with its commission report."""

    client_id: int
    ib_order_id: int
    perm_id: int | None
    exec_id: str
    shares: Decimal
    price: Decimal
    time: datetime
    commission: Decimal
    currency: str
    realized_pnl: Decimal


Trigger = Literal["connect", "reconnect", "data-lost"]


@dataclass(frozen=True, slots=True)
class ReconnectMark:
    """A connection (or a 1101) is about to synchronise: executions recorded from here on are
    reported as adopted by the reconciliation that follows."""

    trigger: Trigger


@dataclass(frozen=True, slots=True)
class ReconcileFact:
    """What IB listed on connection ``generation``: reconcile it with the log."""

    generation: int
    trigger: Trigger
    client_id: int
    server_version: int
    view: BrokerView


@dataclass(frozen=True, slots=True)
class Marker:
    """Set once every fact queued before it has been applied."""

    done: threading.Event


Fact = StatusFact | ErrorFact | FillFact | ReconnectMark | ReconcileFact


class Recorder:
    """Applies facts to the store and the audit log on its own thread, in the order they came."""

    def __init__(self, log_: AuditLog, clock: Clock) -> None:
        self.log = log_
        self.store = IbkrStore(log_)
        self.label = ""
        self.clock = clock
        self.connected: BrokerConnected | None = None  # recorded again on each reconnect
        self.on_reconciled: Callable[[int], object] = lambda _generation: None
        self._mark: int | None = None
        self._after: list[Callable[[], object]] = []
        self._queue: queue.SimpleQueue[Fact | Marker | None] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ibkr-recorder", daemon=True)

    def start(self, label: str) -> None:
        """Start applying facts (those queued while connecting first), labelled ``label``."""
        self.label = label
        self._thread.start()

    # -- the IB side -------------------------------------------------------------------------

    def put(self, fact: Fact) -> None:
        """Queue a fact (any thread; never blocks)."""
        self._queue.put(fact)

    # -- the caller side ---------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds, re-checked after each fact applied; False on timeout."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def wake(self) -> None:
        """Make waiters re-check their condition (e.g. the connection dropped)."""
        with self._changed:
            self._changed.notify_all()

    def drain(self, timeout: float) -> None:
        """Return once every fact queued so far has been applied."""
        if not self._thread.is_alive():
            raise BrokerError("the IBKR recorder is not running")
        marker = Marker(threading.Event())
        self._queue.put(marker)
        if not marker.done.wait(timeout):
            raise BrokerError(f"the IBKR recorder did not catch up within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Apply what is queued, then end the thread (never started: nothing to apply)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- the recorder thread -----------------------------------------------------------------

    def _run(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get())
            facts = [f for f in batch if f is not None and not isinstance(f, Marker)]
            if facts:
                self._record_all(facts)
            for item in batch:
                if isinstance(item, Marker):
                    item.done.set()
            running = None not in batch
            with self._changed:
                self._changed.notify_all()

    def _record_all(self, facts: list[Fact]) -> None:
        """Everything that came together in one transaction (one fsync); should one fact fail,
        each is recorded on its own, so only that one is lost, and it is logged as an error."""
        self._after.clear()
        try:
            with self.log.transaction() as tx:
                for fact in facts:
                    self._apply(tx, fact)
            for then in self._after:
                then()
            return
        except Exception:
            if len(facts) == 1:
                log.exception("could not record %r", facts[0])
                return
        for fact in facts:
            self._record_all([fact])

    def _apply(self, tx: Transaction, fact: Fact) -> None:
        if isinstance(fact, ReconnectMark):
            if self._mark is None:
                self._mark = self.store.last_fill_seq()
            return
        if isinstance(fact, ReconcileFact):
            self._reconcile(tx, fact)
            return
        sent = self.store.by_ib_key(fact.client_id, fact.ib_order_id)
        if sent is None:
            log.info("not one of this workbench's orders: %r", fact)
            return
        if isinstance(fact, FillFact):
            self._fill(tx, sent, fact)
        elif isinstance(fact, ErrorFact):
            self._error(tx, sent, fact)
        else:
            self._status(tx, sent, fact)

    def _status(self, tx: Transaction, sent: SentOrder, fact: StatusFact) -> None:
        target = IB_STATUS.get(fact.status)
        if target is None:  # Filled (fills drive it), PendingSubmit, PendingCancel, …
            return
        order = sent.order
        status = next_status(order, target, acked=sent.acked)
        if status is None:
            return
        reason = order.reason or ("cancelled at IB" if status is OrderStatus.CANCELLED else "")
        if status is OrderStatus.REJECTED:
            reason = order.reason or f"{fact.status} at IB"
        changed = self._changed_order(order, status, reason)
        self._record(tx, changed, fact.perm_id, message=_status_message(fact.status, changed))

    def _error(self, tx: Transaction, sent: SentOrder, fact: ErrorFact) -> None:
        order = sent.order
        text = f"IB error {fact.code}: {fact.message}"[:2000]
        if order.status in DONE_STATES and sent.acked:
            return
        if fact.code in NOTES or (sent.acked and fact.code not in (201, *CANCELLED_CODES)):
            if sent.acked:
                self._record(tx, order, None, message=text)
            return
        target = OrderStatus.CANCELLED if fact.code in CANCELLED_CODES else OrderStatus.REJECTED
        status = next_status(order, target, acked=sent.acked) or order.status
        self._record(tx, self._changed_order(order, status, text), None, message=text)

    def _fill(self, tx: Transaction, sent: SentOrder, fact: FillFact) -> None:
        if self.store.has_fill(fact.exec_id):
            return  # a duplicate, or a report replayed at reconnect: recorded once already
        order = sent.order
        filled = order.filled_quantity + fact.shares
        spent = (order.avg_fill_price or Decimal(0)) * order.filled_quantity
        average = ((spent + fact.price * fact.shares) / filled).quantize(AVG_QUANTUM)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED
        if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            status = order.status  # a late fill of a cancelled order: it stays cancelled
        changes = {"filled_quantity": filled, "avg_fill_price": average, "status": status,
                   "updated_at": self.clock.now()}  # fmt: skip
        changed = order.model_copy(update=changes)
        fill = Fill(
            exec_id=fact.exec_id,
            order_id=order.order_id,
            proposal_id=order.proposal_id,
            order_ref=order.order_ref,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            quantity=fact.shares,
            price=fact.price,
            commission=fact.commission,
            currency=fact.currency,
            realized_pnl=fact.realized_pnl,
            time=fact.time,
        )
        self.store.insert_fill(tx, fill)
        message = f"filled {fact.shares} @ {fact.price} (execId {fact.exec_id})"
        self._record(tx, changed, fact.perm_id, message=message, fill=fill)

    # -- reconciliation ----------------------------------------------------------------------

    def _reconcile(self, tx: Transaction, fact: ReconcileFact) -> None:
        """Apply what IB listed (see the module's docstring); the link is READY after commit."""
        found = reconcile.plan(self.store.sent(), fact.client_id, fact.view)
        awaiting = self._adopt_fills(tx, found)
        for row, seen in found.found:
            fresh = self._fresh(row)
            self._status(tx, fresh, StatusFact(fresh.client_id, fresh.ib_order_id, seen.perm_id,
                                               seen.status))  # fmt: skip
        missing = [r for r in found.missing if not self._settled(tx, r)]
        unknown = [pid for r in reconcile.unknown_parents(missing) if (pid := self._unknown(tx, r))]
        for row in missing:
            log.warning(
                "IB does not hold order %s (%s %s, proposal %s): %s",
                row.order.order_id,
                row.order.role.value,
                row.order.order_ref,
                row.order.proposal_id,
                "its outcome is unknown" if row.acked else "it may never have arrived",
            )
        for seen in found.foreign:
            log.warning("IB holds an order this home never sent: %r (reported, not adopted)", seen)
        mark, self._mark = self._mark, None
        since = mark if mark is not None else self.store.last_fill_seq()
        adopted = self.store.exec_ids_since(since)
        matched = sorted({r.order.order_id for r, _ in found.found})
        at_broker = BrokerReconciliation(
            trigger=fact.trigger, client_id=fact.client_id, open_orders=fact.view.open_orders,
            completed_orders=fact.view.completed_orders, executions=len(fact.view.fills),
            matched=tuple(matched), fills_adopted=tuple(adopted),
            not_at_ib=tuple(r.order.order_id for r in missing), unknown=tuple(unknown),
            foreign=tuple(_foreign(o) for o in found.foreign), awaiting_commission=awaiting,
        )  # fmt: skip
        if fact.trigger == "reconnect" and self.connected is not None:
            again = self.connected.model_copy(update={"server_version": fact.server_version})
            tx.append(EventType.BROKER_CONNECTED, again, actor=ACTOR)
        run = ReconciliationRun(submitted_without_broker_order=tuple(unknown), broker=self.label,
                                at_broker=at_broker)  # fmt: skip
        tx.append(EventType.RECONCILIATION_RUN, run, actor=ACTOR)
        generation = fact.generation
        self._after.append(lambda: self.on_reconciled(generation))

    def _adopt_fills(self, tx: Transaction, found: reconcile.Plan) -> tuple[str, ...]:
        """Record the executions of our orders not recorded yet (those with their commission);
        the exec ids still waiting for a commission report."""
        awaiting = []
        for row, fill in found.fills:
            if self.store.has_fill(fill.exec_id):
                continue
            if fill.commission is None:
                awaiting.append(fill.exec_id)
                continue
            fresh = self._fresh(row)
            self._fill(tx, fresh, FillFact(
                client_id=fresh.client_id, ib_order_id=fresh.ib_order_id, perm_id=fill.perm_id,
                exec_id=fill.exec_id, shares=fill.shares, price=fill.price, time=fill.time,
                commission=fill.commission, currency=fill.currency,
                realized_pnl=fill.realized_pnl,
            ))  # fmt: skip
        return tuple(awaiting)

    def _fresh(self, row: SentOrder) -> SentOrder:
        """The row as it stands now in this transaction."""
        fresh = self.store.by_order_id(row.order.order_id)
        assert fresh is not None
        return fresh

    def _settled(self, tx: Transaction, row: SentOrder) -> bool:
        """Whether the row's proposal is settled (terminal: e.g. resolved as never sent)."""
        pid = row.order.proposal_id
        return pid is not None and current_state(tx.log, pid) in TERMINAL_STATES

    def _unknown(self, tx: Transaction, row: SentOrder) -> str | None:
        """Mark the proposal of a parent IB does not hold UNKNOWN (when not already)."""
        pid = row.order.proposal_id
        if pid is None or not can_advance(tx, pid, EventType.ORDER_OUTCOME_UNKNOWN):
            return None
        answer = (
            f"after a reconnect IB lists no order {row.order.order_id} (orderRef"
            f" {row.order.order_ref}): "
            + ("it was acknowledged, then vanished" if row.acked else "it never acknowledged it")
        )
        unknown = OrderOutcomeUnknown(order_ref=row.order.order_ref, broker=self.label,
                                      broker_answer=answer, found_by="ibkr-reconnect")  # fmt: skip
        advance(tx, pid, EventType.ORDER_OUTCOME_UNKNOWN, unknown, actor=ACTOR)
        return pid

    # -- writing -----------------------------------------------------------------------------

    def _changed_order(self, order: BrokerOrder, status: OrderStatus, reason: str) -> BrokerOrder:
        return order.model_copy(update={"status": status, "reason": reason[:2000],
                                        "updated_at": self.clock.now()})  # fmt: skip

    def _record(
        self,
        tx: Transaction,
        order: BrokerOrder,
        perm_id: int | None,
        *,
        message: str,
        fill: Fill | None = None,
    ) -> None:
        """The order row, one update in the stream and its audit event, in ``tx``."""
        self.store.update_order(tx, order, perm_id)
        cursor = self.store.last_cursor() + 1
        update = OrderUpdate(cursor=cursor, order=order, fill=fill, message=message[:2000],
                             time=self.clock.now())  # fmt: skip
        self.store.insert_update(tx, update)
        recorded = BrokerUpdate(order=order, fill=fill, message=update.message, broker=self.label,
                                cursor=cursor, order_ref=order.order_ref)  # fmt: skip
        assert order.proposal_id is not None  # every row the adapter writes names its proposal
        event = PARENT_EVENTS.get(order.status) if order.role is OrderRole.PARENT else None
        if event is not None and can_advance(tx, order.proposal_id, event):
            advance(tx, order.proposal_id, event, recorded, actor=ACTOR)
        else:
            record_broker_update(tx, order.proposal_id, recorded, actor=ACTOR)


def next_status(order: BrokerOrder, target: OrderStatus, *, acked: bool) -> OrderStatus | None:
    """The order's status after IB reports ``target``; None when nothing changes.

    A done order stays done; an order with fills stays (partially) filled until fills say more;
    a rejection after a partial fill cancels the rest."""
    if acked and order.status in DONE_STATES:
        return None
    if order.filled_quantity > 0:
        if target in (OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED):
            return None
        if target is OrderStatus.REJECTED:
            return OrderStatus.CANCELLED
    if acked and target is order.status:
        return None
    return target


def _status_message(ib_status: str, order: BrokerOrder) -> str:
    if order.status is OrderStatus.PRE_SUBMITTED and order.role is OrderRole.PROTECTIVE_STOP:
        return "protective stop held by IB until the parent fills (PreSubmitted)"
    if order.status is OrderStatus.SUBMITTED and order.role is OrderRole.PROTECTIVE_STOP:
        return "protective stop working at IB (Submitted)"
    if order.status in (OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED):
        return f"accepted by IB ({ib_status})"
    return order.reason or ib_status


def _foreign(seen: reconcile.SeenOrder) -> ForeignOrder:
    return ForeignOrder(perm_id=seen.perm_id, client_id=seen.client_id, order_id=seen.order_id,
                        order_ref=seen.order_ref[:200], symbol=seen.symbol or "?",
                        side=Side(seen.side), quantity=abs(seen.quantity),
                        status=seen.status or "?")  # fmt: skip
