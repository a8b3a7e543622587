"""Private by default: home 0700, database (-wal, -shm) and key 0600 whatever the umask; a wider
home is reported by every command and refused by approve and submit until fixed."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from wbkit import CREDENTIAL, add_approver, intent, open_wb, parent_orders

from workbench import privacy
from workbench.cli import main
from workbench.clock import FixedClock
from workbench.errors import ApprovalError
from workbench.lifecycle import OrderState


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o022], ids=["umask 000", "umask 022"])
def test_a_new_home_is_private_whatever_the_umask(
    tmp_path: Path, clock: FixedClock, mask: int
) -> None:
    """Opening a new home and enrolling its first approver makes the home 0700 and the
    database, its -wal and -shm, and the approval key 0600."""
    home = tmp_path / "deep" / "home"
    with umask(mask), open_wb(home, clock) as wb:
        add_approver(wb)
        wb.run(intent(wb), actor="test")
        assert mode(home) == 0o700
        for name in privacy.PRIVATE_FILES:
            assert (home / name).exists(), name
            assert mode(home / name) == 0o600, name
        assert privacy.problems(home) == []


@pytest.fixture
def widened(home: Path, clock: FixedClock) -> tuple[str, str, str]:
    """A home with one approval in hand (proposal, token), then opened up to 0755 / 0644."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        outcome = wb.run(intent(wb), actor="test")
        first = wb.approve(outcome.proposal_id, CREDENTIAL)
        pending = wb.run(intent(wb, "QQQ", 3), actor="test")
    home.chmod(0o755)
    (home / "workbench.sqlite").chmod(0o644)
    return outcome.proposal_id, first.token, pending.proposal_id


def test_a_wider_home_is_warned_about_and_refuses_approve_and_submit(
    home: Path,
    clock: FixedClock,
    widened: tuple[str, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every command warns (naming the fix); approve and submit refuse, nothing is sent;
    `workbench doctor --fix-permissions` narrows the modes and then both work."""
    pid, token, pending = widened
    for argv in (["status"], ["audit", "verify"], ["approver", "list"]):
        main([*argv, "--home", str(home)])
        err = capsys.readouterr().err
        assert "warning:" in err and "0755" in err and "doctor --fix-permissions" in err
    with open_wb(home, clock) as wb:
        with pytest.raises(ApprovalError, match="refused until the home is private"):
            wb.approve(pending, CREDENTIAL)
        with pytest.raises(ApprovalError, match="refused until the home is private"):
            wb.submit(pid, token)
        assert parent_orders(wb) == [] and wb.state(pid) is OrderState.APPROVAL_GRANTED
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["doctor", "--home", str(home)]) == 1
    assert "not private" in capsys.readouterr().err
    assert main(["doctor", "--fix-permissions", "--home", str(home)]) == 0
    out = capsys.readouterr()
    assert "fixed:" in out.out and "warning" not in out.err
    assert mode(home) == 0o700 and mode(home / "workbench.sqlite") == 0o600
    with open_wb(home, clock) as wb:
        assert wb.submit(pid, token) is OrderState.FILLED
        wb.approve(pending, CREDENTIAL)
