"""The scheduled daily run: papermill report, idempotent per day, failures noticed, bad input
refused before a kernel starts, and a good report never replaced by a failed one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import pandas as pd
import pytest
from helpers import tool_called, write_bars

from workbench.audit import AuditLog, EventType
from workbench.cli import main
from workbench.clock import FixedClock
from workbench.daily import exposure_frame, market_status, run_cycle
from workbench.errors import WorkbenchError
from workbench.home import DB_NAME, create_home
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))
DAY = "2026-11-18"  # a past Wednesday: replayed in runs/replay/<DAY>/ at 10:30 New York


def daily(
    home: Path, *extra: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKBENCH, "daily", "--as-of", DAY, "--home", str(home), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def sandbox(home: Path) -> Path:
    return home / "replay" / DAY


def proposals_for_day(home: Path) -> list[str]:
    with AuditLog(home / DB_NAME) as log:
        return [
            e.proposal_id or ""
            for e in log.events(types=(EventType.ORDER_PROPOSED,))
            if e.correlation_id == f"daily:{DAY}"
        ]


def outputs(notebook: Path) -> str:
    """Everything the executed notebook shows: Markdown, plain text and HTML (the header card
    and the tables are HTML)."""
    nb = nbformat.read(notebook, as_version=4)
    return "\n".join(
        str(o.get("data", {}).get("text/markdown", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/html", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


def notebook_copy(folder: Path, extra_cell: str) -> Path:
    """The daily notebook with one code cell added right after its parameters."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(ROOT / "notebooks" / "daily_cycle.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(extra_cell))
    nbformat.write(nb, folder / "daily_cycle.ipynb")
    return folder


@pytest.mark.slow
def test_daily_twice_for_the_same_date_keeps_one_set_of_proposals(home: Path) -> None:
    """A replayed day twice: the report is written again, nothing new is proposed, and the live
    home gets no event from the replay."""
    first = daily(home)
    assert first.returncode == 0, first.stderr
    report = sandbox(home) / "daily_cycle.ipynb"
    assert report.exists() and (sandbox(home) / "daily_cycle.html").exists()
    assert str(report) in first.stdout and f"replay home: {sandbox(home)}" in first.stdout
    once = proposals_for_day(sandbox(home))
    assert once, "the rebalance proposer should propose on an empty paper account"
    second = daily(home)
    assert second.returncode == 0, second.stderr
    assert proposals_for_day(sandbox(home)) == once
    with AuditLog(sandbox(home) / DB_NAME) as log:
        assert log.verify().ok
    with AuditLog(home / DB_NAME) as live:
        assert live.count() == 0


@pytest.mark.slow
def test_report_shows_home_decisions_and_chain_head_without_code(home: Path) -> None:
    """The executed notebook shows the sandbox home, the broker, decisions and the chain head;
    its HTML has no code."""
    assert daily(home).returncode == 0
    text = outputs(sandbox(home) / "daily_cycle.ipynb")
    assert "paper broker (simulated)" in text and "synthetic" in text
    assert "Replay" in text and str(sandbox(home)) in text
    assert "Audit chain head" in text and "APPROVE" in text
    html = (sandbox(home) / "daily_cycle.html").read_text()
    assert "open_for_day(" not in html  # --no-input: the code is not in the report
    assert "Audit chain head" in html and str(sandbox(home)) in html


@pytest.mark.slow
def test_a_failed_run_is_kept_beside_the_good_report_never_over_it(
    home: Path, tmp_path: Path
) -> None:
    """A cell that fails: exit 1, daily_cycle.failed.ipynb shows the error, the good report and
    its HTML are byte for byte what they were, no half-written file is left."""
    assert daily(home).returncode == 0
    good = {p.name: p.read_bytes() for p in sandbox(home).glob("daily_cycle.*")}
    broken = notebook_copy(tmp_path / "nb", "raise RuntimeError('the data vendor is down')")
    run = daily(home, env={"WORKBENCH_NOTEBOOKS": str(broken)})
    assert run.returncode == 1
    assert "FAILED: RuntimeError: the data vendor is down" in run.stderr
    failed = sandbox(home) / "daily_cycle.failed.ipynb"
    errors = [
        o
        for c in nbformat.read(failed, as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert errors and errors[0]["ename"] == "RuntimeError"
    assert (sandbox(home) / "daily_cycle.failed.html").exists()
    for name, content in good.items():
        assert (sandbox(home) / name).read_bytes() == content, name
    assert not list(sandbox(home).glob(".*"))


@pytest.mark.slow
def test_relative_paths_are_read_from_the_callers_folder(tmp_path: Path) -> None:
    """--home, --signals and --bars given relative to where the command runs all work: the
    proposals are priced from the user's bars, not the synthetic ones."""
    write_bars(tmp_path / "bars.csv", ("SPY", "QQQ"), date.fromisoformat(DAY))
    (tmp_path / "signals.csv").write_text(
        "ticker,weight,direction,is_propagated,atr_per_share,entry_price\n"
        "SPY,0.05,BUY,false,2,101\n"
    )
    run = daily(
        Path("home"),
        *("--proposer", "signals", "--signals", "signals.csv", "--bars", "bars.csv"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    with AuditLog(tmp_path / "home" / "replay" / DAY / DB_NAME) as log:
        quotes = [e.payload for e in log.events(types=(EventType.MARKET_SNAPSHOT_TAKEN,))]
    assert quotes and {q["quote"]["source"] for q in quotes} == {"file bars.csv"}


# -- bad input: exit 2 before a kernel starts, nothing written ---------------------------------


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with a day's good report and an event; a notebook that leaves a mark if a kernel
    ever runs it; inputs good and bad in the working folder."""
    home = create_home(tmp_path / "home")
    with AuditLog(home / DB_NAME) as log:
        called = {**tool_called(), "detail": "before"}
        log.append(EventType.TOOL_CALLED, called, actor="test")
    for report in (sandbox(home), home / "2026-11-27"):
        report.mkdir(parents=True)
        (report / "daily_cycle.ipynb").write_text('{"the": "good report"}')
    mark = tmp_path / "KERNEL_RAN"
    notebooks = notebook_copy(tmp_path / "nb", f"open({str(mark)!r}, 'w').write('ran')")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(notebooks))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "risk_policy.yaml").write_text("version: 1\nunknown_key: true\n")
    (tmp_path / "bad_signals.csv").write_text("ticker,weight\nSPY,2\n")
    (tmp_path / "deep_signals.csv").write_text(
        "ticker,weight,direction,is_propagated,atr_per_share,entry_price,metadata\n"
        f'SPY,0.05,BUY,false,2,101,"{"[" * 5_000}"\n'
    )
    (tmp_path / "bad_bars.csv").write_text("day,ticker,close\n")
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    return tmp_path


BAD_ARGUMENTS = {
    "future": ["--as-of", "2030-01-02"],
    "saturday": ["--as-of", "2026-11-21"],
    "holiday": ["--as-of", "2026-11-26"],
    "not-a-date": ["--as-of", "2026-13-45"],
    "signals-without-file": ["--proposer", "signals"],
    "file-without-signals": ["--signals", "bad_signals.csv"],
    "missing-signals": ["--proposer", "signals", "--signals", "nope.csv"],
    "bad-signals": ["--proposer", "signals", "--signals", "bad_signals.csv"],
    "deep-signals-json": ["--proposer", "signals", "--signals", "deep_signals.csv"],
    "missing-bars": ["--bars", "nope.csv"],
    "bad-bars": ["--bars", "bad_bars.csv"],
    "empty-symbol": ["--universe", "SPY,,FOO"],
    "unknown-symbol": ["--universe", "SPY,FOO"],
    "symbol-twice": ["--universe", "SPY,spy"],
    "missing-policy-dir": ["--policy-dir", "nope"],
    "corrupt-policy": ["--policy-dir", "broken"],
    "home-is-a-file": ["--home", "afile"],
}


@pytest.mark.parametrize("extra", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_argument_exits_2_before_a_kernel_with_nothing_written(
    scene: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    """Each bad argument: exit 2 and one line saying why; no kernel ran, no file or event was
    written, the day's previous report is intact."""
    before = tree(scene)
    assert main(["daily", "--home", "home", "--as-of", DAY, *extra]) == 2  # the last one wins
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert tree(scene) == before
    assert not (scene / "KERNEL_RAN").exists()


def test_bad_arguments_in_a_real_process_are_one_line_too(scene: Path) -> None:
    """The command as cron runs it: exit 2, one line on stderr, no traceback, nothing written."""
    before = tree(scene)
    run = subprocess.run(
        [WORKBENCH, "daily", "--home", "home", "--universe", "SPY,,FOO"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=scene,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "error: universe 'SPY,,FOO': an empty symbol between commas"
    assert tree(scene) == before


def test_the_sentinel_notebook_does_mark_a_kernel_run(scene: Path) -> None:
    """The mark the tests above look for is real: a good run of the sentinel notebook leaves it."""
    from workbench.scheduled import check_arguments, run_notebook

    checked = check_arguments(as_of=DAY, home="home")
    result = run_notebook(checked)
    assert result.ok, result.error
    assert (scene / "KERNEL_RAN").read_text() == "ran"


# -- the report's views --------------------------------------------------------------------------


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
