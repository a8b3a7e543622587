"""The scheduled daily run end to end: papermill wall time and the kernel's peak memory.

A 500-symbol universe with user-supplied bars (generated here as a CSV, one walk per symbol) goes
through `workbench daily`'s own code path (argument checks, papermill, the real kernel, nbconvert
HTML) into a temporary home (a past day: its replay sandbox).
Run: `.venv/bin/python bench/daily.py [--symbols 500]`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import resource
import shutil
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

from workbench.audit import AuditLog, EventType
from workbench.home import resolve_policy_dir
from workbench.scheduled import check_arguments, run_notebook
from workbench.sessions import xnys

AS_OF = date(2026, 11, 18)
SESSIONS = 60


def _step(symbol: str, day: date) -> float:
    digest = hashlib.sha256(f"{symbol}|{day}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32 - 0.5) * 0.03


def write_bars(path: Path, symbols: list[str]) -> None:
    """Daily OHLCV bars for ``symbols`` over the sessions ending on AS_OF."""
    days = [s.day for s in xnys().ending(AS_OF, SESSIONS)]
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["date", "symbol", "open", "high", "low", "close", "volume"])
        for n, symbol in enumerate(symbols):
            close = 20.0 + (n % 200)
            for day in days:
                open_ = close
                close = max(1.0, open_ * (1 + _step(symbol, day)))
                high, low = max(open_, close) * 1.004, min(open_, close) * 0.996
                cents = [Decimal(f"{v:.2f}") for v in (open_, high, low, close)]
                out.writerow([day.isoformat(), symbol, *cents, 1_000_000 + 1000 * n])


def every_symbol_trades(folder: Path) -> Path:
    """A copy of the policies whose targets have no drift band, so every symbol is proposed."""
    shutil.copytree(resolve_policy_dir(None), folder)
    targets = folder / "targets.yaml"
    text = targets.read_text()
    targets.write_text(text.replace("drift_band: 0.01", "drift_band: 0"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    args = parser.parse_args()
    symbols = [f"S{n:03d}" for n in range(args.symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        bars = Path(tmp) / "bars.csv"
        write_bars(bars, symbols)
        policies = every_symbol_trades(Path(tmp) / "policies")
        start = time.perf_counter()
        checked = check_arguments(
            as_of=AS_OF.isoformat(),
            home=str(Path(tmp) / "home"),
            policy_dir=str(policies),
            universe_text=",".join(symbols),
            bars=str(bars),
        )
        run = run_notebook(checked)
        wall = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with AuditLog(checked.plan.run_home / "workbench.sqlite") as log:  # the replay sandbox
            proposed = len(log.events(types=(EventType.ORDER_PROPOSED,)))
            events = log.head()[0]
    print(f"universe: {args.symbols} symbols, {SESSIONS} sessions of bars")
    print(f"papermill run ok: {run.ok}" + (f" ({run.error})" if run.error else ""))
    print(f"proposals through the gate: {proposed}; audit events written: {events}")
    print(f"wall time including kernel start and HTML: {wall:.2f} s")
    print(f"peak resident memory of the kernel (largest child process): {peak_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()
