"""The workbench command: every command documented, home resolution, audit commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import clikit
import pytest
from conftest import TRADING_NOW
from helpers import tool_called, write_bars
from wbkit import APPROVER, CREDENTIAL, PASSPHRASE, add_approver, counter_ids, intent, open_wb

from workbench import cli
from workbench.audit import AuditLog, EventType
from workbench.cli import _open, build_parser, main
from workbench.clock import FixedClock
from workbench.fmt import findings
from workbench.replay import market_today

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def test_every_command_has_help_and_is_documented() -> None:
    """Each CLI command has help text and appears in the README."""
    readme = (ROOT / "README.md").read_text()
    commands = clikit.commands()
    assert ("audit", "verify") in commands
    for path in commands:
        out = subprocess.run([WORKBENCH, *path, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, path
        assert clikit.help_line(path).strip(), f"no help line for {path}"
        assert f"workbench {' '.join(path)}" in readme, f"README does not document {path}"


def readme_table_commands() -> set[tuple[str, ...]]:
    """The commands named by the rows of README's command table (`| `workbench a b …` |`)."""
    found = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        row = re.match(r"\| `workbench ((?:[a-z]+ ?)+)", line)
        if row:
            found.add(tuple(row.group(1).split()))
    return found


def test_readme_command_table_has_one_row_per_command() -> None:
    """README's command table lists exactly the commands `workbench --help` offers (each once;
    no row for a command that is gone), the new ones included."""
    table = readme_table_commands()
    assert {("init",), ("doctor",), ("gateway",), ("mcp",), ("mcp", "token")} <= table
    assert {("approver", "list"), ("approver", "remove"), ("reconcile", "resolve")} <= table
    assert table == set(clikit.runnable())


def test_the_walk_covers_every_command() -> None:
    """tests/clikit.RUNNABLE gives every command its arguments, so the failure walks reach all
    of them (a new command must be added there)."""
    assert set(clikit.RUNNABLE) == set(clikit.runnable())
    parser = build_parser()
    for path, argv in clikit.RUNNABLE.items():
        args = parser.parse_args(argv)
        assert args.handler.__name__ == "cmd_" + "_".join(path).replace("-", "_"), path


def test_home_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """WORKBENCH_HOME chooses the home when --home is not given (init creates it there)."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "h"))
    assert main(["audit", "verify"]) == 2  # not created by a read
    assert main(["init"]) == 0 and main(["audit", "verify"]) == 0
    assert (tmp_path / "h" / "workbench.sqlite").exists()
    assert capsys.readouterr().out.splitlines()[-2] == f"home: {tmp_path / 'h'}"


def test_audit_tail_prints_the_newest_events(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`workbench audit tail -n 2` prints the two newest events."""
    with AuditLog(home / "workbench.sqlite") as log:
        for i in range(3):
            log.append(EventType.TOOL_CALLED, tool_called(i=i), actor="test")
    assert main(["audit", "tail", "-n", "2", "--home", str(home)]) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header == f"home: {home}"
    assert [line.split()[0] for line in lines] == ["2", "3"]


# -- the order commands: what a person reads in a terminal ---------------------------------------


@pytest.fixture
def at_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """stdin and stdout are a person's terminal (outside our control), so a passphrase prompt
    may be shown; without one `approve` refuses before anything (test_cli_failures)."""
    # pytest swaps its capture objects between set-up and the call: patch their classes
    monkeypatch.setattr(type(sys.stdin), "isatty", lambda self: True)
    monkeypatch.setattr(type(sys.stdout), "isatty", lambda self: True)


def _pending(home: Path, symbols: tuple[str, ...] = ("SPY",)) -> list[str]:
    with open_wb(home, FixedClock(TRADING_NOW)) as wb:
        add_approver(wb)
        return [wb.run(intent(wb, s), actor="test").proposal_id for s in symbols]


def test_approve_prints_the_ticket_before_asking_for_the_passphrase(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    wall_clock_at_trading_now: FixedClock,
    at_a_terminal: None,
) -> None:
    """`workbench approve` shows the order, its stop, risk and checks before the prompt."""
    (pid,) = _pending(home)
    seen: list[str] = []

    def prompt(text: str = "") -> str:
        seen.append(capsys.readouterr().out)
        return PASSPHRASE

    monkeypatch.setattr(cli.getpass, "getpass", prompt)
    assert main(["approve", pid, "--approver", APPROVER, "--home", str(home)]) == 0
    shown = seen[0]
    assert f"Proposal {pid}: BUY 10 SPY LMT" in shown
    for part in ("Stop (bracket)", "At risk to the stop", "Buying power", "R1   ok", "Decided"):
        assert part in shown, part
    assert all(len(line) <= 100 for line in shown.splitlines())
    after = capsys.readouterr().out
    assert "expires 2026-11-18 10:35:00 EST" in after


def test_approve_of_an_unknown_proposal_asks_nothing(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    wall_clock_at_trading_now: FixedClock,
    at_a_terminal: None,
) -> None:
    """An unknown proposal id is refused before any passphrase is asked for."""
    _pending(home)
    asked: list[str] = []
    monkeypatch.setattr(cli.getpass, "getpass", lambda text="": asked.append(text) or "x")
    assert main(["approve", "nope", "--approver", APPROVER, "--home", str(home)]) == 1
    assert asked == []


def test_submit_prints_the_fill_the_commission_and_the_working_stop(
    home: Path, capsys: pytest.CaptureFixture[str], wall_clock_at_trading_now: FixedClock
) -> None:
    """`workbench submit` says where the order went, its fill, commission and working stop."""
    (pid,) = _pending(home)
    with open_wb(home, wall_clock_at_trading_now) as wb:
        token = wb.approve(pid, CREDENTIAL).token
    assert main(["submit", pid, "--token", token, "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"submitted {pid} to paper broker (simulated): FILLED" in out
    assert re.search(r"fill:\s+10 of 10 @ [\d,]+\.\d\d \(FILLED\)", out), out
    assert re.search(r"commission:\s+1\.00 USD", out), out
    assert re.search(r"stop:\s+SELL 10 SPY STP [\d,.]+ GTC: WORKING", out), out


def test_proposals_fit_100_columns_with_blocking_reasons_in_full(
    home: Path, capsys: pytest.CaptureFixture[str], wall_clock_at_trading_now: FixedClock
) -> None:
    """The default listing fits 100 columns and prints every blocking reason whole."""
    symbols = ("SPY", "QQQ", "IEF", "AGG", "GLD", "TLT")
    ids = _pending(home, symbols)
    with open_wb(home, FixedClock(TRADING_NOW), counter_ids("q")) as wb:
        far = intent(wb, "VEA")
        assert far.limit_price is not None
        far = far.model_copy(update={"limit_price": far.limit_price * 2})
        collared = wb.run(far, actor="test")
        wb.halt("risk off", by="ops")
        halted = wb.run(intent(wb, "VWO"), actor="test").proposal_id
    assert main(["proposals", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 100 for line in out.splitlines()), max(map(len, out.splitlines()))
    assert all(pid in out for pid in [*ids, collared.proposal_id, halted])
    assert collared.decision is not None
    for v in collared.decision.violations:
        if v.severity == "BLOCKER":
            assert " ".join(v.message.split()) in " ".join(out.split())
    assert "R12 BLOCKER: limit price" in out and "R6 BLOCKER: trading is HALTED" in out
    assert "2026-11-18 10:30" in out and "notional USD" in out
    assert "(MINOR)" not in out and "MINOR notes not shown" in out


def test_proposals_wide_lists_every_column_and_violation(
    home: Path, capsys: pytest.CaptureFixture[str], wall_clock_at_trading_now: FixedClock
) -> None:
    """`--wide` shows every column of the view and every violation, MINOR notes included."""
    _pending(home)
    assert main(["proposals", "--wide", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    for column in ("proposal_id", "limit_price", "stop", "source", "correlation_id"):
        assert column in out
    assert "R8_MARKET_DATA_STALE (MINOR): the quote is synthetic (paper data)" in out


def test_findings_split_the_view_text_blockers_first() -> None:
    """The proposals view's violation text splits into findings, BLOCKERs before MINORs."""
    text = (
        "R8_MARKET_DATA_STALE (MINOR): the quote is synthetic; really (paper data); "
        "R11_TRADING_WINDOW (BLOCKER): XNYS has no session on 2026-11-21"
    )
    assert findings(text) == [
        ("R11", "BLOCKER", "XNYS has no session on 2026-11-21"),
        ("R8", "MINOR", "the quote is synthetic; really (paper data)"),
    ]
    assert findings("simulation failed: no quote") == [
        ("FAULT", "BLOCKER", "simulation failed: no quote")
    ]


FACADE_COMMANDS = [
    ["status"],
    ["proposals"],
    ["approve", "p1", "--approver", "bob"],
    ["reject", "p1", "--approver", "bob", "--reason", "no"],
    ["submit", "p1", "--token", "t"],
    ["cancel", "p1"],
    ["reconcile"],
    ["reconcile", "resolve", "p1", "--not-sent", "--approver", "bob"],
    ["resume", "--approver", "bob"],
]


@pytest.mark.parametrize("command", FACADE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_that_marks_positions_takes_the_users_bars(
    home: Path, tmp_path: Path, command: list[str]
) -> None:
    """--bars reaches the paper broker of every command that opens the facade."""
    bars = write_bars(tmp_path / "mine.csv", ("SPY",), date(2026, 11, 18))
    args = build_parser().parse_args([*command, "--bars", str(bars), "--home", str(home)])
    with _open(args) as wb:
        assert wb.broker.market.label == "file mine.csv"  # type: ignore[attr-defined]


def test_options_given_before_an_action_reach_it(home: Path, tmp_path: Path) -> None:
    """`reconcile --home H --bars B resolve …` keeps H and B: the action's own options set
    nothing unless given there (given there, they win)."""
    bars = tmp_path / "mine.csv"
    before = ["reconcile", "--home", str(home), "--bars", str(bars), "resolve", "p1"]
    args = build_parser().parse_args([*before, "--not-sent", "--approver", "bob"])
    assert (args.home, args.bars, args.broker, args.policy_dir) == (
        str(home),
        str(bars),
        "paper",
        None,
    )
    after = build_parser().parse_args([*before, "--not-sent", "--approver", "bob", "--home", "X"])
    assert after.home == "X" and after.handler is cli.cmd_reconcile_resolve


def test_policy_bars_are_read_relative_to_the_policies_folder(home: Path, tmp_path: Path) -> None:
    """market_data.bars in strategy_params.yaml is used when --bars is not given."""
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    write_bars(policies / "bars.csv", ("SPY",), market_today())  # the CLI runs on the wall clock
    params = policies / "strategy_params.yaml"
    params.write_text(params.read_text().replace("  bars: null", "  bars: bars.csv"))
    args = build_parser().parse_args(["status", "--home", str(home), "--policy-dir", str(policies)])
    with _open(args) as wb:
        quote = wb.market_snapshot("SPY", record=False)
    assert quote.source == "file bars.csv" and not quote.synthetic


def test_options_given_before_mcp_token_reach_it(home: Path) -> None:
    """`mcp --home H token` issues the token in H (the action's own --home sets nothing unless
    given there, as for `reconcile … resolve`)."""
    args = build_parser().parse_args(["mcp", "--home", str(home), "token"])
    assert args.home == str(home) and args.handler is cli.cmd_mcp_token
    assert build_parser().parse_args(["mcp", "token", "--home", "X"]).home == "X"


def test_proposals_state_is_taken_in_any_case(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`proposals --state approval_requested` lists that state; a state that does not exist
    is refused in one line listing the states there are (exit 2)."""
    pending = _pending(home)
    assert main(["proposals", "--state", "approval_requested", "--home", str(home)]) == 0
    assert pending[0] in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["proposals", "--state", "BOGUS", "--home", str(home)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "'BOGUS'" in err and "APPROVAL_REQUESTED" in err and "RISK_REVIEW" in err
