"""The gateway's state and routing, run on its own event loop (one thread touches it).

It listens, admits sessions (handshake, clientId, 326), dispatches requests, routes the order
engine's batches to the owning client while applying fault effects, pushes account and market
updates to subscribers, and keeps the received/sent message logs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from workbench.testing import handlers, replies
from workbench.testing.book import Book, Quote, load_universe
from workbench.testing.clock import Scheduler, VirtualClock
from workbench.testing.config import GatewayConfig
from workbench.testing.exchange import Batch, Exchange
from workbench.testing.faults import (
    Drop,
    Duplicate,
    Effect,
    FaultPlan,
    Phase,
    RefuseConnections,
    Reorder,
    Restart,
    SendError,
)
from workbench.testing.ledger import SUMMARY_TAGS, Ledger, value_rows
from workbench.testing.orders import WorkingOrder
from workbench.testing.records import Received, Sent
from workbench.testing.requests import UNSUPPORTED, Request, decode
from workbench.testing.session import Session
from workbench.testing.wire import Message, parse_int

log = logging.getLogger("workbench.testing.gateway")


def transform(batch: Batch, effects: Sequence[Effect]) -> Batch:
    """Apply Duplicate and Reorder effects to a batch of named messages."""
    for effect in effects:
        if isinstance(effect, Duplicate):
            names = set(effect.messages) or {name for name, _ in batch}
            batch = [item for pair in batch for item in ([pair] * (2 if pair[0] in names else 1))]
        elif isinstance(effect, Reorder):
            if effect.order:
                rank = {name: i for i, name in enumerate(effect.order)}
                batch = sorted(batch, key=lambda pair: rank.get(pair[0], len(rank)))
            else:
                batch = list(reversed(batch))
    return batch


class Core:
    """Everything behind the socket. Not thread-safe: the Gateway calls it on its loop."""

    def __init__(self, config: GatewayConfig, clock: VirtualClock) -> None:
        self.config = config
        self.clock = clock
        self.scheduler = Scheduler(clock)
        self.book = Book(load_universe(config.universe_path))
        if config.seed_prices:
            self.book.seed(clock.now())
        self.ledger = Ledger(config, self.book)
        self.plan = FaultPlan()
        self.exchange = Exchange(config, self.book, self.ledger, self.scheduler, self.plan, self)
        self.sessions: dict[int, Session] = {}
        self.connections: set[Session] = set()
        self.held_client_ids: set[int] = set()
        self.pacing_limit = config.pacing_limit
        self.port = config.port
        self.restarts = 0
        self.refusing = False
        self.received: list[Received] = []
        self.sent: list[Sent] = []
        self.changed = threading.Condition()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._serving: asyncio.Task[asyncio.Server] | None = None
        self._conn_ids = itertools.count(1)
        self._msg_seq = itertools.count(1)

    # -- listening -----------------------------------------------------------------------------

    def listen(self) -> None:
        """Bind and listen now (connections queue at once), then start serving on the loop."""
        assert self.loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.config.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.refusing = False
        factory: Callable[[], Session] = lambda: Session(self, next(self._conn_ids))  # noqa: E731
        self._serving = self.loop.create_task(self.loop.create_server(factory, sock=sock))
        self._serving.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[asyncio.Server]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        if self._serving is task:
            self._server = task.result()
        else:  # refused while it was starting: close it as soon as it exists
            task.result().close()

    async def serving(self) -> None:
        """Wait until the listening socket is being served (after listen())."""
        task = self._serving
        if task is not None and not task.done():
            await asyncio.wait([task])

    def stop_listening(self) -> None:
        """Close the listening socket through its server, so the loop stops watching it."""
        if self._server is not None:
            self._server.close()
        elif self._sock is not None and self._serving is None:
            self._sock.close()
        self._server, self._sock, self._serving = None, None, None

    def refuse(self, seconds: float | None) -> None:
        """Stop listening (connects are refused); listen again after ``seconds`` if given."""
        self.stop_listening()
        self.refusing = True
        if seconds is not None:
            self.scheduler.call_later(seconds, self.accept_connections)

    def accept_connections(self) -> None:
        if self.refusing:
            self.listen()

    def shutdown(self) -> None:
        self.stop_listening()
        for session in list(self.connections):
            session.close()
        self.scheduler.clear()

    # -- sessions ------------------------------------------------------------------------------

    def on_connect(self, session: Session) -> None:
        self.connections.add(session)

    def on_disconnect(self, session: Session) -> None:
        self.connections.discard(session)
        cid = session.client_id
        if cid is not None and self.sessions.get(cid) is session:
            del self.sessions[cid]
            log.info("client %d disconnected", cid)
            self.exchange.discard_held(cid)

    def on_start(self, session: Session, fields: list[str]) -> None:
        req = decode(fields, session.version)
        self._log_received(session, req, fields)
        if req.name != "startApi":
            log.error("connection %d sent %s before startApi", session.conn_id, req.name)
            return
        try:
            client_id = int(req.get("clientId"))
        except ValueError:
            session.close()
            return
        if client_id in self.sessions or client_id in self.held_client_ids:
            session.send([replies.error(-1, 326, replies.error_text(326))])
            session.close()
            return
        session.accept(client_id)
        self.sessions[client_id] = session
        log.info("client %d connected (server version %d)", client_id, session.version)
        out = [
            replies.managed_accounts(self.config.account),
            replies.next_valid_id(self.exchange.next_valid_id(client_id)),
        ]
        if self.config.announce:
            out += [replies.error(-1, code, text) for code, text in replies.FARM_NOTICES]
        session.send(out)

    def on_request(self, session: Session, fields: list[str]) -> None:
        req = decode(fields, session.version)
        paced = session.over_pace(self.pacing_limit)
        self._log_received(session, req, fields, dropped="pacing" if paced else None)
        if req.problem and "not emulated" not in req.problem:
            log.error("connection %d: %s: %s", session.conn_id, req.name, req.problem)
        if paced:
            session.send([replies.error(-1, 100, replies.error_text(100))])
            return
        delay = self.plan.take_reply_delay(req.name)
        if delay is not None:
            self.scheduler.call_later(delay, lambda: self._dispatch(session, req))
            return
        self._dispatch(session, req)

    def _dispatch(self, session: Session, req: Request) -> None:
        if not session.ready:
            return
        handler = handlers.HANDLERS.get(req.name)
        if handler is not None:
            handler(self, session, req)
        elif req.msg_id in UNSUPPORTED and "reqId" in req.fields:
            req_id = parse_int(req.get("reqId"), -1)
            text = replies.error_text(322, f"{req.name} is not emulated by the test gateway")
            session.send([replies.error(req_id, 322, text)])
        else:
            log.warning("connection %d: %s is not emulated; ignored", session.conn_id, req.name)

    def is_connected(self, client_id: int) -> bool:
        return client_id in self.sessions

    def drop_client(self, client_id: int) -> None:
        session = self.sessions.get(client_id)
        if session is not None:
            session.close()

    def drop_all(self) -> None:
        for session in list(self.connections):
            session.close()

    def restart(self, downtime: float) -> None:
        """A new gateway session: every connection closes; book, orders and fills are kept."""
        self.restarts += 1
        self.exchange.epoch += 1
        self.exchange.connectivity_lost = False
        self.drop_all()
        if downtime > 0:
            self.refuse(downtime)

    # -- the order engine's outlet -------------------------------------------------------------

    def deliver(self, order: WorkingOrder, batch: Batch, effects: Sequence[Effect]) -> None:
        """Route a step's batch to the order's client, applying the step's fault effects."""
        batch = transform(batch, effects)
        drop = next((e for e in effects if isinstance(e, Drop)), None)
        if drop is not None and drop.phase is Phase.BEFORE:
            batch = []
        elif drop is not None and drop.phase is Phase.MID:
            batch = batch[:1]
        session = self.sessions.get(order.client_id)
        if session is not None:
            session.send([render(session.version) for _, render in batch])
        for effect in effects:
            if isinstance(effect, SendError):
                req_id = order.order_id if effect.to_order else -1
                self.send_error(effect.code, effect.message, req_id, order.client_id)
        if drop is not None:
            self.drop_client(order.client_id)
        for effect in effects:
            if isinstance(effect, Restart):
                self.restart(effect.downtime)
            elif isinstance(effect, RefuseConnections):
                self.refuse(effect.seconds)

    def account_changed(self, symbol: str, fill: bool = True) -> None:
        """Push position, portfolio and account values to the sessions subscribed to them."""
        for session in list(self.sessions.values()):
            out: list[Message] = []
            if fill and session.positions_sub:
                out.append(self.position_message(symbol))
            if session.account_sub:
                out.append(self.portfolio_message(symbol))
                out += self.account_value_messages()
                out.append(replies.account_time(self.clock.now()))
            if fill:
                for req_id in sorted(session.multi_subs):
                    rows = value_rows(self.ledger, SUMMARY_TAGS, ledger_tags=True)
                    acct = self.config.account
                    out += [replies.account_update_multi(req_id, acct, row) for row in rows]
            session.send(out)

    def position_message(self, symbol: str) -> Message:
        pos = self.ledger.positions[symbol]
        inst = self.book.instruments[symbol]
        return replies.position(self.config.account, inst, pos.quantity, pos.avg_cost)

    def portfolio_message(self, symbol: str) -> Message:
        pos = self.ledger.positions[symbol]
        inst = self.book.instruments[symbol]
        mark = self.ledger.mark(symbol)
        figures = (pos.quantity, mark, pos.quantity * mark, pos.avg_cost)
        figures_all = (*figures, self.ledger.unrealized(symbol) if pos.quantity else Decimal(0))
        return replies.portfolio(self.config.account, inst, figures_all)

    def account_value_messages(self) -> list[Message]:
        rows = value_rows(self.ledger, SUMMARY_TAGS, ledger_tags=True)
        acct = self.config.account
        return [replies.account_value(tag, value, ccy, acct) for tag, value, ccy in rows]

    # -- market and errors ---------------------------------------------------------------------

    def set_quote(self, symbol: str, at: datetime | None, **changes: Decimal | None) -> Quote:
        quote = self.book.update(symbol, at or self.clock.now(), **changes)
        if not self.exchange.connectivity_lost:
            for session in list(self.sessions.values()):
                for req_id, stream in list(session.streams.items()):
                    if stream.symbol == symbol:
                        delay = self.config.delayed_by_seconds
                        session.send(handlers.quote_ticks(req_id, quote, stream.delayed, delay))
            self.exchange.on_quote(symbol)
        pos = self.ledger.positions.get(symbol)
        if pos is not None and pos.quantity != 0:
            self.account_changed(symbol, fill=False)
        return quote

    def send_error(
        self,
        code: int,
        message: str | None = None,
        req_id: int = -1,
        client_id: int | None = None,
        close: bool = False,
    ) -> None:
        """Send error ``code`` to one client (or all); 1100/1101/1102 also change connectivity."""
        targets = [s for cid, s in self.sessions.items() if client_id is None or cid == client_id]
        text = message if message is not None else replies.error_text(code)
        for session in targets:
            session.send([replies.error(req_id, code, text)])
        self._connectivity(code, targets)
        if close:
            for session in targets:
                session.close()

    def _connectivity(self, code: int, targets: list[Session]) -> None:
        if code == 1100:
            self.exchange.connectivity_lost = True
        elif code in (1101, 1102):
            if code == 1101:
                for session in targets:
                    session.streams.clear()
            self.exchange.connectivity_lost = False
            self.exchange.work_all()

    # -- logs ----------------------------------------------------------------------------------

    def log_handshake(self, session: Session, text: str) -> None:
        req = Request(0, "handshake", {"versions": text})
        self._log_received(session, req, [text])

    def _log_received(
        self, session: Session, req: Request, raw: list[str], dropped: str | None = None
    ) -> None:
        entry = Received(
            seq=next(self._msg_seq),
            at=self.clock.now(),
            conn_id=session.conn_id,
            client_id=session.client_id,
            msg_id=req.msg_id,
            name=req.name,
            fields=MappingProxyType(dict(req.fields)),
            raw=tuple(raw),
            problem=req.problem,
            dropped=dropped,
        )
        with self.changed:
            self.received.append(entry)
            self.changed.notify_all()

    def log_sent(self, session: Session, msg: Message) -> None:
        entry = Sent(
            next(self._msg_seq),
            self.clock.now(),
            session.conn_id,
            session.client_id,
            msg.name,
            msg.fields,
        )
        with self.changed:
            self.sent.append(entry)
            self.changed.notify_all()
