"""The workbench command: every command documented, home resolution, audit commands."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from helpers import write_bars

from workbench.audit import AuditLog, EventType
from workbench.cli import _open, build_parser, main
from workbench.replay import market_today

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def all_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found.extend(all_commands(sub, (*prefix, name)))
    return found


def test_every_command_has_help_and_is_documented() -> None:
    """Each CLI command has help text and appears in the README."""
    readme = (ROOT / "README.md").read_text()
    commands = all_commands(build_parser())
    assert ("audit", "verify") in commands
    for path in commands:
        out = subprocess.run([WORKBENCH, *path, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, path
        assert f"workbench {' '.join(path)}" in readme, f"README does not document {path}"


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
            log.append(EventType.TOOL_CALLED, {"i": i}, actor="test")
    assert main(["audit", "tail", "-n", "2", "--home", str(home)]) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header == f"home: {home}"
    assert [line.split()[0] for line in lines] == ["2", "3"]


FACADE_COMMANDS = [
    ["status"],
    ["proposals"],
    ["approve", "p1", "--approver", "bob"],
    ["reject", "p1", "--approver", "bob", "--reason", "no"],
    ["submit", "p1", "--token", "t"],
    ["cancel", "p1"],
    ["reconcile"],
    ["resume", "--approver", "bob"],
]


@pytest.mark.parametrize("command", FACADE_COMMANDS, ids=lambda c: c[0])
def test_every_command_that_marks_positions_takes_the_users_bars(
    home: Path, tmp_path: Path, command: list[str]
) -> None:
    """--bars reaches the paper broker of every command that opens the facade."""
    bars = write_bars(tmp_path / "mine.csv", ("SPY",), date(2026, 11, 18))
    args = build_parser().parse_args([*command, "--bars", str(bars), "--home", str(home)])
    with _open(args) as wb:
        assert wb.broker.market.label == "file mine.csv"  # type: ignore[attr-defined]


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
