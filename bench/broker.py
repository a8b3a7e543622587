"""Paper broker latency: submit → filled, with the durable audit write (WAL, synchronous=FULL).

Each order is a market order whose permit was prepared beforehand the only way there is (proposed,
gated, approved by an enrolled approver — one scrypt check each, which is why preparing is slow —
and its token spent); the timed part is ``broker.submit(permit)`` alone: the whole-chain permit
check, the broker's checks, matching, the fill's book-keeping and its audit events, one fsync'd
commit. Prints p50/p99 latency and fills/s, for plain orders and for brackets (parent + stop).
Run: `.venv/bin/python bench/broker.py [--orders N]`. Target: p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "brokers"))

from brokerkit import intent, permit_for, with_stop

from workbench.audit import AuditLog
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.keys import ApprovalKey
from workbench.models import Side, SubmitPermit

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, market open
SYMBOLS = ("SPY", "QQQ", "TLT", "AAPL", "KO")


def permits(log: AuditLog, n: int, bracket: bool, tag: str) -> list[SubmitPermit]:
    """``n`` permits: buys and sells alternating over a few symbols, optionally with a stop."""
    made = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        side = Side.BUY if (i // len(SYMBOLS)) % 2 == 0 else Side.SELL
        order = intent(symbol, 10, side=side)
        if bracket and side is Side.BUY:
            order = with_stop(order, Decimal(1))
        made.append(permit_for(log, f"{tag}{i}", order))
    return made


def run(n: int, bracket: bool) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "workbench.sqlite", clock=FixedClock(NOW))
        broker = PaperBroker(log, key=ApprovalKey(tmp))
        broker.submit(permit_for(log, "warm-up", intent("SPY", 1)))
        todo = permits(log, n, bracket, "b" if bracket else "p")
        laps = []
        start = time.perf_counter()
        for permit in todo:
            t0 = time.perf_counter()
            ack = broker.submit(permit)
            laps.append(time.perf_counter() - t0)
            assert ack.parent.status.value == "Filled", ack.parent
        total = time.perf_counter() - start
        fills = len(broker.executions()) - 1
        log.close()
    return laps, fills / total


def report(name: str, laps: list[float], rate: float) -> None:
    ms = sorted(x * 1000 for x in laps)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    verdict = "ok" if p50 <= 5 else "OVER TARGET"
    print(f"{name:<26} n={len(ms):<5} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
          f"{rate:7.0f} fills/s   (target p50 <= 5 ms: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    print(f"paper broker, durable audit write (WAL, synchronous=FULL), {args.orders} orders each")
    report("market order submit→fill", *run(args.orders, bracket=False))
    report("bracket submit→fill", *run(args.orders, bracket=True))


if __name__ == "__main__":
    main()
