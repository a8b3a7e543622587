"""Helpers for the gateway tests: connect the real client, wait on its events, judge its log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ib_async import IB, Trade, util

from workbench.testing import Gateway

# Wednesday 18 November 2026, 15:30 UTC: 10:30 in New York (tests/conftest.py TRADING_NOW).
START = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)

# Lines that show the client and the gateway disagree about the protocol.
PROTOCOL_TEXTS = (
    "error handling fields",
    "error for ",
    "unknown message",
    "parse",
    "timed out",
    "timeout",
    "unknown reqid",
    "no order found",
)


class LogCatcher(logging.Handler):
    """Keeps every record handed to it (from any thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def log_problems(records: list[logging.LogRecord], allowed: tuple[str, ...] = ()) -> list[str]:
    """The log lines that must fail a test: decoder errors, unknown messages, parse failures,
    time-outs (from ib_async), and any error of the gateway, the IBKR adapter or asyncio."""
    problems = []
    for record in records:
        text = record.getMessage()
        if any(a in text for a in allowed):
            continue
        lowered = text.lower()
        decoder = record.name == "ib_async.Decoder" and record.levelno >= logging.ERROR
        protocol = record.name.startswith("ib_async") and any(p in lowered for p in PROTOCOL_TEXTS)
        ours = record.name.startswith(("workbench.testing", "workbench.brokers", "asyncio"))
        if decoder or protocol or (ours and record.levelno >= logging.ERROR):
            problems.append(f"{record.name} {record.levelname}: {text}")
    return problems


def connect(gw: Gateway, client_id: int = 1, readonly: bool = False, timeout: float = 5) -> IB:
    """A real ib_async client connected to ``gw`` that raises on request errors."""
    ib = IB()
    ib.RaiseRequestErrors = True
    ib.connect(gw.host, gw.port, clientId=client_id, timeout=timeout, readonly=readonly)
    return ib


def _signal(ib: IB) -> asyncio.Future[None]:
    """A future set by the client's next network update or disconnect."""
    future: asyncio.Future[None] = util.getLoop().create_future()

    def fire(*_: object) -> None:
        if not future.done():
            future.set_result(None)

    ib.updateEvent += fire
    ib.disconnectedEvent += fire

    def unhook(_: asyncio.Future[None]) -> None:
        ib.updateEvent -= fire
        ib.disconnectedEvent -= fire

    future.add_done_callback(unhook)
    return future


def wait_until(ib: IB, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Run the client's loop until ``condition`` holds (each update or disconnect re-checks it).

    No fixed sleep: the loop runs until the next event, at most until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the condition did not hold in time")
        signal = _signal(ib)
        try:
            util.run(asyncio.wait_for(signal, remaining))
        except TimeoutError:
            continue
        except ConnectionError:  # ib_async aborts a blocking run when a socket drops
            signal.cancel()


def wait_disconnected(ib: IB, timeout: float = 5.0) -> None:
    wait_until(ib, lambda: not ib.isConnected(), timeout)


def record_errors(ib: IB) -> list[tuple[int, int, str]]:
    """Every (reqId, code, message) the client reports from now on."""
    seen: list[tuple[int, int, str]] = []

    def note(req_id: int, code: int, message: str, _contract: object) -> None:
        seen.append((req_id, code, message))

    ib.errorEvent += note
    return seen


def codes(errors: list[tuple[int, int, str]]) -> list[int]:
    return [code for _, code, _ in errors]


def wait_done(ib: IB, trade: Trade, timeout: float = 5.0) -> Trade:
    """Wait for ``trade`` to reach a done state (Filled, Cancelled, ...)."""
    wait_until(ib, trade.isDone, timeout)
    return trade


def wait_reported(ib: IB, trade: Trade, timeout: float = 5.0) -> Trade:
    """Wait until ``trade`` is done and each of its fills has its commission report."""
    wait_until(
        ib,
        lambda: trade.isDone() and all(f.commissionReport.execId for f in trade.fills),
        timeout,
    )
    return trade


def wait_status(ib: IB, trade: Trade, status: str, timeout: float = 5.0) -> Trade:
    wait_until(ib, lambda: trade.orderStatus.status == status, timeout)
    return trade
