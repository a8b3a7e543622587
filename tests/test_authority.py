"""Anchored enrolment: the first approver bootstraps an empty home; every later change of who may
approve needs a current approver's passphrase, checked in the library (the CLI only collects it)."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    ALICE_CRED,
    ALICE_PW,
    BOB,
    BOB_CRED,
    BOB_PW,
    POLICIES,
    authority_with,
    request_approval,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import cli
from workbench.approval import Approvals
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority, Credential
from workbench.errors import ApprovalError, IllegalTransitionError
from workbench.events import ApproverAdded, ApproverRemoved
from workbench.lifecycle import record_enrolment

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
CAROL = Credential("carol", "carol's long passphrase")
MALLORY = Credential("mallory", "mallory's own passphrase")


@pytest.fixture
def authority(log: AuditLog, home: Path) -> Authority:
    """alice (the bootstrap) and bob (enrolled by alice)."""
    return authority_with(log, home, ALICE_CRED, BOB_CRED)


def added(log: AuditLog) -> list[ApproverAdded]:
    return [e.data_as(ApproverAdded) for e in log.events(types=(EventType.APPROVER_ADDED,))]


def can_approve(authority: Authority, credential: Credential, pid: str) -> bool:
    """Whether ``credential`` mints a token on a fresh proposal ``pid``."""
    service = Approvals(authority.log, authority, authority.clock, policy_dir=POLICIES)
    request_approval(authority.log, pid)
    try:
        service.approve(pid, credential)
    except ApprovalError:
        return False
    return True


# -- bootstrap and enrolment -------------------------------------------------------------------


def test_first_approver_of_an_empty_home_bootstraps_it_recorded_as_such(
    authority: Authority,
) -> None:
    """The bootstrap is recorded with nobody consenting; bob's enrolment names alice."""
    first, second = added(authority.log)
    assert (first.name, first.bootstrap, first.by) == (ALICE, True, ())
    assert (second.name, second.bootstrap, second.by) == (BOB, False, (ALICE,))
    roster = {a.name: a for a in authority.roster()}
    assert roster[ALICE].bootstrap and roster[BOB].enrolled_by == (ALICE,)
    assert all(a.verified for a in roster.values())


def test_second_approver_without_consent_is_refused(authority: Authority) -> None:
    """mallory cannot bootstrap a home that has approvers, nor vouch for herself, nor enrol with
    a wrong or unknown consenting credential; nothing is enrolled."""
    with pytest.raises(ApprovalError, match="already has approvers"):
        authority.bootstrap(MALLORY)
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        authority.enrol(MALLORY, by=MALLORY)
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        authority.enrol(MALLORY, by=Credential(ALICE, "not alice's passphrase"))
    assert authority.approvers() == [ALICE, BOB]
    assert [a.name for a in added(authority.log)] == [ALICE, BOB]
    assert not can_approve(authority, MALLORY, "p1")


def test_enrolment_with_a_current_approvers_passphrase_works(authority: Authority) -> None:
    """bob enrols carol with his passphrase; carol can then approve."""
    carol = authority.enrol(CAROL, by=BOB_CRED)
    assert (carol.enrolled_by, carol.bootstrap, carol.verified) == ((BOB,), False, True)
    assert can_approve(authority, CAROL, "p1")
    with pytest.raises(ApprovalError, match="already exists"):
        authority.enrol(CAROL, by=ALICE_CRED)


def test_bootstrap_is_refused_on_a_home_that_ever_had_approvers(log: AuditLog, home: Path) -> None:
    """The enrolment table refuses a second bootstrap even if the approvers' rows vanished."""
    authority = authority_with(log, home, ALICE_CRED)
    raw = sqlite3.connect(log.path)
    raw.execute("DELETE FROM approvers")
    raw.commit()
    raw.close()
    with pytest.raises(ApprovalError, match="already had approvers"):
        authority.bootstrap(MALLORY)
    assert authority.approvers() == []


def test_enrolment_table_refuses_consent_from_someone_not_enrolled(authority: Authority) -> None:
    """Even through the enrolment write path, a consent names an enrolled approver."""
    forged = ApproverAdded(name="mallory", by=("eve",), bootstrap=False, replaced=False)
    with pytest.raises(IllegalTransitionError), authority.log.transaction() as tx:
        record_enrolment(tx, forged, actor="eve")
    assert [a.name for a in added(authority.log)] == [ALICE, BOB]


# -- replacing a passphrase -------------------------------------------------------------------


def test_replace_without_the_old_passphrase_is_refused(authority: Authority) -> None:
    """`--replace` needs alice's old passphrase, or two other approvers: a wrong old passphrase,
    or one other approver, is refused and alice's passphrase still works."""
    takeover = Credential(ALICE, "mallory took over alice")
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        authority.replace(takeover, by=[Credential(ALICE, "a guess at it")])
    with pytest.raises(ApprovalError, match="two other approvers"):
        authority.replace(takeover, by=[BOB_CRED])
    assert not can_approve(authority, takeover, "p1")
    assert can_approve(authority, ALICE_CRED, "p2")


def test_replace_with_the_old_passphrase_or_two_others_rotates_it(authority: Authority) -> None:
    """The old passphrase rotates it; so do two other approvers; the old one stops working."""
    rotated = Credential(ALICE, "another long passphrase")
    authority.replace(rotated, by=[ALICE_CRED])
    assert not can_approve(authority, ALICE_CRED, "p1")
    assert can_approve(authority, rotated, "p2")
    authority.enrol(CAROL, by=BOB_CRED)
    again = Credential(ALICE, "alice forgot hers, so")
    with pytest.raises(ApprovalError, match="different person"):
        authority.replace(again, by=[BOB_CRED, BOB_CRED])
    authority.replace(again, by=[BOB_CRED, CAROL])
    assert can_approve(authority, again, "p3")
    last = added(authority.log)[-1]
    assert (last.replaced, last.by) == (True, (BOB, "carol"))


# -- removing an approver ---------------------------------------------------------------------


def test_remove_needs_a_credential_and_never_removes_the_last_approver(
    authority: Authority,
) -> None:
    """A wrong passphrase removes nobody; alice removes bob; alice, now alone, stays."""
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        authority.remove(BOB, by=Credential(ALICE, BOB_PW))
    authority.remove(BOB, by=ALICE_CRED)
    assert authority.approvers() == [ALICE]
    assert not can_approve(authority, BOB_CRED, "p1")
    with pytest.raises(ApprovalError, match="last approver"):
        authority.remove(ALICE, by=ALICE_CRED)
    (removed,) = authority.log.events(types=(EventType.APPROVER_REMOVED,))
    assert removed.data_as(ApproverRemoved).by == (ALICE,)


# -- records written behind the workbench's back -----------------------------------------------


def test_an_approver_row_inserted_behind_the_workbench_does_not_verify(
    authority: Authority,
) -> None:
    """A row copied with a known scrypt hash under a new name (no MAC with the key) is refused:
    mallory cannot approve, and the roster says her record does not verify."""
    raw = sqlite3.connect(authority.log.path)
    row = raw.execute("SELECT * FROM approvers WHERE name = 'bob'").fetchone()
    raw.execute(
        "INSERT INTO approvers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ("mallory", *row[1:])
    )
    raw.commit()
    raw.close()
    assert not can_approve(authority, Credential("mallory", BOB_PW), "p1")
    refused = authority.log.events(types=(EventType.APPROVAL_CREDENTIAL_REFUSED,))
    assert "does not verify" in refused[-1].payload["reason"]
    assert not {a.name: a for a in authority.roster()}["mallory"].verified


# -- input ------------------------------------------------------------------------------------


def test_malformed_approver_names_are_refused(authority: Authority) -> None:
    """Names outside lowercase ASCII (or with a newline) are refused and nothing is written."""
    head = authority.log.head()

    @settings(max_examples=50, deadline=None)
    @given(st.text(max_size=40).filter(lambda s: not (s.isascii() and s.islower()) or "\n" in s))
    def check(name: str) -> None:
        with pytest.raises(ApprovalError, match="approver name"):
            authority.enrol(Credential(name, ALICE_PW), by=ALICE_CRED)

    check()
    assert authority.log.head() == head and authority.approvers() == [ALICE, BOB]


def test_short_passphrase_and_the_reserved_name_are_refused(authority: Authority) -> None:
    """A passphrase under twelve characters, or the name auto-commit, is refused."""
    with pytest.raises(ApprovalError, match="at least 12"):
        authority.enrol(Credential("carol", "short"), by=ALICE_CRED)
    with pytest.raises(ApprovalError, match="reserved"):
        authority.enrol(Credential("auto-commit", ALICE_PW), by=ALICE_CRED)


def test_a_credential_never_shows_its_passphrase() -> None:
    """repr and str of a Credential leave the passphrase out."""
    assert ALICE_PW not in repr(ALICE_CRED) and ALICE_PW not in str(ALICE_CRED)


# -- CLI --------------------------------------------------------------------------------------


def run(monkeypatch: pytest.MonkeyPatch, home: Path, stdin: str, *args: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(["approver", *args, "--home", str(home)])


def test_cli_enrolment_bootstrap_consent_replace_remove_and_list(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI collects passphrases and the library decides: carol bootstraps; dave needs
    carol's consent; a replace needs the old passphrase; the last approver stays."""
    assert (
        run(monkeypatch, home, f"{CAROL.passphrase}\n", "add", "carol", "--passphrase-stdin") == 0
    )
    dave = "dave's long passphrase"
    assert run(monkeypatch, home, f"{dave}\n", "add", "dave", "--passphrase-stdin") == 1
    assert "already has approvers" in capsys.readouterr().err
    wrong = f"{dave}\nnot carol's passphrase\n"
    assert run(monkeypatch, home, wrong, "add", "dave", "--by", "carol", "--passphrase-stdin") == 1
    right = f"{dave}\n{CAROL.passphrase}\n"
    assert run(monkeypatch, home, right, "add", "dave", "--by", "carol", "--passphrase-stdin") == 0
    takeover = "mallory's passphrase\nnot dave's old one\n"
    args = ("add", "dave", "--replace", "--passphrase-stdin")
    assert run(monkeypatch, home, takeover, *args) == 1
    assert "wrong approver name or passphrase" in capsys.readouterr().err
    assert run(monkeypatch, home, f"dave's new passphrase\n{dave}\n", *args) == 0
    assert run(monkeypatch, home, "", "list") == 0
    listing = capsys.readouterr().out
    assert "carol" in listing and "bootstrap" in listing and "by carol" in listing
    assert "passphrase replaced" in listing and "by dave" in listing
    remove = ("remove", "dave", "--by", "carol", "--passphrase-stdin")
    assert run(monkeypatch, home, f"{CAROL.passphrase}\n", *remove) == 0
    remove = ("remove", "carol", "--by", "carol", "--passphrase-stdin")
    assert run(monkeypatch, home, f"{CAROL.passphrase}\n", *remove) == 1
    assert "last approver" in capsys.readouterr().err
    with AuditLog(home / "workbench.sqlite") as log:
        assert Authority(log, home, log.clock).approvers() == ["carol"]


def test_console_script_bootstraps_from_a_piped_passphrase(home: Path) -> None:
    """The installed `workbench` script enrols the first approver from stdin (exit 1 on a
    short passphrase, 0 after), and `approver list` shows it."""
    cmd = [WORKBENCH, "approver", "add", "dave", "--home", str(home), "--passphrase-stdin"]
    out = subprocess.run(cmd, input="too short\n", capture_output=True, text=True)
    assert out.returncode == 1 and "at least 12" in out.stderr
    out = subprocess.run(cmd, input="a passphrase long enough\n", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listing = [WORKBENCH, "approver", "list", "--home", str(home)]
    out = subprocess.run(listing, capture_output=True, text=True)
    assert out.returncode == 0 and "dave" in out.stdout and "bootstrap" in out.stdout
    with AuditLog(home / "workbench.sqlite") as log:
        assert added(log)[0].name == "dave"


def test_an_enrolment_written_through_the_table_alone_grants_nothing(authority: Authority) -> None:
    """An ApproverAdded naming alice as consenting, written through the public enrolment table
    without her passphrase, enrols nobody who can approve: there is no verified record."""
    forged = ApproverAdded(name="mallory", by=(ALICE,), bootstrap=False, replaced=False)
    with authority.log.transaction() as tx:
        record_enrolment(tx, forged, actor=ALICE)
    assert "mallory" not in authority.approvers()
    assert not can_approve(authority, MALLORY, "p1")
