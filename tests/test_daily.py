"""The scheduled daily run: papermill report, idempotent per day, failures noticed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import pandas as pd
import pytest

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.daily import exposure_frame, market_status, run_cycle
from workbench.errors import WorkbenchError
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))
DAY = "2026-11-18"  # a Wednesday: the replay clock stands at 10:30 New York, market open


def daily(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKBENCH, "daily", "--as-of", DAY, "--home", str(home), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def proposals_for_day(home: Path) -> list[str]:
    with AuditLog(home / "workbench.sqlite") as log:
        return [
            e.proposal_id or ""
            for e in log.events(types=(EventType.ORDER_PROPOSED,))
            if e.correlation_id == f"daily:{DAY}"
        ]


@pytest.mark.slow
def test_daily_twice_for_the_same_date_keeps_one_set_of_proposals(home: Path) -> None:
    """Running the same day twice writes the report again but proposes nothing new."""
    first = daily(home)
    assert first.returncode == 0, first.stderr
    report = home / DAY / "daily_cycle.ipynb"
    assert report.exists() and (home / DAY / "daily_cycle.html").exists()
    assert str(report) in first.stdout
    once = proposals_for_day(home)
    assert once, "the rebalance proposer should propose on an empty paper account"
    second = daily(home)
    assert second.returncode == 0, second.stderr
    assert proposals_for_day(home) == once
    with AuditLog(home / "workbench.sqlite") as log:
        assert log.verify().ok


@pytest.mark.slow
def test_report_shows_decisions_and_chain_head_without_code(home: Path) -> None:
    """The report shows the broker label, decisions and the chain head; its HTML has no code."""
    assert daily(home).returncode == 0
    html = (home / DAY / "daily_cycle.html").read_text()
    assert "paper broker (simulated)" in html and "synthetic (seeded)" in html
    assert "Audit chain head" in html and "APPROVE" in html
    assert "open_for_day(" not in html  # --no-input: the code is not in the report


@pytest.mark.slow
def test_failing_cell_leaves_the_notebook_and_exits_non_zero(home: Path, tmp_path: Path) -> None:
    """A corrupt policy makes a cell fail: exit 1, and the executed notebook shows the error."""
    broken = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", broken)
    (broken / "risk_policy.yaml").write_text("version: 1\nunknown_key: true\n")
    run = daily(home, "--policy-dir", str(broken))
    assert run.returncode == 1
    assert "FAILED" in run.stderr
    nb = nbformat.read(home / DAY / "daily_cycle.ipynb", as_version=4)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert errors and errors[0]["ename"] == "ConfigError"
    assert (home / DAY / "daily_cycle.html").exists()
    assert proposals_for_day(home) == []


def test_bad_date_is_refused_before_anything_runs(home: Path) -> None:
    """`--as-of` that is not a date exits 2 and writes no report."""
    run = subprocess.run(
        [WORKBENCH, "daily", "--as-of", "2026-13-45", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert not any(home.iterdir())


def _pending(notional: object) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "proposal_id": "p1",
                "symbol": "SPY",
                "side": "SELL",
                "quantity": Decimal(2),
                "limit_price": Decimal(100),
                "notional": notional,
                "state": "APPROVAL_REQUESTED",
            }
        ]
    )


def test_exposure_after_uses_the_simulated_notional(wb: Workbench) -> None:
    """A pending order moves 'after' by its simulated notional; a missing one is a fault."""
    portfolio = wb.portfolio(record=False)
    frame = exposure_frame(portfolio, _pending(Decimal("201.50")))
    assert frame.loc[frame["symbol"] == "SPY", "after"].item() == -201.5
    with pytest.raises(WorkbenchError, match="without a simulated notional"):
        exposure_frame(portfolio, _pending(None))


# -- is the market open? (the proposer runs only while it is) ------------------------------------

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("when", "opens", "why"),
    [
        (datetime(2026, 11, 21, 10, 30, tzinfo=NY), "2026-11-23 09:30", "(the weekend)"),
        (datetime(2026, 11, 26, 10, 30, tzinfo=NY), "2026-11-27 09:30", "(a holiday)"),
        (datetime(2026, 11, 18, 8, 0, tzinfo=NY), "2026-11-18 09:30", "has not opened yet"),
        (datetime(2026, 11, 18, 16, 30, tzinfo=NY), "2026-11-19 09:30", "closed at"),
    ],
)
def test_market_status_says_why_it_is_closed_and_when_it_opens(
    when: datetime, opens: str, why: str
) -> None:
    """Weekend, Thanksgiving, before the open and after the close: closed, why, next open."""
    status = market_status(when)
    assert not status.open_now and why in status.reason
    assert status.next_open is not None
    assert status.next_open.astimezone(NY).strftime("%Y-%m-%d %H:%M") == opens


def test_market_status_open_in_session() -> None:
    """A Wednesday at 10:30 in New York: open, nothing to explain."""
    status = market_status(datetime(2026, 11, 18, 10, 30, tzinfo=NY))
    assert status.open_now and status.reason == "" and status.next_open is None


def test_closed_market_skips_the_proposer(wb: Workbench, clock: FixedClock) -> None:
    """On a Saturday the cycle proposes nothing and its report carries the reason."""
    clock.set(datetime(2026, 11, 21, 10, 30, tzinfo=NY))
    report = run_cycle(wb, as_of=date(2026, 11, 21), policy_dir=ROOT / "policies")
    assert report.outcomes == () and report.proposals.empty
    assert wb.proposals().empty
    assert "no session on Sat 2026-11-21" in report.market.reason
