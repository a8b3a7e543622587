"""One API session with IB Gateway or TWS: ib_async on its own thread, with its own event loop.

The workbench is synchronous and runs in scripts, under papermill and inside Jupyter kernels
(whose loop is already running, and whose widget callbacks run on another thread). So ib_async
never runs on the caller's loop: :class:`IbSession` owns a thread and a loop, every request is a
coroutine submitted to it (:meth:`IbSession.call`, which waits with a timeout), and ib_async's
callbacks run there too. They only turn what IB says about orders into facts for the recorder
(``ibkr_recorder``): nothing here touches SQLite. No global state is patched.

Paper only, checked twice: the live ports are refused before any socket (``paper_only``), and
every account the login manages must be a paper ``DU…`` account, checked on ``managedAccounts``
before any request that could trade. The IB object and its handlers are made once per session, so
a reconnect keeps them.

The link (``ibkr_link``) is READY only once the connection's orders and executions have been
reconciled with the log: on every connection the session asks IB for every open order, the
completed orders and the day's executions and hands them to the recorder (a ``ReconcileFact``),
which matches and records them and marks the link READY. A drop (or IB's 1100 lasting
``link_lost_seconds``) starts the reconnect loop; 1101 (IB lost data) resubscribes what the
session holds (the account updates, the market-data type; quotes are snapshots) and reconciles
again; 1102 ends a 1100. Order ids come from IB's nextValidId on every connection, never below
the highest id this home used for the client. Every message goes through ib_async's own throttle,
set from ``pacing`` in ``policies/broker.yaml``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from ib_async import (
    IB,
    AccountValue,
    BarData,
    CommissionReport,
    Contract,
    ContractDetails,
    ExecutionFilter,
    Fill,
    Order,
    PortfolioItem,
    StartupFetchNONE,
    Ticker,
    Trade,
)

from workbench.broker_policy import IbkrSettings, check_paper_account, paper_only
from workbench.brokers.ibkr_convert import broker_view, number
from workbench.brokers.ibkr_link import Link, LinkState, Pause
from workbench.brokers.ibkr_recorder import (
    ErrorFact,
    Fact,
    FillFact,
    ReconcileFact,
    ReconnectMark,
    StatusFact,
    Trigger,
)
from workbench.clock import Clock
from workbench.errors import BrokerError, BrokerUnavailableError, ClientIdInUseError

T = TypeVar("T")
log = logging.getLogger("workbench.brokers.ibkr")

# The loopback test gateway (workbench/testing) ends its data-farm notices with this text.
TEST_GATEWAY_MARK = "loopback-test-gateway"
FARM_NOTICES = frozenset({2104, 2106, 2158})
CONNECTIVITY = frozenset({1100, 1101, 1102})
COMMISSION_GRACE = 1.0  # seconds an execution may wait for its commission report
DUPLICATE_ORDER_ID = 103
REFUSED_STATES = frozenset({LinkState.RECONNECTING, LinkState.GAVE_UP, LinkState.CLOSED})


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """An ib_async callback that logs its own failure as an error (never lost in eventkit)."""

    @functools.wraps(handler)
    def run(*args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            log.exception("the IBKR adapter failed to handle %s", handler.__name__)

    return run


class IbSession:
    """A connected ib_async client on a private thread; requests are submitted to it."""

    def __init__(
        self,
        settings: IbkrSettings,
        *,
        read_only: bool,
        facts: Callable[[Fact], None],
        clock: Clock,
        on_lost: Callable[[], None] = lambda: None,
        pause: Pause = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self.account = ""
        self.server_version = 0
        self.test_gateway = False
        self.link = Link(settings.reconnect, pause, clock.now)
        self._facts = facts
        self._on_lost = on_lost
        self._pause = pause
        self._closing = False
        self._awaiting: dict[str, float] = {}  # execId -> when it came without its commission
        self._refetching = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name=f"ibkr-client-{settings.client_id}", daemon=True
        )
        self._keyed: asyncio.Lock | None = None
        self.ib: IB | None = None

    @property
    def lost(self) -> bool:
        """Whether the connection is not (or no longer) fit for orders: not READY."""
        return not self.link.ready

    def interrupted(self, generation: int) -> bool:
        """Whether the connection an order went out on has dropped, been replaced, or IB has
        lost its link or data since (``generation`` is the link's when it was sent)."""
        return self.link.generation != generation or not self.link.ready

    # -- the thread --------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:  # whatever stopped the loop: nothing is left pending
            self._loop.run_until_complete(self._shutdown())

    def call(self, coro: Coroutine[Any, Any, T], what: str, timeout: float | None = None) -> T:
        """Run ``coro`` on the session's loop and wait for it (``timeout``: the request timeout)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise BrokerError(f"{what}: a blocking IB call from the IB thread itself")
        if not self._thread.is_alive():
            coro.close()
            raise BrokerUnavailableError(f"{what}: the IBKR session is closed")
        if self.link.state in REFUSED_STATES:
            coro.close()
            raise BrokerUnavailableError(f"{what}: {self.link.refusal()}")
        limit = timeout if timeout is not None else self.settings.timeouts.request_seconds
        future = asyncio.run_coroutine_threadsafe(_within(coro, limit, what), self._loop)
        try:
            return future.result(limit + 5)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise BrokerError(f"IB did not answer {what} within {limit:.0f}s") from exc
        except BrokerError:
            raise  # already said in the workbench's words
        except ConnectionError as exc:
            raise BrokerUnavailableError(f"{what}: the connection to IB dropped ({exc})") from exc

    # -- connecting --------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, check the accounts are paper ones, and synchronise; nothing trades here.
        The link is READY once the recorder has reconciled what IB listed."""
        paper_only(self.settings)  # before any socket
        self._thread.start()
        try:
            what, timeout = "connect", self.settings.timeouts.connect_seconds * 2 + 5
            self.call(self._connect("connect"), what, timeout)
        except BaseException:
            self.close()
            raise

    async def _connect(self, trigger: Trigger) -> None:
        if self.ib is None:
            self.ib = self._make_ib()
        self._keyed = asyncio.Lock()
        s, ib = self.settings, self.ib
        closed: asyncio.Future[str] = self._loop.create_future()

        def on_api_error(message: str) -> None:
            if not closed.done():
                closed.set_result(message)

        ib.client.apiError += on_api_error
        try:
            await self._handshake(ib, closed)
        finally:
            ib.client.apiError -= on_api_error
        account = self._choose_account(ib.managedAccounts())
        if self.account and account != self.account:
            ib.disconnect()
            raise BrokerError(f"IB now manages {account}, not {self.account}: not reconnected")
        self.account = account
        self.server_version = ib.client.serverVersion()
        ib.reqMarketDataType(s.market_data_type)
        self._facts(ReconnectMark(trigger))
        await self._synchronise(ib)
        generation = self.link.connected()
        self._facts(self._reconcile_fact(ib, generation, trigger))

    def _reconcile_fact(self, ib: IB, generation: int, trigger: Trigger) -> ReconcileFact:
        view = broker_view(ib.trades(), ib.fills(), self.settings.currency)
        return ReconcileFact(generation, trigger, self.settings.client_id, self.server_version,
                             view)  # fmt: skip

    async def _handshake(self, ib: IB, closed: asyncio.Future[str]) -> None:
        s, timeout = self.settings, self.settings.timeouts.connect_seconds
        connect = asyncio.ensure_future(ib.connectAsync(
            s.host, s.port, clientId=s.client_id, timeout=timeout, readonly=self.read_only,
            fetchFields=StartupFetchNONE, raiseSyncErrors=True,
        ))  # fmt: skip
        try:
            done, _ = await asyncio.wait({connect, closed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connect.cancel()
            raise
        if connect not in done:
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
            raise BrokerUnavailableError(self._closed_text(closed.result()))
        try:
            connect.result()
        except (ConnectionRefusedError, OSError) as exc:
            raise BrokerUnavailableError(
                f"cannot reach IB Gateway/TWS at {s.endpoint}: {exc}. Is it running, with"
                " 'Enable ActiveX and Socket Clients' on and this port as its API port?"
            ) from None
        except TimeoutError:
            raise BrokerUnavailableError(
                f"no API handshake from {s.endpoint} within {timeout}s: is it an IB API port,"
                " and is this machine among the trusted IPs?"
            ) from None

    def _closed_text(self, message: str) -> str:
        s = self.settings
        if "already in use" in message:
            raise ClientIdInUseError(
                f"client id {s.client_id} is already in use at {s.endpoint}: choose another"
                " (--client-id, or client_id in policies/broker.yaml)"
            )
        return f"IB Gateway/TWS at {s.endpoint} closed the connection: {message}"

    def _choose_account(self, managed: list[str]) -> str:
        """The one paper account this session trades; refused (and disconnected) otherwise."""
        try:
            for account in managed:
                check_paper_account(account)
            wanted = self.settings.accounts or tuple(managed)
            usable = [a for a in wanted if a in managed]
            if len(usable) != 1:
                raise BrokerError(
                    f"IB manages {', '.join(managed) or 'no account'}; the workbench trades exactly"
                    f" one of {', '.join(wanted) or 'them'}: name it in policies/broker.yaml"
                    " (ibkr.accounts)"
                )
        except BrokerError:
            assert self.ib is not None
            self.ib.disconnect()
            raise
        return usable[0]

    async def _synchronise(self, ib: IB) -> None:
        """The account's updates, every open order (all clients, hand-typed ones too), the
        completed orders and the day's executions: what a reconciliation needs."""
        timeout = self.settings.timeouts.connect_seconds
        waits: list[Awaitable[Any]] = [
            ib.reqAccountUpdatesAsync(self.account),
            ib.reqAllOpenOrdersAsync(),
            ib.reqCompletedOrdersAsync(False),
        ]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
            async with asyncio.timeout(timeout):
                await ib.reqExecutionsAsync()  # after the orders are in
        except (TimeoutError, ConnectionError) as exc:
            ib.disconnect()
            raise BrokerUnavailableError(
                f"IB at {self.settings.endpoint} did not list its orders and executions: {exc!r}"
            ) from None

    def _make_ib(self) -> IB:
        ib = IB()
        ib.RaiseRequestErrors = True
        ib.client.MaxRequests = self.settings.pacing.max_messages  # ib_async's own throttle
        interval = float(self.settings.pacing.per_seconds)
        ib.client.RequestsInterval = interval  # type: ignore[assignment]  # ib_async: a float
        ib.orderStatusEvent += self._on_status
        ib.errorEvent += self._on_error
        ib.execDetailsEvent += self._on_execution
        ib.commissionReportEvent += self._on_commission
        ib.disconnectedEvent += self._on_disconnected
        return ib

    # -- the link: drops, IB's 1100/1101/1102, reconnects -------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            coro.close()
            return
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self) -> None:
        endpoint = self.settings.endpoint
        if not await self.link.reconnect(lambda: self._connect("reconnect"), endpoint):
            self._on_lost()

    async def _watch_link(self, generation: int) -> None:
        """IB's 1100 still on after ``link_lost_seconds`` (real time: a time-out, not a wait
        on the reconnect's clock): drop the socket and reconnect."""
        await asyncio.sleep(float(self.settings.reconnect.link_lost_seconds))
        if self.link.state is LinkState.LINK_LOST and self.link.generation == generation:
            log.warning("IB's link has been lost for %ss: reconnecting",
                        self.settings.reconnect.link_lost_seconds)  # fmt: skip
            if self.link.dropped() and self.ib is not None:
                self.ib.disconnect()
                self._spawn(self._reconnect())

    async def _data_lost(self) -> None:
        """IB's 1101: resubscribe, then reconcile again (orders and fills may have been lost)."""
        ib = self.ib
        assert ib is not None
        self.link.reconciling()
        generation = self.link.generation
        try:
            ib.reqMarketDataType(self.settings.market_data_type)
            self._facts(ReconnectMark("data-lost"))
            await self._synchronise(ib)
        except BrokerError as exc:
            log.warning("after IB's 1101: %s", exc)
            return  # the drop that follows reconnects
        self._facts(self._reconcile_fact(ib, generation, "data-lost"))

    def _on_link(self, code: int, message: str) -> None:
        if code == 1100 and self.link.link_lost(message):
            self._on_lost()
            self._spawn(self._watch_link(self.link.generation))
        elif code == 1101:
            self._spawn(self._data_lost())
        elif code == 1102:
            self.link.link_restored()

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect and end the thread (pending tasks are cancelled first)."""
        self._closing = True
        self.link.closed()
        if not self._thread.is_alive():
            self._loop.close()
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(10)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, OSError):
            log.warning("the IBKR session did not shut down cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self.ib is not None and self.ib.isConnected():
            self.ib.disconnect()
        for _ in range(3):  # let the socket's connection_lost run before the tasks are cancelled
            await asyncio.sleep(0)
        current = asyncio.current_task()
        for _ in range(5):  # a cancelled task may start another (a reconnect's connect)
            others = [t for t in asyncio.all_tasks() if t is not current]
            if not others:
                return
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    # -- ib_async callbacks (on the IB thread): facts for the recorder -----------------------

    @_guarded
    def _on_status(self, trade: Trade) -> None:
        if trade.log and trade.log[-1].errorCode:
            return  # ib_async's own verdict on an error: the error itself is the fact
        order, status = trade.order, trade.orderStatus
        perm = status.permId or order.permId or None
        self._facts(StatusFact(order.clientId, order.orderId, perm, status.status))

    @_guarded
    def _on_error(self, req_id: int, code: int, message: str, _contract: object) -> None:
        if code in FARM_NOTICES and TEST_GATEWAY_MARK in message:
            self.test_gateway = True
        if code in CONNECTIVITY:
            log.warning("IB connectivity %d: %s", code, message)
            self._on_link(code, message)
        if code == DUPLICATE_ORDER_ID and self.ib is not None and self.ib.isConnected():
            ask_ids = cast(Callable[[int], None], self.ib.client.reqIds)
            ask_ids(1)  # IB's nextValidId moves ib_async's order ids past the one it refused
        if req_id > 0:
            self._facts(ErrorFact(self.settings.client_id, req_id, code, message))

    @_guarded
    def _on_execution(self, trade: Trade, fill: Fill) -> None:
        if not fill.commissionReport.execId:  # its report has not come (yet)
            self._awaiting[fill.execution.execId] = self._loop.time()
            self._loop.call_later(COMMISSION_GRACE, self._check_commissions)

    @_guarded
    def _on_commission(self, trade: Trade, fill: Fill, report: CommissionReport) -> None:
        ex = fill.execution
        self._awaiting.pop(ex.execId, None)
        values = [number(x) for x in (ex.shares, ex.price, report.commission, report.realizedPNL)]
        shares, fill_price, commission, realized = values
        if shares is None or fill_price is None or commission is None:
            log.warning("execution %s came without a usable size, price or commission", ex.execId)
            return
        self._facts(FillFact(
            client_id=ex.clientId, ib_order_id=ex.orderId, perm_id=ex.permId or None,
            exec_id=ex.execId, shares=shares, price=fill_price, time=_aware(ex.time),
            commission=abs(commission), currency=report.currency or self.settings.currency,
            realized_pnl=realized if realized is not None else Decimal(0),
        ))  # fmt: skip

    def _check_commissions(self) -> None:
        """An execution still without its commission report (IB sent the report before the
        execution, and ib_async dropped it): ask IB for the executions again, which re-sends
        every commission report of the day (recorded once each, by execId)."""
        due = self._loop.time() - COMMISSION_GRACE
        late = sorted(e for e, since in self._awaiting.items() if since <= due)
        if not late or self._refetching or self.ib is None or not self.ib.isConnected():
            return
        log.warning("no commission report for %s after %.0fs: asking IB for the executions again",
                    ", ".join(late), COMMISSION_GRACE)  # fmt: skip
        self._refetching = True
        task = asyncio.ensure_future(self._refetch(late))
        task.add_done_callback(lambda _t: setattr(self, "_refetching", False))

    async def _refetch(self, late: list[str]) -> None:
        assert self.ib is not None
        wanted = ExecutionFilter(clientId=self.settings.client_id)
        try:
            await asyncio.wait_for(self.ib.reqExecutionsAsync(wanted), COMMISSION_GRACE * 10)
        except (TimeoutError, ConnectionError) as exc:
            log.error("could not ask IB for the executions again: %r", exc)
            return
        missing = [e for e in late if self._awaiting.pop(e, None) is not None]
        if missing:  # a fill the log cannot hold without its commission: seen, never guessed
            log.error("IB sent no commission report for %s: not recorded", ", ".join(missing))

    @_guarded
    def _on_disconnected(self) -> None:
        if not self._closing and self.link.dropped():
            log.warning("the connection to IB at %s dropped: reconnecting", self.settings.endpoint)
            self._spawn(self._reconnect())
        self._on_lost()

    # -- requests (coroutines for call()) ----------------------------------------------------

    async def details(self, contract: Contract) -> list[ContractDetails]:
        assert self.ib is not None
        return list(await self.ib.reqContractDetailsAsync(contract))

    async def next_ids(self, count: int, floor: int) -> list[int]:
        """``count`` order ids from IB's sequence (nextValidId), none below ``floor``."""
        assert self.ib is not None
        at_least = cast(Callable[[int], None], self.ib.client.updateReqId)
        at_least(floor)
        return [self.ib.client.getReqId() for _ in range(count)]

    async def place(self, contract: Contract, orders: list[Order], generation: int) -> None:
        """Send the orders on connection ``generation`` only (nothing when it changed)."""
        assert self.ib is not None
        if self.interrupted(generation):
            raise BrokerUnavailableError(
                f"nothing was sent: {self.link.refusal() or 'the IB'}"
                " connection changed since the order was recorded"
            )
        for order in orders:
            self.ib.placeOrder(contract, order)

    async def cancel(self, client_id: int, ib_order_id: int) -> None:
        """Ask IB to cancel one order of ours (by its trade when ib_async knows it; a trade it
        marks done may still work at IB, as after error 10349)."""
        assert self.ib is not None
        for trade in self.ib.trades():
            if (trade.order.clientId, trade.order.orderId) == (client_id, ib_order_id):
                self.ib.cancelOrder(trade.order)
                return
        send_cancel = cast(Callable[[int, str], None], self.ib.client.cancelOrder)
        send_cancel(ib_order_id, "")  # ib_async knows no trade for it (e.g. after a restart)

    async def barrier(self) -> datetime:
        """A round trip: everything IB sent before it has been handled when it returns."""
        assert self.ib is not None and self._keyed is not None
        async with self._keyed:  # reqCurrentTime shares one key in ib_async: one at a time
            return await self.ib.reqCurrentTimeAsync()

    async def quote(self, contract: Contract, read: Callable[[Ticker], T]) -> T:
        """A market-data snapshot, read (by ``read``) here on the IB thread, where it is whole."""
        assert self.ib is not None
        tickers = await self.ib.reqTickersAsync(contract)
        return read(tickers[0])

    async def history(self, contract: Contract, duration: str) -> list[BarData]:
        """Daily bars (trades, regular hours) up to now, IB's ``duration`` back."""
        assert self.ib is not None
        bars = await self.ib.reqHistoricalDataAsync(
            contract, "", duration, "1 day", "TRADES", True, 1, False, [], timeout=0
        )
        return list(bars)

    async def account_view(self) -> tuple[list[AccountValue], list[PortfolioItem]]:
        """The account's values and portfolio as IB last pushed them (after a round trip)."""
        await self.barrier()
        assert self.ib is not None
        return list(self.ib.accountValues(self.account)), list(self.ib.portfolio(self.account))


async def _within(coro: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    try:
        return await asyncio.wait_for(coro, seconds)
    except TimeoutError:
        raise BrokerError(f"IB did not answer {what} within {seconds:.0f}s") from None


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise BrokerError(f"IB sent an execution time without a zone: {when.isoformat()}")
    return when
