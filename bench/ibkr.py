"""IBKR adapter latency against the loopback TWS gateway: place → Filled, and the account snapshot.

The real ib_async client (in the adapter's own thread) talks to ``workbench gateway``'s server over
a loopback socket; the audit log is the real SQLite file (WAL, ``synchronous=FULL``). Each order
is a market bracket (parent + Smart Stop child) whose permit was prepared beforehand the only way
there is (proposed, gated, approved by an enrolled approver — one scrypt check each, which is why
preparing is slow — and its token spent). The timed part is ``broker.submit(permit)``: the shared
permit check, the order rows written and fsynced, both legs placed on the socket, and the wait
until the adapter has recorded the parent Filled (its fill and commission) and the stop working.

The adapter throttles what it sends with ib_async's own throttle, set by ``pacing`` in
policies/broker.yaml (4 messages per 0.1 s: 40 a second, below IB's 50/s pacing limit); a
bracket is two messages. So two runs: *paced* (submissions spaced below
the throttle: the adapter's own latency) and *back to back* (as fast as submit returns: the
throttle's queue shows in the latency). The throttle is left as it is: it protects a real
account from IB's pacing violations.
Run: ``.venv/bin/python bench/ibkr.py [--orders N]``. Targets on 2 cores: p50 ≤ 10 ms, p99 ≤ 50 ms.
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
from ibkrkit import connect

from workbench.audit import AuditLog
from workbench.brokers.ibkr import IbkrBroker
from workbench.clock import FixedClock
from workbench.keys import ApprovalKey
from workbench.models import Side, SubmitPermit
from workbench.orders import OrderStatus
from workbench.testing import Gateway, GatewayConfig

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
SYMBOLS = ("SPY", "QQQ", "IWM", "AAPL", "KO")
PACED_PER_SECOND = 15  # brackets per second: 30 messages, under ib_async's 45/s
PACED_SNAPSHOTS = 30  # account snapshots per second (one round trip each), under 45/s


def permits(log: AuditLog, broker: IbkrBroker, n: int, tag: str) -> list[SubmitPermit]:
    """``n`` market brackets (buys with a stop far below, then sells), over a few symbols."""
    made = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        side = Side.BUY if (i // len(SYMBOLS)) % 2 == 0 else Side.SELL
        order = intent(symbol, 10, side=side, account=broker.account,
                       instrument=broker.instrument(symbol))  # fmt: skip
        if side is Side.BUY:
            order = with_stop(order, Decimal(1))
        made.append(permit_for(log, f"{tag}{i}", order))
    return made


def spaced(start: float, k: int, per_second: float | None) -> None:
    """Wait until the ``k``-th slot of a schedule of ``per_second`` (None: no wait). This is the
    benchmark's own pacing of what it asks, not a wait on an order's outcome."""
    if per_second is not None:
        time.sleep(max(0.0, start + k / per_second - time.perf_counter()))


def run(n: int, paced: bool) -> tuple[list[float], float, list[float]]:
    """(submit → Filled laps, brackets per second, account snapshot laps) for ``n`` orders;
    ``paced`` spaces both below ib_async's throttle, else they go back to back."""
    with tempfile.TemporaryDirectory() as tmp, Gateway(GatewayConfig(), start=NOW) as gw:
        home = Path(tmp)
        home.chmod(0o700)
        log = AuditLog(home / "workbench.sqlite", clock=FixedClock(NOW))
        broker = connect(log, gw, key=ApprovalKey(home))
        try:
            broker.submit(permit_for(log, "warm-up", intent("SPY", 1, account=broker.account)))
            todo = permits(log, broker, n, "paced" if paced else "b2b")
            laps, start = [], time.perf_counter()
            for k, permit in enumerate(todo):
                spaced(start, k, PACED_PER_SECOND if paced else None)
                t0 = time.perf_counter()
                ack = broker.submit(permit)
                laps.append(time.perf_counter() - t0)
                assert ack.parent.status is OrderStatus.FILLED, ack.parent
            rate = n / (time.perf_counter() - start)
            snaps, start = [], time.perf_counter()
            for k in range(n):
                spaced(start, k, PACED_SNAPSHOTS if paced else None)
                t0 = time.perf_counter()
                broker.portfolio(broker.account)
                snaps.append(time.perf_counter() - t0)
        finally:
            broker.close()
            log.close()
    return laps, rate, snaps


def quantiles(laps: list[float]) -> tuple[float, float]:
    ms = sorted(x * 1000 for x in laps)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def report(name: str, laps: list[float], extra: str = "") -> None:
    p50, p99 = quantiles(laps)
    verdict = "ok" if p50 <= 10 and p99 <= 50 else "OVER TARGET"
    print(f"{name:<44} n={len(laps):<4} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {extra}"
          f"(targets p50 <= 10, p99 <= 50: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    print(f"IBKR adapter on the loopback gateway, durable audit write, {args.orders} brackets/run")
    laps, rate, snaps = run(args.orders, paced=True)
    report(f"bracket submit -> Filled, paced {PACED_PER_SECOND}/s", laps, f"{rate:5.1f}/s  ")
    report(f"account snapshot, paced {PACED_SNAPSHOTS}/s", snaps)
    laps, rate, snaps = run(args.orders, paced=False)
    report("bracket submit -> Filled, back to back", laps, f"{rate:5.1f}/s  ")
    report("account snapshot, back to back", snaps)
    print("back to back, the policy's throttle (40 messages/s; a bracket is 2, a snapshot 1) holds"
          " the excess for up to a second: the p99 above is that wait")  # fmt: skip


if __name__ == "__main__":
    main()
