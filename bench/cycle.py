"""Benchmark: the whole cycle (propose → simulate → risk → audit) through the facade.

Each size runs in a fresh home on the embedded paper broker with the real audit log (SQLite WAL,
``synchronous=FULL``: every commit is fsynced) and the repository's policies, at a fixed clock on a
Wednesday morning in New York. Every intent goes through ``Workbench.run``: proposed, simulated on
a fresh portfolio snapshot and quote, judged by the gate, approval requested when not rejected —
each step an audit event. Intents are built before the clock starts.
Run: ``.venv/bin/python bench/cycle.py`` (``--profile`` adds a cProfile of the 1,000 run).
Target: 1,000 intents through the cycle, durably audited, in ≤ 1 s on 2 cores.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from workbench.clock import FixedClock
from workbench.models import OrderIntent, OrderType, ProtectiveStop, Side, Source
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
SIZES = (10, 100, 1_000)
SYMBOLS = ("SPY", "QQQ", "IWM", "DIA", "VTI", "XLK", "GLD", "XLV", "AAPL", "MSFT", "JPM", "PG")
CENT = Decimal("0.01")


def build_intents(wb: Workbench, n: int) -> list[OrderIntent]:
    """``n`` valid-looking limit buys with stops, spread over a dozen symbols and sizes."""
    quotes = {s: wb.market_snapshot(s, record=False) for s in SYMBOLS}
    intents = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        ask = quotes[symbol].ask
        assert ask is not None
        intents.append(
            OrderIntent(
                account=wb.account,
                instrument=wb.instrument(symbol),
                side=Side.BUY,
                quantity=Decimal(1 + i // len(SYMBOLS)),
                order_type=OrderType.LMT,
                limit_price=ask.quantize(CENT, ROUND_HALF_UP),
                protective_stop=ProtectiveStop(
                    stop_price=(ask * Decimal("0.97")).quantize(CENT, ROUND_HALF_UP)
                ),
                source=Source.RULE,
                reason=f"bench {i}",
            )
        )
    return intents


def run_size(n: int, profile: bool = False) -> tuple[float, Counter[str], int]:
    """Seconds for ``n`` intents through ``wb.run_many``; the outcome states; events written."""
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        clock = FixedClock(NOW)
        wb = Workbench.open(
            Path(tmp), "paper", policy_dir=ROOT / "policies", clock=clock, log_clock=clock,
            create=True,
        )  # fmt: skip
        try:
            intents = build_intents(wb, n)
            before = wb.log.count()
            profiler = cProfile.Profile() if profile else None
            start = time.perf_counter()
            if profiler:
                profiler.enable()
            outcomes = wb.run_many(intents, actor="bench", correlation_id="bench")
            if profiler:
                profiler.disable()
            seconds = time.perf_counter() - start
            events = wb.log.count() - before
            assert wb.log.verify().ok
            if profiler:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        finally:
            wb.close()
    return seconds, Counter(o.state.value for o in outcomes), events


def main() -> None:
    profile = "--profile" in sys.argv[1:]
    print("cycle: propose → simulate → risk → audit (paper broker, SQLite WAL, synchronous=FULL)")
    for n in SIZES:
        seconds, states, events = run_size(n, profile=profile and n == SIZES[-1])
        print(
            f"{n:>6} intents  {seconds:8.3f} s  {n / seconds:9.1f} intents/s"
            f"  {seconds / n * 1000:7.2f} ms/intent  {events / n:4.1f} events/intent"
            f"  {dict(sorted(states.items()))}"
        )
    print("target: 1,000 intents in <= 1 s")


if __name__ == "__main__":
    main()
