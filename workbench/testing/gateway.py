"""The loopback TWS-protocol test gateway: a thread-safe handle around the server on its own loop.

    gw = Gateway(GatewayConfig(), start=TRADING_NOW).start()   # binds 127.0.0.1:<gw.port>
    gw.set_price("SPY", Decimal("590.00"))                      # the book is what tests say
    gw.faults.drop(Step.ACK, Phase.BEFORE)                      # fault hooks (see faults.py)
    ... the ib_async client connects to gw.port in the main thread ...
    gw.received("placeOrder")                                   # what reached the socket
    gw.stop()

Every method may be called from any thread; calls that touch state run on the gateway's loop
and return when done. Prices, quantities and money are Decimals (ints and strings accepted).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import TypeVar

from workbench.errors import WorkbenchError
from workbench.testing.book import SPREAD, Quote, positive
from workbench.testing.clock import VirtualClock
from workbench.testing.config import GatewayConfig
from workbench.testing.core import Core
from workbench.testing.faults import FaultPlan
from workbench.testing.ledger import Position
from workbench.testing.orders import Execution, WorkingOrder
from workbench.testing.records import OrderView, PositionView, Received, Sent

T = TypeVar("T")
CALL_TIMEOUT = 10.0
Amount = Decimal | int | str


class GatewayError(WorkbenchError, RuntimeError):
    """The test gateway could not start, stop or answer in time."""


class Gateway:
    """A TWS-protocol server on 127.0.0.1 for tests and demos (synthetic prices, not IBKR)."""

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        start: datetime | None = None,
        realtime: bool = False,
    ) -> None:
        self.config = config or GatewayConfig()
        self.clock = VirtualClock(start, realtime)
        self._core = Core(self.config, self.clock)
        self._core.scheduler.on_change = self._arm
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The fault rules (thread-safe): ``gw.faults.drop(...)``, ``.delay(...)``, …"""
        return self._core.plan

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the OS chose for port 0)."""
        return self._core.port

    @property
    def account(self) -> str:
        return self.config.account

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Gateway:
        """Bind 127.0.0.1 and serve from a background thread; returns self once listening."""
        if self.running:
            raise GatewayError("the gateway is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._main, args=(ready, failure), name="tws-test-gateway", daemon=True
        )
        self._thread.start()
        if not ready.wait(CALL_TIMEOUT):
            raise GatewayError("the gateway did not start in time")
        if failure:
            self._thread.join(CALL_TIMEOUT)
            self._thread = None
            raise GatewayError(f"cannot listen on {self.host}:{self.port}: {failure[0]}")
        return self

    def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._core.loop = loop
        try:
            self._core.listen()
            loop.run_until_complete(self._core.serving())
        except OSError as exc:
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self._loop = loop
        loop.call_soon(self._arm)
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._core.shutdown()
            loop.run_until_complete(_settle())
            loop.close()

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        loop, thread = self._loop, self._thread
        self._loop, self._thread = None, None
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(self._cancel_timer)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT)

    def __enter__(self) -> Gateway:
        return self if self.running else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the gateway's loop (directly when not running or already there)."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return future.result(CALL_TIMEOUT)
        except concurrent.futures.TimeoutError as exc:
            raise GatewayError("the gateway did not answer in time") from exc

    # -- the clock (realtime demos run due jobs by themselves) ----------------------------------

    def now(self) -> datetime:
        """The gateway's clock (tick times, execution times, currentTime)."""
        return self.clock.now()

    def advance(self, seconds: float) -> int:
        """Move the gateway clock forward, releasing delayed steps as they fall due."""
        ran = self._call(lambda: self._core.scheduler.advance(seconds))
        self._await_listener()
        return ran

    def _await_listener(self) -> None:
        """When the gateway has just started listening again, wait until it serves."""
        loop = self._loop
        if loop is not None and threading.current_thread() is not self._thread:
            asyncio.run_coroutine_threadsafe(self._core.serving(), loop).result(CALL_TIMEOUT)

    def _arm(self) -> None:
        loop = self._loop
        if loop is None or not self.clock.realtime:
            return
        self._cancel_timer()
        due = self._core.scheduler.next_due()
        if due is not None:
            delay = max(0.0, (due - self.clock.now()).total_seconds())
            self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._core.scheduler.run_due()
        self._arm()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the book ------------------------------------------------------------------------------

    def set_quote(
        self,
        symbol: str,
        *,
        bid: Amount | None = None,
        ask: Amount | None = None,
        last: Amount | None = None,
        close: Amount | None = None,
        bid_size: Amount | None = None,
        ask_size: Amount | None = None,
        last_size: Amount | None = None,
        volume: Amount | None = None,
        at: datetime | None = None,
    ) -> Quote:
        """Change some fields of ``symbol``'s quote (dated ``at``, default now).

        Streams tick updates to subscribers and works the resting orders in that symbol
        (a stop can trigger, a limit can fill).
        """
        given = {
            "bid": bid,
            "ask": ask,
            "last": last,
            "close": close,
            "bid_size": bid_size,
            "ask_size": ask_size,
            "last_size": last_size,
            "volume": volume,
        }
        changes = {k: positive(v, f"{symbol} {k}") for k, v in given.items()}
        return self._call(lambda: self._core.set_quote(symbol, at, **changes))

    def set_price(
        self, symbol: str, price: Amount, *, spread: Amount = SPREAD, at: datetime | None = None
    ) -> Quote:
        """Last = ``price``, bid and ask half a ``spread`` either side of it."""
        last = positive(price, f"{symbol} price")
        width = positive(spread, f"{symbol} spread")
        assert last is not None and width is not None
        half = width / 2
        return self.set_quote(symbol, bid=last - half, ask=last + half, last=last, at=at)

    def quote(self, symbol: str) -> Quote | None:
        return self._call(lambda: self._core.book.quote(symbol))

    def set_live_data(self, live: bool, *symbols: str) -> None:
        """Whether the account has live data: for ``symbols``, or (none given) for everything.

        Without it a client gets error 354, or with reqMarketDataType(3) delayed data (type 3,
        delayed tick types, warning 10167) dated ``delayed_by_seconds`` earlier.
        """

        def change() -> None:
            book = self._core.book
            if not symbols:
                book.live_data, book.unsubscribed = live, set()
            elif live:
                book.unsubscribed -= set(symbols)
            else:
                book.unsubscribed |= set(symbols)

        self._call(change)

    def set_frozen(self, frozen: bool, *symbols: str) -> None:
        """Mark symbols' markets closed: reqMarketDataType(2/4) then gets frozen data."""

        def change() -> None:
            names = set(symbols) or set(self._core.book.instruments)
            if frozen:
                self._core.book.frozen |= names
            else:
                self._core.book.frozen -= names

        self._call(change)

    # -- the account ---------------------------------------------------------------------------

    def set_cash(self, amount: Amount) -> None:
        cash = Decimal(amount)
        if not cash.is_finite():
            raise ValueError("cash must be a finite amount")
        self._call(lambda: setattr(self._core.ledger, "cash", cash))

    def set_position(self, symbol: str, quantity: Amount, avg_cost: Amount) -> None:
        """Start with a position (as if bought on an earlier day)."""
        qty, cost = Decimal(quantity), positive(avg_cost, f"{symbol} avg_cost")
        if symbol not in self._core.book.instruments or cost is None or not qty.is_finite():
            raise ValueError(f"{symbol}: unknown symbol or bad position")
        self._call(lambda: self._core.ledger.positions.__setitem__(symbol, Position(qty, cost)))

    def reject_orders(self, symbol: str, reason: str = "the test gateway rejects it") -> None:
        """Every new order in ``symbol`` is rejected with error 201 and ``reason``."""
        self._call(lambda: self._core.exchange.reject_symbols.__setitem__(symbol, reason))

    def accept_orders(self, symbol: str) -> None:
        self._call(lambda: self._core.exchange.reject_symbols.pop(symbol, None))

    def place_manual_order(
        self,
        symbol: str,
        action: str,
        quantity: Amount,
        order_type: str = "MKT",
        *,
        limit_price: Amount | None = None,
        stop_price: Amount | None = None,
        order_ref: str = "",
    ) -> OrderView:
        """An order typed into TWS by hand (no API client placed it; orderId 0, clientId 0)."""
        inst = self._core.book.instruments.get(symbol)
        if inst is None or action not in ("BUY", "SELL"):
            raise ValueError(f"{symbol} {action}: unknown symbol or action")
        order = WorkingOrder(
            seq=0,
            client_id=0,
            order_id=0,
            instrument=inst,
            exchange="SMART",
            action=action,
            quantity=Decimal(quantity),
            order_type=order_type,
            limit_price=positive(limit_price, "limit"),
            stop_price=positive(stop_price, "stop"),
            account=self.account,
            order_ref=order_ref,
            manual=True,
        )
        self._call(lambda: self._core.exchange.place_manual(order))
        return self._call(lambda: OrderView.of(order))

    # -- connections and faults ----------------------------------------------------------------

    def restart(self, downtime: float = 0.0) -> None:
        """A nightly-restart: every connection closes; book, orders and fills are kept.

        With ``downtime`` the gateway refuses connections for that long (gateway clock).
        """
        self._call(lambda: self._core.restart(downtime))

    def drop_connections(self, client_id: int | None = None) -> None:
        """Close one client's socket (or every socket) now."""
        if client_id is None:
            self._call(self._core.drop_all)
        else:
            self._call(lambda: self._core.drop_client(client_id))

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop listening: connects fail with ECONNREFUSED (for ``seconds``, else until told)."""
        self._call(lambda: self._core.refuse(seconds))

    def accept_connections(self) -> None:
        """Listen again after refuse_connections()."""
        self._call(self._core.accept_connections)
        self._await_listener()

    def send_error(
        self,
        code: int,
        message: str | None = None,
        *,
        req_id: int = -1,
        client_id: int | None = None,
        close: bool = False,
    ) -> None:
        """Send error ``code`` now (to one client or all), e.g. 1100, 1101, 1102, 100, 10349.

        1100 also stops fills and streaming; 1101/1102 restore them (1101 forgets every
        market-data subscription, so clients must subscribe again).
        """
        self._call(lambda: self._core.send_error(code, message, req_id, client_id, close))

    def hold_client_id(self, client_id: int) -> None:
        """Pretend another application holds ``client_id``: connects with it get 326."""
        self._call(lambda: self._core.held_client_ids.add(client_id))

    def release_client_id(self, client_id: int) -> None:
        self._call(lambda: self._core.held_client_ids.discard(client_id))

    def set_pacing(self, limit: int | None) -> None:
        """Enforce at most ``limit`` messages per second per client (error 100), None = off."""
        if limit is not None and limit < 1:
            raise ValueError("the pacing limit must be at least 1 message per second")
        self._call(lambda: setattr(self._core, "pacing_limit", limit))

    def send_raw(self, client_id: int, fields: list[str]) -> None:
        """Write one arbitrary frame to a client (to test how garbage is handled)."""

        def write() -> None:
            session = self._core.sessions.get(client_id)
            if session is None:
                raise GatewayError(f"client {client_id} is not connected")
            session.write_raw(fields)

        self._call(write)

    # -- what a test reads back ----------------------------------------------------------------

    def received(self, name: str | None = None, client_id: int | None = None) -> list[Received]:
        """Every message read from a socket (decoded), oldest first, optionally filtered."""
        with self._core.changed:
            entries = list(self._core.received)
        return [
            e
            for e in entries
            if (name is None or e.name == name) and (client_id is None or e.client_id == client_id)
        ]

    def sent(self, name: str | None = None, client_id: int | None = None) -> list[Sent]:
        """Every message written to a client, oldest first, optionally filtered."""
        with self._core.changed:
            entries = list(self._core.sent)
        return [
            e
            for e in entries
            if (name is None or e.name == name) and (client_id is None or e.client_id == client_id)
        ]

    def wait_received(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` messages called ``name`` were received; GatewayError if not."""

        def enough() -> bool:
            return sum(1 for e in self._core.received if e.name == name) >= count

        with self._core.changed:
            if not self._core.changed.wait_for(enough, timeout):
                raise GatewayError(f"{count} x {name} not received within {timeout} s")
        return self.received(name)

    def orders(self) -> list[OrderView]:
        """Every order the gateway accepted or rejected (not held legs), by permId."""
        return self._call(
            lambda: [
                OrderView.of(o)
                for o in sorted(self._core.exchange.orders.values(), key=lambda o: o.perm_id)
            ]
        )

    def executions(self) -> list[Execution]:
        return self._call(lambda: list(self._core.exchange.executions))

    def positions(self) -> dict[str, PositionView]:
        return self._call(
            lambda: {
                s: PositionView(s, p.quantity, p.avg_cost, p.realized)
                for s, p in self._core.ledger.positions.items()
                if p.quantity != 0
            }
        )

    def account_values(self) -> dict[str, Decimal]:
        """NetLiquidation, AvailableFunds, BuyingPower, MaintMarginReq, … by IB tag."""
        return self._call(self._core.ledger.values)

    def connected_clients(self) -> list[int]:
        return self._call(lambda: sorted(self._core.sessions))

    @property
    def restarts(self) -> int:
        return self._core.restarts

    def next_due(self) -> datetime | None:
        """When the next delayed step is due on the gateway's clock (None: nothing pending)."""
        return self._call(self._core.scheduler.next_due)

    @property
    def connectivity_lost(self) -> bool:
        """Whether a 1100 is in force (no fills, no streaming) until a 1101/1102 or a restart."""
        return self._call(lambda: self._core.exchange.connectivity_lost)


async def _settle() -> None:
    """Let closing transports run their connection_lost callbacks before the loop closes."""
    for _ in range(3):
        await asyncio.sleep(0)
