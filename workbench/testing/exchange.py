"""The order engine: accept, hold, work, fill, cancel and reject orders, step by step.

At each :class:`~workbench.testing.faults.Step` it asks the fault plan what to do and hands the
step's batch of messages to the outlet (the gateway), which routes it to the owning client (if
one is connected) and applies the faults. Orders keep working while no client is connected.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from workbench.testing import order_codec as oc
from workbench.testing import replies
from workbench.testing.book import Book
from workbench.testing.clock import Scheduler
from workbench.testing.config import GatewayConfig
from workbench.testing.faults import Delay, Drop, Effect, FaultPlan, PartialFill, Reject, Step
from workbench.testing.intake import Refusal, build_order, margin_shortfall, what_if_margin
from workbench.testing.ledger import Ledger
from workbench.testing.orders import Execution, WorkingOrder, fill_price
from workbench.testing.requests import Request
from workbench.testing.wire import Message, parse_int

log = logging.getLogger("workbench.testing.gateway")

PERM_BASE = 1_000_000_000
AVG_QUANTUM = Decimal("0.00000001")
Render = Callable[[int], Message]
Batch = list[tuple[str, Render]]


class Outlet(Protocol):
    """What the engine needs from the gateway around it."""

    def deliver(self, order: WorkingOrder, batch: Batch, effects: Sequence[Effect]) -> None: ...

    def account_changed(self, symbol: str) -> None: ...

    def is_connected(self, client_id: int) -> bool: ...


def fixed(msg: Message) -> tuple[str, Render]:
    return (msg.name, lambda _version: msg)


def ack_batch(order: WorkingOrder) -> Batch:
    snap = copy.copy(order)
    return [
        ("openOrder", lambda v: oc.open_order(snap, v)),
        ("orderStatus", lambda _v: oc.order_status(snap)),
    ]


def _first(effects: Sequence[Effect], kind: type) -> Effect | None:
    return next((e for e in effects if isinstance(e, kind)), None)


def _without(effects: Sequence[Effect], effect: Effect) -> list[Effect]:
    return [e for e in effects if e is not effect]


class _AckGate:
    """Holds back the work of acknowledged legs until the whole group is acknowledged."""

    def __init__(self) -> None:
        self.waiting: list[WorkingOrder] | None = []

    def done(self, order: WorkingOrder, work: Callable[[WorkingOrder], None]) -> None:
        if self.waiting is None:
            work(order)
        else:
            self.waiting.append(order)

    def release(self) -> list[WorkingOrder]:
        ready, self.waiting = self.waiting or [], None
        return ready


class Exchange:
    """Every order, execution and held bracket leg the gateway knows, and the rules they follow."""

    def __init__(
        self,
        config: GatewayConfig,
        book: Book,
        ledger: Ledger,
        scheduler: Scheduler,
        plan: FaultPlan,
        outlet: Outlet,
    ) -> None:
        self.config = config
        self.book = book
        self.ledger = ledger
        self.scheduler = scheduler
        self.plan = plan
        self.outlet = outlet
        self.orders: dict[int, WorkingOrder] = {}
        self.by_key: dict[tuple[int, int], WorkingOrder] = {}
        self.held: dict[int, dict[int, WorkingOrder]] = {}
        self.executions: list[Execution] = []
        self.last_ids: dict[int, int] = {}
        self.reject_symbols: dict[str, str] = {}
        self.connectivity_lost = False
        self.epoch = 1
        self._seq = 0
        self._perm = itertools.count(PERM_BASE + 1)
        self._exec = itertools.count(1)

    @property
    def now(self) -> datetime:
        return self.scheduler.clock.now()

    # -- ids -----------------------------------------------------------------------------------

    def next_valid_id(self, client_id: int) -> int:
        return self.last_ids.get(client_id, 0) + 1

    def _note_id(self, client_id: int, order_id: int) -> None:
        self.last_ids[client_id] = max(self.last_ids.get(client_id, 0), order_id)

    # -- receiving -----------------------------------------------------------------------------

    def place(self, client_id: int, req: Request) -> None:
        """A placeOrder from ``client_id``: a new order, a change to one, or a refusal."""
        order_id = parse_int(req.get("orderId"))
        self._note_id(client_id, order_id)
        held = self.held.get(client_id, {}).get(order_id)
        existing = self.by_key.get((client_id, order_id))
        if held is not None:
            self.held[client_id].pop(order_id)
        elif existing is not None:
            self._change(existing, req)
            return
        self._seq += 1
        seq = held.seq if held else self._seq
        order, refusal = build_order(self.config, self.book, client_id, order_id, req, seq)
        if refusal is None and order.instrument.symbol in self.reject_symbols:
            refusal = (201, self.reject_symbols[order.instrument.symbol])
        if order.what_if and refusal is None:
            margin = what_if_margin(self.config, self.book, self.ledger, order)
            order.status = "PreSubmitted"
            snap = copy.copy(order)
            reply: Render = lambda v: oc.open_order(snap, v, margin)  # noqa: E731
            self.outlet.deliver(order, [("openOrder", reply)], [])
            return
        self._receive(order, refusal)

    def place_manual(self, order: WorkingOrder) -> None:
        """An order typed into TWS by hand: no API client, orderId 0."""
        self._seq += 1
        order.seq = self._seq
        self._transmit(order)

    def _receive(
        self, order: WorkingOrder, refusal: Refusal | None, effects: list[Effect] | None = None
    ) -> None:
        if effects is None:
            effects = self.plan.take(Step.RECEIVED, order)
        delay = _first(effects, Delay)
        if isinstance(delay, Delay):
            rest = _without(effects, delay)
            self.scheduler.call_later(delay.seconds, lambda: self._receive(order, refusal, rest))
            return
        drop = _first(effects, Drop)
        reject = _first(effects, Reject)
        self.outlet.deliver(order, [], [e for e in effects if not isinstance(e, Reject)])
        if drop is not None:
            return
        if isinstance(reject, Reject):
            self._reject(order, reject.code, reject.reason, reject.then_inactive)
        elif refusal is not None:
            self._reject(order, *refusal)
        elif not order.transmit:
            self._hold(order)
        else:
            self._transmit(order)

    def _hold(self, order: WorkingOrder) -> None:
        if not self.outlet.is_connected(order.client_id):
            return  # its connection is gone: an untransmitted leg dies with it
        self.held.setdefault(order.client_id, {})[order.order_id] = order
        self.outlet.deliver(order, [], self.plan.take(Step.HELD, order))

    def discard_held(self, client_id: int) -> list[WorkingOrder]:
        """Forget a client's untransmitted bracket legs (its connection is gone)."""
        return list(self.held.pop(client_id, {}).values())

    # -- accepting -----------------------------------------------------------------------------

    def _group(self, order: WorkingOrder) -> list[WorkingOrder] | None:
        """The order with the held legs it transmits; None when its parent is not there."""
        legs = self.held.get(order.client_id, {})
        if order.parent_id == 0:
            kids = [o for o in legs.values() if o.parent_id == order.order_id]
            for kid in kids:
                legs.pop(kid.order_id)
            return [order, *kids]
        parent = legs.pop(order.parent_id, None)
        if parent is not None:
            kids = [o for o in legs.values() if o.parent_id == parent.order_id]
            for kid in kids:
                legs.pop(kid.order_id)
            return [parent, *kids, order]
        active = self.by_key.get((order.client_id, order.parent_id))
        return [order] if active is not None and active.is_active else None

    def _transmit(self, order: WorkingOrder) -> None:
        """Accept the order with its held legs: every leg is acknowledged before any works."""
        group = [order] if order.manual else self._group(order)
        if group is None:
            self._reject(order, 201, f"parent order {order.parent_id} is not working")
            return
        shortfall = margin_shortfall(self.config, self.book, self.ledger, group[0])
        if shortfall:
            for leg in group:
                self._reject(leg, 201, shortfall)
            return
        gate = _AckGate()
        for leg in group:
            self._accept(leg, gate)
        for leg in gate.release():
            self._work(leg)

    def _register(self, order: WorkingOrder) -> None:
        order.perm_id = next(self._perm)
        self.orders[order.perm_id] = order
        if not order.manual:
            self.by_key[order.key] = order

    def _accept(self, order: WorkingOrder, gate: _AckGate) -> None:
        parent = self.by_key.get((order.client_id, order.parent_id)) if order.is_child else None
        waiting = parent is not None and parent.status != "Filled"
        order.status = "PreSubmitted" if waiting else "Submitted"
        if self.config.tif_preset_warning and order.tif == "":
            order.tif = "DAY"
            tif_warning = True
        else:
            tif_warning = False
        self._register(order)
        log.info(
            "accepted %s %s %s %s (order %d of client %d, ref %r)",
            order.action,
            order.quantity,
            order.instrument.symbol,
            order.order_type,
            order.order_id,
            order.client_id,
            order.order_ref,
        )
        batch = ack_batch(order)
        if tif_warning:
            batch.append(fixed(replies.error(order.order_id, 10349, replies.error_text(10349))))
        self._emit(Step.ACK, order, batch, then=lambda: gate.done(order, self._work))

    def _emit(
        self,
        step: Step,
        order: WorkingOrder,
        batch: Batch,
        effects: list[Effect] | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Deliver a step's batch (later, when a Delay rule says so), then continue."""
        if effects is None:
            effects = self.plan.take(step, order)
        delay = _first(effects, Delay)
        if isinstance(delay, Delay):
            rest = _without(effects, delay)
            later = lambda: self._emit(step, order, batch, rest, then)  # noqa: E731
            self.scheduler.call_later(delay.seconds, later)
            return
        self.outlet.deliver(order, batch, effects)
        if then is not None:
            then()

    def _work(self, order: WorkingOrder) -> None:
        order.live = True
        self.try_fill(order)
        if order.tif == "IOC" and order.is_active and order.status == "Submitted":
            self.cancel(order, reason="IOC")

    # -- matching and fills --------------------------------------------------------------------

    def on_quote(self, symbol: str) -> None:
        """A price changed: work every live order in that symbol, oldest first."""
        for order in sorted(self.orders.values(), key=lambda o: o.perm_id):
            if order.instrument.symbol == symbol:
                self.try_fill(order)

    def work_all(self) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.perm_id):
            self.try_fill(order)

    def try_fill(self, order: WorkingOrder, effects: list[Effect] | None = None) -> None:
        """Fill ``order`` (or a piece of it) if the book lets it, applying FILL faults."""
        while self._fillable(order):
            quote = self.book.quote(order.instrument.symbol)
            price = fill_price(order, quote) if quote else None
            if price is None:
                if order.order_type == "LMT" or order.triggered:
                    order.rested = True
                return
            if effects is None:
                effects = self.plan.take(Step.FILL, order)
            delay = _first(effects, Delay)
            if isinstance(delay, Delay):
                self._postpone_fill(order, delay.seconds, _without(effects, delay))
                return
            partial = _first(effects, PartialFill)
            if isinstance(partial, PartialFill):
                order.fill_chunk, order.fill_interval = partial.shares, partial.interval
            chunk = order.fill_chunk
            quantity = min(chunk, order.remaining) if chunk else order.remaining
            self._execute(order, quantity, price, effects)
            effects = None
            if order.remaining > 0 and order.fill_interval > 0:
                self._postpone_fill(order, order.fill_interval, None)
                return

    def _fillable(self, order: WorkingOrder) -> bool:
        if not (order.live and order.status == "Submitted") or self.connectivity_lost:
            return False
        return order.not_before is None or self.now >= order.not_before

    def _postpone_fill(
        self, order: WorkingOrder, seconds: float, effects: list[Effect] | None
    ) -> None:
        order.not_before = self.now + timedelta(seconds=seconds)

        def later() -> None:
            order.not_before = None
            self.try_fill(order, effects)

        self.scheduler.call_later(seconds, later)

    def _execute(
        self, order: WorkingOrder, quantity: Decimal, price: Decimal, effects: list[Effect]
    ) -> None:
        first_fill = order.filled == 0
        notional = order.avg_fill_price * order.filled + price * quantity
        total = self.ledger.commission_total(order.filled + quantity, notional)
        commission = total - order.commission_charged
        symbol = order.instrument.symbol
        realized = self.ledger.apply_fill(symbol, order.sign, quantity, price, commission)
        order.filled += quantity
        order.avg_fill_price = (notional / order.filled).quantize(AVG_QUANTUM)
        order.last_fill_price = price
        order.commission_charged = total
        if order.remaining == 0:
            order.status = "Filled"
            self._complete(order, "Filled")
        execution = self._record(order, quantity, price, commission, realized)
        log.info(
            "%s %s %s @ %s (order %d of client %d, %s)",
            execution.side,
            quantity,
            symbol,
            price,
            order.order_id,
            order.client_id,
            order.status,
        )
        self.outlet.deliver(order, self._fill_batch(order, execution), effects)
        self.outlet.account_changed(symbol)
        if order.status == "Filled":
            self._activate_children(order)
        if first_fill:
            self._cancel_oca_siblings(order)

    def _record(
        self,
        order: WorkingOrder,
        quantity: Decimal,
        price: Decimal,
        commission: Decimal,
        realized: Decimal | None,
    ) -> Execution:
        execution = Execution(
            exec_id=f"0000{self.epoch:04x}.{next(self._exec):08x}.01.01",
            time=self.now,
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            instrument=order.instrument,
            exchange=order.exchange,
            account=self.config.account,
            side="BOT" if order.action == "BUY" else "SLD",
            shares=quantity,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
            commission=commission,
            realized_pnl=realized,
            liquidity=1 if order.rested else 2,
        )
        self.executions.append(execution)
        return execution

    def _fill_batch(self, order: WorkingOrder, execution: Execution) -> Batch:
        snap = copy.copy(order)
        ccy = self.config.currency
        return [
            ("execDetails", lambda v: oc.exec_details(execution, -1, v)),
            ("openOrder", lambda v: oc.open_order(snap, v)),
            ("orderStatus", lambda _v: oc.order_status(snap)),
            ("commissionReport", lambda _v: oc.commission_report(execution, ccy)),
        ]

    def _complete(self, order: WorkingOrder, status: str) -> None:
        order.completed_time = self.now.strftime("%Y%m%d %H:%M:%S") + " UTC"
        order.completed_status = status

    def children(self, order: WorkingOrder) -> list[WorkingOrder]:
        if order.manual:
            return []
        kids = [
            o
            for o in self.orders.values()
            if o.client_id == order.client_id and o.parent_id == order.order_id and not o.manual
        ]
        return sorted(kids, key=lambda o: o.perm_id)

    def _activate_children(self, parent: WorkingOrder) -> None:
        kids = [k for k in self.children(parent) if k.status == "PreSubmitted"]
        for kid in kids:
            kid.status = "Submitted"
            self.outlet.deliver(kid, ack_batch(kid), [])
        for kid in kids:
            self.try_fill(kid)

    def _cancel_oca_siblings(self, order: WorkingOrder) -> None:
        siblings: list[WorkingOrder] = []
        if order.is_child:
            parent = self.by_key.get((order.client_id, order.parent_id))
            siblings += self.children(parent) if parent else []
        if order.oca_group:
            siblings += [o for o in self.orders.values() if o.oca_group == order.oca_group]
        for other in sorted({o.perm_id: o for o in siblings}.values(), key=lambda o: o.perm_id):
            if other is not order and other.is_active:
                self.cancel(other, reason="OCA")

    # -- cancels and rejects -------------------------------------------------------------------

    def cancel_request(self, client_id: int, order_id: int) -> list[Message]:
        """A cancelOrder from a client; returns replies for the requester when there is no order."""
        held = self.held.get(client_id, {}).pop(order_id, None)
        if held is not None:
            return [replies.error(order_id, 202, replies.error_text(202))]
        order = self.by_key.get((client_id, order_id))
        if order is None:
            return [replies.error(order_id, 10147, replies.error_text(10147, str(order_id)))]
        if order.is_done:
            text = replies.error_text(10148, str(order_id), order.status)
            return [replies.error(order_id, 10148, text)]
        self.cancel(order)
        return []

    def cancel(
        self, order: WorkingOrder, effects: list[Effect] | None = None, reason: str = ""
    ) -> None:
        """Cancel a working order (and its children), applying CANCEL faults."""
        if effects is None:
            effects = self.plan.take(Step.CANCEL, order)
        delay = _first(effects, Delay)
        if isinstance(delay, Delay):
            rest = _without(effects, delay)
            self.scheduler.call_later(delay.seconds, lambda: self.cancel(order, rest, reason))
            return
        if order.is_done:
            text = replies.error_text(10148, str(order.order_id), order.status)
            self.outlet.deliver(order, [fixed(replies.error(order.order_id, 10148, text))], [])
            return
        order.status = "Cancelled"
        self._complete(order, f"Cancelled{': ' + reason if reason else ''}")
        batch = ack_batch(order)
        batch.append(fixed(replies.error(order.order_id, 202, replies.error_text(202, reason))))
        self.outlet.deliver(order, batch, effects)
        for kid in self.children(order):
            if kid.is_active:
                self.cancel(kid, reason="parent cancelled")

    def cancel_all(self) -> None:
        """reqGlobalCancel: every working order of every client."""
        for order in sorted(self.orders.values(), key=lambda o: o.perm_id):
            if order.is_active:
                self.cancel(order, reason="global cancel")

    def _reject(
        self, order: WorkingOrder, code: int, reason: str, then_inactive: bool = False
    ) -> None:
        text = replies.error_text(code, reason)
        batch: Batch = [fixed(replies.error(order.order_id, code, text))]
        if code == 201:
            order.status = "Cancelled"
            self._register(order)
            self._complete(order, text)
        if then_inactive:
            order.status = "Inactive"
            batch += ack_batch(order)
        self._emit(Step.REJECT, order, batch)

    # -- changes and what-if -------------------------------------------------------------------

    def _change(self, order: WorkingOrder, req: Request) -> None:
        """placeOrder with a known id: modify a working order; a done one answers 103."""
        if order.is_done:
            text = replies.error_text(103)
            self.outlet.deliver(order, [fixed(replies.error(order.order_id, 103, text))], [])
            return
        new, refusal = build_order(
            self.config, self.book, order.client_id, order.order_id, req, order.seq
        )
        if refusal is None and new.quantity < order.filled:
            refusal = (201, "quantity below the filled quantity")
        if refusal is not None:
            text = replies.error_text(*refusal)
            self.outlet.deliver(order, [fixed(replies.error(order.order_id, refusal[0], text))], [])
            return
        order.quantity, order.limit_price, order.stop_price = (
            new.quantity,
            new.limit_price,
            new.stop_price,
        )
        order.order_type, order.tif, order.order_ref = new.order_type, new.tif, new.order_ref
        order.outside_rth, order.rested = new.outside_rth, False
        self.outlet.deliver(order, ack_batch(order), [])
        self.try_fill(order)
