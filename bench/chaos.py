"""The IBKR adapter under the gateway's seeded chaos: schedules per second, and what happened.

Runs ``tests/brokers/chaoskit.run_schedule`` (the driver of ``test_ibkr_chaos.py``: a fresh
gateway with ``chaos_schedule(seed)``, three orders, the world healed, the invariants checked)
over N seeds and prints the wall time, the faults that fired and how the proposals ended.
Run: ``.venv/bin/python bench/chaos.py [--schedules N]``.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"),
                str(Path(__file__).resolve().parents[1] / "tests" / "brokers")]  # fmt: skip

from brokerkit import TRADING_NOW  # noqa: E402
from chaoskit import make_template, run_schedule  # noqa: E402

from workbench.clock import FixedClock  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=100)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    rng, states, fired = random.Random(0), Counter[str](), 0
    with tempfile.TemporaryDirectory() as tmp:
        template = make_template(Path(tmp), FixedClock(TRADING_NOW))
        start = time.perf_counter()
        for _ in range(args.schedules):
            outcome = run_schedule(rng.randrange(2**32), template, Path(tmp),
                                   FixedClock(TRADING_NOW))  # fmt: skip
            fired += outcome.fired
            states.update(s.value for s in outcome.states.values())
        wall = time.perf_counter() - start
    print(
        f"{args.schedules} schedules in {wall:.1f} s ({wall / args.schedules * 1000:.0f} ms each)"
    )
    print(f"faults fired: {fired}; proposals ended: {dict(sorted(states.items()))}")


if __name__ == "__main__":
    main()
