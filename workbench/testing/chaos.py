"""A seeded chaos schedule: ``seed`` → a reproducible list of fault rules.

A later hypothesis test draws seeds, installs ``chaos_schedule(seed)`` on a gateway and drives
orders through it; ``workbench gateway --chaos SEED`` does the same for a demo.
"""

from __future__ import annotations

import random
from decimal import Decimal

from workbench.testing.faults import (
    Delay,
    Drop,
    Duplicate,
    Effect,
    FaultRule,
    OrderMatch,
    PartialFill,
    Phase,
    RefuseConnections,
    Reject,
    Reorder,
    Restart,
    SendError,
    Step,
)

_CHAOS_MENU: tuple[tuple[Step, str], ...] = (
    (Step.RECEIVED, "lost"),
    (Step.ACK, "drop-before"),
    (Step.ACK, "drop-after"),
    (Step.ACK, "delay"),
    (Step.ACK, "tif-warning"),
    (Step.FILL, "drop-before"),
    (Step.FILL, "drop-mid"),
    (Step.FILL, "drop-after"),
    (Step.FILL, "duplicate"),
    (Step.FILL, "reorder"),
    (Step.FILL, "partial"),
    (Step.FILL, "delay"),
    (Step.FILL, "restart"),
    (Step.ACK, "connectivity-lost"),
    (Step.FILL, "connectivity-restored"),
    (Step.ACK, "refuse"),
    (Step.RECEIVED, "reject"),
    (Step.RECEIVED, "duplicate-id"),
    (Step.HELD, "drop"),
)


def _chaos_effect(rng: random.Random, step: Step, kind: str) -> Effect:
    builders: dict[str, Effect] = {
        "lost": Drop(),
        "drop-before": Drop(Phase.BEFORE),
        "drop-mid": Drop(Phase.MID),
        "drop-after": Drop(Phase.AFTER),
        "drop": Drop(),
        "delay": Delay(rng.choice((0.5, 1.0, 2.0, 5.0))),
        "tif-warning": SendError(10349),
        "duplicate": Duplicate(),
        "reorder": Reorder(),
        "partial": PartialFill(Decimal(rng.choice((1, 5, 10, 25)))),
        "restart": Restart(rng.choice((0.0, 1.0, 5.0))),
        "connectivity-lost": SendError(1100, to_order=False),
        "connectivity-restored": SendError(rng.choice((1101, 1102)), to_order=False),
        "refuse": RefuseConnections(rng.choice((1.0, 3.0))),
        "reject": Reject(201),
        "duplicate-id": Reject(103, "Duplicate order id"),
    }
    return builders[kind]


def chaos_schedule(seed: int, orders: int = 20, rate: float = 0.35) -> tuple[FaultRule, ...]:
    """A reproducible list of faults: the same ``seed`` always gives the same rules.

    Each of the first ``orders`` orders (by ``seq``) gets a fault with probability ``rate``,
    drawn from a fixed menu (drops at every step, delays, duplicates, reorders, partial fills,
    restarts, 1100/1101/1102, 10349, refused connects, 201 and 103 rejects, mid-bracket drops).
    """
    if orders < 0 or not 0 <= rate <= 1:
        raise ValueError("orders must be >= 0 and rate within 0..1")
    rng = random.Random(seed)
    rules: list[FaultRule] = []
    for seq in range(1, orders + 1):
        if rng.random() >= rate:
            continue
        step, kind = rng.choice(_CHAOS_MENU)
        rules.append(FaultRule(step, _chaos_effect(rng, step, kind), OrderMatch(seq=seq)))
    return tuple(rules)
