"""The daily report as a reviewer reads it: the HTML that `workbench daily` writes.

One module-wide scenario on a real live home, as cron runs it: Wednesday's run proposes ten
orders, two are approved and filled; Thursday runs under a policy whose per-trade cap (15,000)
rejects every new order; Saturday runs on a closed market. Each run is the real `workbench
daily` (no ``--as-of``: a past day would be a replay in its own sandbox, and a Saturday cannot be
replayed) on a wall clock fixed at that moment (``tests/wallclock``). Each test reads the HTML.
"""

from __future__ import annotations

import html as htmllib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from helpers import policies_with
from wbkit import CREDENTIAL, POLICIES, add_approver

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.fmt import NEW_YORK
from workbench.workbench import Workbench

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Days:
    home: Path
    open_day: str  # the report with positions and rejects
    closed_day: str


WALL_CLOCK = Path(__file__).resolve().parent / "wallclock"


def _daily(home: Path, wall_clock: datetime, *extra: str) -> None:
    """Today's live run, as cron starts it, with the wall clock (CLI and kernel) at
    ``wall_clock``."""
    path = os.pathsep.join(p for p in (str(WALL_CLOCK), os.environ.get("PYTHONPATH")) if p)
    run = subprocess.run(
        [WORKBENCH, "daily", "--home", str(home), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path, "WORKBENCH_TEST_WALL_CLOCK": wall_clock.isoformat()},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == "", run.stderr  # no kernel notices on the terminal either
    assert f"{home / wall_clock.astimezone(NEW_YORK).date().isoformat()}" in run.stdout


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Days]:
    home = tmp_path_factory.mktemp("report") / "home"
    tight = policies_with(
        tmp_path_factory.mktemp("policies") / "policies",
        ("max_notional_per_trade: 25000", "max_notional_per_trade: 15000"),
    )
    _daily(home, datetime(2026, 11, 18, 10, 30, tzinfo=NEW_YORK))
    clock = FixedClock(datetime(2026, 11, 18, 15, 31, tzinfo=UTC))
    with Workbench.open(
        home, "paper", policy_dir=POLICIES, clock=clock, log_clock=clock
    ) as wb:  # the live home, a minute after the run, on a test's clock
        add_approver(wb)
        for pid in list(wb.proposals()["proposal_id"])[:2]:
            wb.submit(pid, wb.approve(pid, CREDENTIAL).token)
    _daily(home, datetime(2026, 11, 19, 10, 30, tzinfo=NEW_YORK), "--policy-dir", str(tight))
    _daily(home, datetime(2026, 11, 21, 12, 0, tzinfo=NEW_YORK))
    yield Days(home, "2026-11-19", "2026-11-21")


def report(days: Days, day: str) -> str:
    return (days.home / day / "daily_cycle.html").read_text()


def cells(page: str) -> list[str]:
    """The visible text of every table cell in the page."""
    found = re.findall(r"<td[^>]*>(.*?)</td>", page, flags=re.S)
    return [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in found]


def test_html_title_names_the_day_and_the_broker(days: Days) -> None:
    """The page title is "Daily cycle <date> — <broker>", not "Notebook"."""
    page = report(days, days.open_day)
    assert "<title>Daily cycle 2026-11-19 — paper broker (simulated)</title>" in page


def test_tables_have_no_index_column(days: Days) -> None:
    """No table carries pandas' 0..n index column."""
    page = report(days, days.open_day)
    assert page.count("<table") >= 6
    assert "row_heading" not in page and "index_name" not in page
    assert not re.search(r"<tr>\s*<th[^>]*>\s*\d+\s*</th>", page)


def test_money_has_separators_cents_and_currency_and_no_float_noise(days: Days) -> None:
    """Money reads "1,000,099.27 USD"; no cell shows a 25-digit fraction."""
    page = report(days, days.open_day)
    shown = cells(page)
    money = [c for c in shown if re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d\d USD", c)]
    assert len(money) >= 20
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+\.\d\d USD", c) for c in money)
    assert not [c for c in shown if re.search(r"\d\.\d{5,}", c)]
    assert any(re.fullmatch(r"\d+\.\d\d%", c) for c in shown)  # weights as percentages


def test_every_reject_shows_its_blocking_reasons_in_full(days: Days) -> None:
    """Each REJECT's BLOCKER messages appear whole in the report, blockers before notes."""
    page = " ".join(htmllib.unescape(report(days, days.open_day)).split())
    with AuditLog(days.home / "workbench.sqlite") as log:
        judged = [
            e.payload
            for e in log.events(types=(EventType.RISK_GATE_EVALUATED,))
            if e.ts.startswith("2026-11-19")
        ]
    rejects = [p for p in judged if p["decision"] == "REJECT"]
    assert len(rejects) >= 5
    for payload in rejects:
        for v in payload["violations"]:
            if v["severity"] == "BLOCKER":
                assert " ".join(v["message"].split()) in page
    first = page.index("R1 BLOCKER: notional")
    assert first < page.index("R8 MINOR: the quote is synthetic", first)


def test_decision_summary_is_a_small_table(days: Days) -> None:
    """The decisions are counted in a table, never printed as a Python dict."""
    page = report(days, days.open_day)
    assert "Decisions:" not in page and "{&#x27;REJECT" not in page and "{'REJECT" not in page
    assert re.search(r"<caption>Decisions</caption>", page)


def test_header_card_names_market_home_and_verified_chain(days: Days) -> None:
    """The header says the date, broker, market OPEN, home and a verified chain with its head."""
    page = report(days, days.open_day)
    header = page[page.index("wb-report-header") :][:4000]
    assert "Thu 2026-11-19" in header and "paper broker (simulated)" in header
    assert "OPEN" in header and str(days.home) in header
    assert "verified OK" in header and re.search(r"[0-9a-f]{64}", header)


def test_exposure_chart_is_drawn(days: Days) -> None:
    """The exposure chart is in the page as an image."""
    assert "data:image/png;base64" in report(days, days.open_day)


def test_closed_day_says_so_and_proposes_nothing(days: Days) -> None:
    """On Saturday the report says the market is closed, why, and when it opens; no proposals."""
    page = htmllib.unescape(report(days, days.closed_day))
    assert "CLOSED" in page and "Market closed — nothing was proposed." in page
    assert "XNYS has no session on Sat 2026-11-21 (the weekend)" in page
    assert "next session opens 2026-11-23 09:30 EST" in " ".join(
        re.sub(r"<[^>]+>", "", page).split()
    )
    with AuditLog(days.home / "workbench.sqlite") as log:
        saturday = [
            e
            for e in log.events(types=(EventType.ORDER_PROPOSED,))
            if e.correlation_id == "daily:2026-11-21"
        ]
    assert saturday == []


def test_reports_carry_no_kernel_noise(days: Days) -> None:
    """No executed report has a stderr stream, a warning or an error in its outputs."""
    for day in ("2026-11-18", days.open_day, days.closed_day):
        nb = nbformat.read(days.home / day / "daily_cycle.ipynb", as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error", out
                assert not (out["output_type"] == "stream" and out["name"] == "stderr"), out
                assert "Warning" not in str(out.get("text", "")), out
