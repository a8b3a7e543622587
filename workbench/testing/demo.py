"""``workbench gateway``: the loopback test gateway in the foreground, for trying things by hand.

It says loudly that it is a TEST gateway with synthetic prices, runs its clock in real time (so
chaos delays and refused-connection windows pass by themselves) and stops on Ctrl-C or SIGTERM.
``--record FILE`` puts the recording proxy on the port (in front of the loopback gateway, or of
``--upstream HOST:PORT``, a real paper IB Gateway/TWS) and writes a sanitised transcript;
``--replay FILE`` serves a transcript instead (see ``transcript.py``).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from workbench.testing.chaos import chaos_schedule
from workbench.testing.config import GatewayConfig
from workbench.testing.faults import describe_effect
from workbench.testing.gateway import Gateway
from workbench.testing.transcript import RecordingProxy, ReplayServer

DEFAULT_PORT = 4012
LIVE_PORTS = frozenset({7496, 4001})
PAPER_ACCOUNT = re.compile(r"^DU\d{1,9}$")
CHAOS_ORDERS = 50


def check_arguments(port: int, account: str, chaos: int | None) -> None:
    """ValueError (exit 2) for a port out of range or live, a non-paper account, a bad seed."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: not a TCP port (0-65535)")
    if port in LIVE_PORTS:
        raise ValueError(f"--port {port} is a live-trading port; the test gateway never uses it")
    if not PAPER_ACCOUNT.match(account):
        raise ValueError(f"--account {account!r}: the test gateway only runs paper DU… accounts")
    if chaos is not None and chaos < 0:
        raise ValueError("--chaos SEED must be zero or positive")


def banner(gw: Gateway, chaos: int | None, rules: int) -> list[str]:
    line = "=" * 78
    chaos_text = "off" if chaos is None else f"seed {chaos}, {rules} fault rules"
    return [
        line,
        "  TEST GATEWAY: a loopback TWS-protocol server for tests and demos.",
        "  SYNTHETIC PRICES. This is NOT Interactive Brokers; no order here reaches a market.",
        f"  Listening on {gw.host}:{gw.port}   account {gw.account} (simulated paper account)",
        f"  Server version {gw.config.server_version}; prices from the workbench universe.",
        f"  Chaos: {chaos_text}",
        "  Stop with Ctrl-C.",
        line,
    ]


def check_recording(record: Path | None, upstream: str | None, replay: Path | None) -> None:
    """ValueError (exit 2) for a recording or replay that cannot be (see ``run``)."""
    if replay is not None and (record is not None or upstream is not None):
        raise ValueError("--replay serves a transcript: not with --record or --upstream")
    if upstream is not None and record is None:
        raise ValueError("--upstream is where --record forwards to: give --record FILE")
    if replay is not None and not replay.is_file():
        raise ValueError(f"--replay {replay}: no such transcript")
    if record is not None and (record.exists() or not record.parent.is_dir()):
        raise ValueError(f"--record {record}: exists already, or its folder does not")
    if upstream is not None:
        upstream_address(upstream)


def upstream_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of a paper IB Gateway/TWS (the live ports are refused)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"--upstream {text!r}: give HOST:PORT (e.g. 127.0.0.1:4002)")
    if int(port) in LIVE_PORTS:
        raise ValueError(
            f"--upstream {text}: a live-trading port; only paper sessions are recorded"
        )
    return host, int(port)


def run(
    port: int = DEFAULT_PORT,
    account: str = "DU1234567",
    chaos: int | None = None,
    out: Callable[[str], None] = print,
    *,
    record: Path | None = None,
    upstream: str | None = None,
    replay: Path | None = None,
) -> int:
    """Serve until interrupted; returns the exit code (0)."""
    check_arguments(port, account, chaos)
    check_recording(record, upstream, replay)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if replay is not None:
            with ReplayServer(replay, port) as server:
                out(f"  REPLAY of {replay} (a recorded session) on {server.host}:{server.port}")
                stop.wait()
        elif upstream is not None and record is not None:
            with RecordingProxy(record, upstream_address(upstream), port) as proxy:
                out(f"  RECORDING {upstream} to {record} (account ids and amounts masked);"
                    f" connect to {proxy.host}:{proxy.port}")  # fmt: skip
                stop.wait()
        else:
            with _gateway(0 if record else port, account, chaos, out) as gw, _recording(
                record, gw, port, out
            ):  # fmt: skip
                stop.wait()
        out("test gateway stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


@contextmanager
def _gateway(
    port: int, account: str, chaos: int | None, out: Callable[[str], None]
) -> Iterator[Gateway]:
    with Gateway(GatewayConfig(port=port, account=account), realtime=True) as gw:
        rules = chaos_schedule(chaos, orders=CHAOS_ORDERS) if chaos is not None else ()
        gw.faults.install(rules)
        for text in banner(gw, chaos, len(rules)):
            out(text)
        for rule in rules:
            what = describe_effect(rule.at, rule.effect)
            out(f"  chaos: order #{rule.match.seq} at {rule.at.value}: {what}")
        yield gw


@contextmanager
def _recording(
    record: Path | None, gw: Gateway, port: int, out: Callable[[str], None]
) -> Iterator[None]:
    if record is None:
        yield
        return
    with RecordingProxy(record, (gw.host, gw.port), port) as proxy:
        out(f"  RECORDING to {record} (account ids and amounts masked): connect to"
            f" {proxy.host}:{proxy.port}, not {gw.port}")  # fmt: skip
        yield
