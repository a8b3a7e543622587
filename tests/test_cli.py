"""The workbench command: every command documented, home resolution, audit commands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.audit import AuditLog, EventType
from workbench.cli import build_parser, main

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
    """WORKBENCH_HOME chooses the home when --home is not given."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "h"))
    assert main(["audit", "verify"]) == 0
    assert (tmp_path / "h" / "workbench.sqlite").exists()


def test_audit_tail_prints_the_newest_events(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`workbench audit tail -n 2` prints the two newest events."""
    with AuditLog(home / "workbench.sqlite") as log:
        for i in range(3):
            payload = {"tool": "t", "arguments": {"i": i}, "outcome": "ok", "detail": ""}
            log.append(EventType.TOOL_CALLED, payload, actor="test")
    assert main(["audit", "tail", "-n", "2", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["2", "3"]
