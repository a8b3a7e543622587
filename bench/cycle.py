"""Benchmark: the whole cycle (propose → simulate → risk → audit) through the facade.

Each size runs in a fresh home on the embedded paper broker with the real audit log (SQLite WAL,
``synchronous=FULL``: every commit is fsynced) and the repository's policies, at a fixed clock on a
Wednesday morning in New York. Every intent goes through ``Workbench.run``: proposed, simulated on
a fresh portfolio snapshot and quote, judged by the gate, approval requested when not rejected —
each step an audit event. Intents are built before the clock starts.
Two more figures follow: ``run_cycle`` (the daily cycle's path: one proposal per cycle, symbol
and side) over every symbol of the universe on both sides, and ``submit`` (the token spent and the
order sent, with the submit-time checks) for approved proposals, each timed alone.
Run: ``.venv/bin/python bench/cycle.py`` (``--profile`` adds a cProfile of the 1,000 run).
Target: 1,000 intents through the cycle, durably audited, in ≤ 1 s on 2 cores.
"""

from __future__ import annotations

import cProfile
import csv
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from workbench.authority import Credential
from workbench.clock import FixedClock
from workbench.models import OrderIntent, OrderType, ProtectiveStop, Side, Source
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
SIZES = (10, 100, 1_000)
SYMBOLS = ("SPY", "QQQ", "IWM", "DIA", "VTI", "XLK", "GLD", "XLV", "AAPL", "MSFT", "JPM", "PG")
CENT = Decimal("0.01")


def build_intents(
    wb: Workbench, n: int, symbols: tuple[str, ...] = SYMBOLS, side: Side = Side.BUY
) -> list[OrderIntent]:
    """``n`` valid-looking limit orders at the touch (buys with stops), spread over ``symbols``
    and sizes."""
    quotes = {s: wb.market_snapshot(s, record=False) for s in symbols}
    intents = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        touch = quotes[symbol].ask if side is Side.BUY else quotes[symbol].bid
        assert touch is not None
        stop = ProtectiveStop(stop_price=(touch * Decimal("0.97")).quantize(CENT, ROUND_HALF_UP))
        intents.append(
            OrderIntent(
                account=wb.account,
                instrument=wb.instrument(symbol),
                side=side,
                quantity=Decimal(1 + i // len(symbols)),
                order_type=OrderType.LMT,
                limit_price=touch.quantize(CENT, ROUND_HALF_UP),
                protective_stop=stop if side is Side.BUY else None,
                source=Source.RULE,
                reason=f"bench {i}",
            )
        )
    return intents


def open_bench(folder: Path, policies: Path = ROOT / "policies") -> Workbench:
    clock = FixedClock(NOW)
    return Workbench.open(
        folder, "paper", policy_dir=policies, clock=clock, log_clock=clock, create=True
    )


def universe() -> tuple[str, ...]:
    with (ROOT / "workbench" / "data" / "universe.csv").open() as f:
        return tuple(row["symbol"] for row in csv.DictReader(f))


def run_cycle_figure() -> tuple[float, int, int]:
    """Seconds for one ``run_cycle`` over the universe on both sides (twice each: the second of
    every symbol and side is skipped), the proposals made and the events written."""
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        wb = open_bench(Path(tmp))
        try:
            symbols = universe()
            intents = [
                *build_intents(wb, 2 * len(symbols), symbols),
                *build_intents(wb, 2 * len(symbols), symbols, Side.SELL),
            ]
            before = wb.log.count()
            start = time.perf_counter()
            outcomes = wb.run_cycle(intents, actor="bench", correlation_id="bench:cycle")
            seconds = time.perf_counter() - start
            return seconds, len(outcomes), wb.log.count() - before
        finally:
            wb.close()


def submit_figure(n: int = 40) -> tuple[list[float], Counter[str]]:
    """Each submit of ``n`` approved proposals timed alone (token checked and spent, order sent
    and filled on the paper broker), under a policy allowing that many sends a minute."""
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        policies = Path(tmp) / "policies"
        shutil.copytree(ROOT / "policies", policies)
        risk = policies / "risk_policy.yaml"
        rate = "max_submits_per_minute: "
        risk.write_text(risk.read_text().replace(rate + "10", rate + "1000"))
        wb = open_bench(Path(tmp) / "home", policies)
        try:
            assert wb.authority is not None
            who = Credential("bench", "a bench passphrase")
            wb.authority.bootstrap(who)
            tokens = []
            for outcome in wb.run_many(build_intents(wb, n), actor="bench"):
                tokens.append((outcome.proposal_id, wb.approve(outcome.proposal_id, who).token))
            laps, states = [], Counter[str]()
            for pid, token in tokens:
                t0 = time.perf_counter()
                states[wb.submit(pid, token).value] += 1
                laps.append(time.perf_counter() - t0)
            return laps, states
        finally:
            wb.close()


def run_size(n: int, profile: bool = False) -> tuple[float, Counter[str], int]:
    """Seconds for ``n`` intents through ``wb.run_many``; the outcome states; events written."""
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        wb = open_bench(Path(tmp))
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
    seconds, made, events = run_cycle_figure()
    print(
        f"run_cycle over the universe, both sides: {made} proposals in {seconds:.3f} s"
        f"  ({seconds / made * 1000:.2f} ms/proposal, {events / made:.1f} events/proposal)"
    )
    laps, states = submit_figure()
    ms = sorted(x * 1000 for x in laps)
    print(
        f"submit (token spent, order sent and filled): n={len(ms)}"
        f"  p50 {statistics.median(ms):.2f} ms  max {ms[-1]:.2f} ms  {dict(states)}"
    )


if __name__ == "__main__":
    main()
