"""The IBKR adapter under the gateway's seeded chaos: for every schedule, no order is sent twice,
no fill is lost or counted twice, every proposal ends terminal or UNKNOWN (and UNKNOWN only when
IB holds nothing for it), and the audit chain verifies. Hypothesis draws the seeds, derandomised:
the same schedules on every run; a failure names its seed, and ``chaoskit.run_schedule`` replays
it. ``bench/chaos.py`` runs the same driver and prints the figures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from brokerkit import TRADING_NOW
from chaoskit import Template, make_template, run_schedule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.clock import FixedClock

SCHEDULES = int(os.environ.get("WORKBENCH_CHAOS_SCHEDULES", "500"))

pytestmark = [
    pytest.mark.usefixtures("ib_log_check"),
    pytest.mark.allow_ib_log("Peer closed", "API connection failed", "Socket disconnect"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The home every schedule copies: one permit per order, minted once."""
    return make_template(tmp_path_factory.mktemp("chaos"), FixedClock(TRADING_NOW))


@settings(
    max_examples=SCHEDULES,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_under_seeded_chaos_no_order_twice_no_fill_lost_every_order_settled(
    template: Template, seed: int
) -> None:
    """One seeded fault schedule, three orders (two brackets): the invariants of chaoskit.check
    hold once the world has healed."""
    with tempfile.TemporaryDirectory() as work:
        run_schedule(seed, template, Path(work), FixedClock(TRADING_NOW))
