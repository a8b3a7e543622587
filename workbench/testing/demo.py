"""``workbench gateway``: the loopback test gateway in the foreground, for trying things by hand.

It says loudly that it is a TEST gateway with synthetic prices, runs its clock in real time (so
chaos delays and refused-connection windows pass by themselves) and stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from types import FrameType

from workbench.testing.chaos import chaos_schedule
from workbench.testing.config import GatewayConfig
from workbench.testing.faults import describe_effect
from workbench.testing.gateway import Gateway

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


def run(
    port: int = DEFAULT_PORT,
    account: str = "DU1234567",
    chaos: int | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Serve until interrupted; returns the exit code (0)."""
    check_arguments(port, account, chaos)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Gateway(GatewayConfig(port=port, account=account), realtime=True) as gw:
            rules = chaos_schedule(chaos, orders=CHAOS_ORDERS) if chaos is not None else ()
            gw.faults.install(rules)
            for text in banner(gw, chaos, len(rules)):
                out(text)
            for rule in rules:
                what = describe_effect(rule.at, rule.effect)
                out(f"  chaos: order #{rule.match.seq} at {rule.at.value}: {what}")
            stop.wait()
            out("test gateway stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
