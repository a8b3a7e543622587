"""One-time tokens for verified approvers and their atomic consumption with OrderSubmitted."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    make_intent,
    policies_with,
    recheck,
    request_approval,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.approval import ApprovalGrant, Approvals
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority, Credential
from workbench.clock import FixedClock
from workbench.errors import ApprovalError
from workbench.events import ApprovalGranted
from workbench.keys import KEY_FILE
from workbench.lifecycle import OrderState, current_state
from workbench.models import ProtectiveStop

WORKBENCH = str(Path(sys.executable).with_name("workbench"))


@pytest.fixture
def approvals(log: AuditLog, home: Path, clock: FixedClock) -> Approvals:
    """Approvals over the test log with alice (bootstrap) and bob (enrolled by alice)."""
    authority = authority_with(log, home, ALICE_CRED, BOB_CRED)
    return Approvals(log, authority, clock, policy_dir=POLICIES)


def second_approver_above_1000(log: AuditLog, home: Path, tmp_path: Path) -> Approvals:
    """Approvals whose policy asks a second approver above a notional of 1,000."""
    folder = policies_with(
        tmp_path / "policies",
        ("second_approver_min_notional: null", "second_approver_min_notional: 1000"),
    )
    authority = authority_with(log, home, ALICE_CRED, BOB_CRED)
    return Approvals(log, authority, log.clock, policy_dir=folder)


def types(log: AuditLog, proposal_id: str) -> list[str]:
    return [e.type for e in log.events(proposal_id=proposal_id)]


def submit(approvals: Approvals, proposal_id: str, token: str) -> Any:
    with approvals.log.transaction() as tx:
        return approvals.consume(tx, proposal_id, token, order_ref=f"wb:{proposal_id}")


def approved(approvals: Approvals, proposal_id: str, **kwargs: Any) -> ApprovalGrant:
    request_approval(approvals.log, proposal_id, **kwargs)
    return approvals.approve(proposal_id, ALICE_CRED)


# -- minting ---------------------------------------------------------------------------------


def test_right_credential_mints_a_token_recorded_only_by_digest(approvals: Approvals) -> None:
    """The right passphrase mints a token; the log keeps its sha256 and never the token."""
    intent = request_approval(approvals.log, "p1")
    grant = approvals.approve("p1", ALICE_CRED)
    assert grant.proposal_id == "p1" and grant.approvers == (ALICE,)
    assert grant.expires_at == approvals.clock.now() + timedelta(minutes=5)
    assert grant.token not in repr(grant) and ALICE_PW not in repr(ALICE_CRED)
    event = approvals.log.events(proposal_id="p1", types=(EventType.APPROVAL_GRANTED,))[0]
    granted = event.data_as(ApprovalGranted)
    assert granted.token_digest == hashlib.sha256(grant.token.encode()).hexdigest()
    assert granted.intent_hash == intent.intent_hash
    assert granted.token_id == grant.token_id and event.actor == ALICE
    assert current_state(approvals.log, "p1") is OrderState.APPROVAL_GRANTED


def test_token_and_passphrase_are_never_stored_in_clear(approvals: Approvals, home: Path) -> None:
    """Neither the token, nor its MAC, nor a passphrase appears anywhere in the database files."""
    grant = approved(approvals, "p1")
    submit(approvals, "p1", grant.token)
    blob = b"".join(p.read_bytes() for p in home.glob("workbench.sqlite*"))
    for secret in (grant.token, grant.token.split(".")[1], ALICE_PW, BOB_PW):
        assert secret.encode() not in blob


def test_wrong_passphrase_mints_nothing(approvals: Approvals) -> None:
    """A wrong passphrase raises, writes no ApprovalGranted and leaves the state as it was."""
    request_approval(approvals.log, "p1")
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        approvals.approve("p1", Credential(ALICE, BOB_PW))
    assert EventType.APPROVAL_GRANTED not in types(approvals.log, "p1")
    assert EventType.APPROVAL_CREDENTIAL_REFUSED in types(approvals.log, "p1")
    assert current_state(approvals.log, "p1") is OrderState.APPROVAL_REQUESTED


def test_unknown_approver_is_refused(approvals: Approvals) -> None:
    """A name that was never registered cannot approve, even with a registered passphrase."""
    request_approval(approvals.log, "p1")
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        approvals.approve("p1", Credential("mallory", ALICE_PW))
    assert current_state(approvals.log, "p1") is OrderState.APPROVAL_REQUESTED
    refused = approvals.log.events(types=(EventType.APPROVAL_CREDENTIAL_REFUSED,))
    assert refused[-1].payload["reason"] == "unknown approver 'mallory'"
    with pytest.raises(ApprovalError, match="needs an approver's Credential"):
        approvals.approve("p1", "alice")  # type: ignore[arg-type]


def test_approve_needs_a_pending_request(approvals: Approvals) -> None:
    """A proposal that is already approved, or does not exist, cannot be approved (again)."""
    approved(approvals, "p1")
    with pytest.raises(ApprovalError, match="not awaiting approval"):
        approvals.approve("p1", ALICE_CRED)
    with pytest.raises(ApprovalError, match="no proposal"):
        approvals.approve("nope", ALICE_CRED)


# -- the risk decision -----------------------------------------------------------------------


def test_review_needs_an_override_reason_which_is_recorded(approvals: Approvals) -> None:
    """A REVIEW decision is refused without a reason and approved with one, which is recorded."""
    request_approval(approvals.log, "p1", decision="REVIEW")
    with pytest.raises(ApprovalError, match="override reason"):
        approvals.approve("p1", ALICE_CRED, override_reason="   ")
    approvals.approve("p1", ALICE_CRED, override_reason="spread is fine today")
    event = approvals.log.events(proposal_id="p1", types=(EventType.APPROVAL_GRANTED,))[0]
    assert event.data_as(ApprovalGranted).override_reason == "spread is fine today"
    assert event.data_as(ApprovalGranted).decision == "REVIEW"


def test_reject_decision_is_never_approvable(approvals: Approvals, log: AuditLog) -> None:
    """A gate REJECT, first or on a re-check, cannot be overridden by any approver."""
    request_approval(log, "p1")
    recheck(log, "p1", "REJECT")
    with pytest.raises(ApprovalError, match="rejected"):
        approvals.approve("p1", ALICE_CRED, override_reason="I insist")
    assert current_state(log, "p1") is OrderState.APPROVAL_REQUESTED


def test_second_approver_required_above_threshold(
    log: AuditLog, home: Path, tmp_path: Path
) -> None:
    """Above the policy's notional threshold one approver is not enough and the second must
    differ and verify."""
    service = second_approver_above_1000(log, home, tmp_path)
    request_approval(log, "big")
    with pytest.raises(ApprovalError, match="second approver"):
        service.approve("big", ALICE_CRED)
    with pytest.raises(ApprovalError, match="different person"):
        service.approve("big", ALICE_CRED, second=ALICE_CRED)
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        service.approve("big", ALICE_CRED, second=Credential(BOB, ALICE_PW))
    grant = service.approve("big", ALICE_CRED, second=BOB_CRED)
    assert grant.approvers == (ALICE, BOB)
    request_approval(log, "small", make_intent(quantity=Decimal(1)))
    assert service.approve("small", ALICE_CRED).approvers == (ALICE,)


def test_simulated_notional_counts_for_the_threshold(
    log: AuditLog, home: Path, tmp_path: Path
) -> None:
    """A market order's notional comes from its simulation: under the threshold one approver
    does; over it, two are needed."""
    service = second_approver_above_1000(log, home, tmp_path)
    mkt = make_intent(order_type="MKT", limit_price=None)
    request_approval(log, "sim", mkt, notional=Decimal(999))
    assert service.approve("sim", ALICE_CRED).approvers == (ALICE,)
    request_approval(log, "over", mkt, notional=Decimal(1001))
    with pytest.raises(ApprovalError, match="second approver"):
        service.approve("over", ALICE_CRED)


# -- consuming -------------------------------------------------------------------------------


def test_token_gives_a_permit_and_records_order_submitted(approvals: Approvals) -> None:
    """Consuming a fresh token writes OrderSubmitted and returns a permit pointing at it."""
    stop = ProtectiveStop(stop_price=Decimal(480))
    intent = request_approval(approvals.log, "p1", make_intent(protective_stop=stop))
    grant = approvals.approve("p1", ALICE_CRED)
    permit = submit(approvals, "p1", grant.token)
    event = approvals.log.events(proposal_id="p1", types=(EventType.ORDER_SUBMITTED,))[0]
    assert permit.submitted_seq == event.seq and permit.intent == intent
    assert permit.protective_stop == stop and permit.order_ref == "wb:p1"
    assert event.payload["token_id"] == grant.token_id
    row = approvals.log.conn.execute("SELECT proposal_id, submitted_seq FROM token_uses")
    assert row.fetchall() == [("p1", event.seq)]
    assert current_state(approvals.log, "p1") is OrderState.SUBMITTED


def test_token_opens_only_its_own_proposal(approvals: Approvals) -> None:
    """A's token never opens B, even when B holds an identical, approved intent."""
    grant_a = approved(approvals, "A")
    approved(approvals, "B")
    with pytest.raises(ApprovalError, match="issued for proposal A"):
        submit(approvals, "B", grant_a.token)
    assert current_state(approvals.log, "B") is OrderState.APPROVAL_GRANTED


def test_older_token_is_refused_after_a_new_approval(approvals: Approvals) -> None:
    """Only the token of the latest ApprovalGranted matches its recorded digest."""
    grant = approved(approvals, "A")
    other = approved(approvals, "B")
    with pytest.raises(ApprovalError):
        submit(approvals, "A", other.token)
    submit(approvals, "A", grant.token)


def test_token_is_used_once(approvals: Approvals) -> None:
    """A replayed token is refused and there is still exactly one OrderSubmitted."""
    grant = approved(approvals, "p1")
    submit(approvals, "p1", grant.token)
    with pytest.raises(ApprovalError, match="already used"):
        submit(approvals, "p1", grant.token)
    assert types(approvals.log, "p1").count(EventType.ORDER_SUBMITTED) == 1


def test_expired_token_is_refused(approvals: Approvals, clock: FixedClock) -> None:
    """A token works until just before its expiry and not at or after it."""
    grant_a = approved(approvals, "A")
    grant_b = approved(approvals, "B")
    clock.advance(timedelta(minutes=5) - timedelta(microseconds=1))
    submit(approvals, "A", grant_a.token)
    clock.advance(timedelta(microseconds=1))
    with pytest.raises(ApprovalError, match="expired"):
        submit(approvals, "B", grant_b.token)
    assert current_state(approvals.log, "B") is OrderState.APPROVAL_GRANTED


def test_expire_stale_closes_unused_approvals(approvals: Approvals, clock: FixedClock) -> None:
    """expire_stale records ApprovalExpired for unused tokens past expiry, and only for them."""
    grant = approved(approvals, "A")
    approved(approvals, "B")
    submit(approvals, "C", approved(approvals, "C").token)
    assert approvals.expire_stale() == []
    clock.advance(timedelta(minutes=6))
    assert approvals.expire_stale() == ["A", "B"]
    assert current_state(approvals.log, "A") is OrderState.APPROVAL_EXPIRED
    with pytest.raises(ApprovalError):
        submit(approvals, "A", grant.token)


def test_request_ttl_expires_old_requests(log: AuditLog, home: Path, clock: FixedClock) -> None:
    """With a request TTL, a request nobody answered expires; without one, it waits."""
    request_approval(log, "p1")
    authority = Authority(log, home, clock)
    plain = Approvals(log, authority, clock, policy_dir=POLICIES)
    assert plain.expire_stale(clock.now() + timedelta(days=1)) == []
    service = Approvals(log, authority, clock, policy_dir=POLICIES, request_ttl=timedelta(hours=1))
    assert service.expire_stale(clock.now() + timedelta(minutes=59)) == []
    assert service.expire_stale(clock.now() + timedelta(hours=1)) == ["p1"]


def test_token_survives_a_restart(approvals: Approvals, home: Path, clock: FixedClock) -> None:
    """A token minted before closing the log is accepted by a fresh log and service."""
    grant = approved(approvals, "p1")
    approvals.log.close()
    with AuditLog(home / "workbench.sqlite", clock=clock) as reopened:
        service = Approvals(reopened, Authority(reopened, home, clock), clock, policy_dir=POLICIES)
        permit = submit(service, "p1", grant.token)
    assert permit.proposal_id == "p1"


def test_failure_after_consume_rolls_everything_back(approvals: Approvals) -> None:
    """An exception later in the same transaction leaves no OrderSubmitted and a usable token."""
    grant = approved(approvals, "p1")
    with pytest.raises(RuntimeError), approvals.log.transaction() as tx:
        approvals.consume(tx, "p1", grant.token, order_ref="wb:p1")
        raise RuntimeError("broker call failed")
    assert EventType.ORDER_SUBMITTED not in types(approvals.log, "p1")
    assert approvals.log.conn.execute("SELECT COUNT(*) FROM token_uses").fetchone()[0] == 0
    submit(approvals, "p1", grant.token)


def test_consume_outside_a_transaction_is_refused(approvals: Approvals) -> None:
    """consume refuses a transaction that is closed or belongs to another log."""
    grant = approved(approvals, "p1")
    with approvals.log.transaction() as tx:
        pass
    with pytest.raises(ApprovalError, match="transaction"):
        approvals.consume(tx, "p1", grant.token, order_ref="x")


def test_tampered_tokens_are_refused(approvals: Approvals) -> None:
    """Changing any one character of a token, in its claims or its MAC, makes it useless."""
    grant = approved(approvals, "p1")
    token = grant.token
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="

    @settings(max_examples=150, deadline=None)
    @given(st.integers(0, len(token) - 1), st.sampled_from(alphabet))
    def check(position: int, char: str) -> None:
        tampered = token[:position] + char + token[position + 1 :]
        if tampered != token:
            with pytest.raises(ApprovalError):
                submit(approvals, "p1", tampered)

    check()
    for bad in ("", "x", token + "0", "." + token, token.replace(".", "..")):
        with pytest.raises(ApprovalError):
            submit(approvals, "p1", bad)
    assert types(approvals.log, "p1").count(EventType.ORDER_SUBMITTED) == 0
    submit(approvals, "p1", token)


def test_token_from_another_home_key_is_refused(approvals: Approvals, tmp_path: Path) -> None:
    """A token signed with another home's key fails the MAC check."""
    grant = approved(approvals, "p1")
    other = tmp_path / "other"
    with AuditLog(other / "workbench.sqlite", clock=approvals.clock) as log2:
        authority2 = authority_with(log2, other, ALICE_CRED)
        service2 = Approvals(log2, authority2, approvals.clock, policy_dir=POLICIES)
        request_approval(log2, "p1")
        foreign = service2.approve("p1", ALICE_CRED)
    with pytest.raises(ApprovalError, match="signature"):
        submit(approvals, "p1", foreign.token)
    submit(approvals, "p1", grant.token)


# -- the key file ----------------------------------------------------------------------------


def test_key_file_is_created_0600_by_the_bootstrap(log: AuditLog, home: Path) -> None:
    """The first approver's enrolment creates a 32-byte key file readable by its owner only."""
    assert not (home / KEY_FILE).exists()
    authority_with(log, home, ALICE_CRED)
    info = (home / KEY_FILE).stat()
    assert info.st_mode & 0o777 == 0o600 and info.st_size == 32


def test_key_file_wider_than_0600_is_refused(approvals: Approvals, home: Path) -> None:
    """A group- or world-readable key fails closed for both minting and consuming."""
    grant = approved(approvals, "p1")
    os.chmod(home / KEY_FILE, 0o644)
    with pytest.raises(ApprovalError, match="0644"):
        submit(approvals, "p1", grant.token)
    request_approval(approvals.log, "p2")
    with pytest.raises(ApprovalError, match="0644"):
        approvals.approve("p2", ALICE_CRED)
    assert current_state(approvals.log, "p1") is OrderState.APPROVAL_GRANTED
    assert current_state(approvals.log, "p2") is OrderState.APPROVAL_REQUESTED


def test_missing_key_file_refuses_tokens(approvals: Approvals, home: Path) -> None:
    """Without its key file no token can be verified."""
    grant = approved(approvals, "p1")
    (home / KEY_FILE).unlink()
    with pytest.raises(ApprovalError, match="cannot be opened"):
        submit(approvals, "p1", grant.token)


# -- reject and approvers --------------------------------------------------------------------


def test_reject_checks_the_credential_then_records_the_reason(approvals: Approvals) -> None:
    """A wrong passphrase cannot reject; the right one records ApprovalDenied with its reason."""
    request_approval(approvals.log, "p1")
    with pytest.raises(ApprovalError, match="wrong approver name or passphrase"):
        approvals.reject("p1", Credential(BOB, ALICE_PW), "no")
    assert current_state(approvals.log, "p1") is OrderState.APPROVAL_REQUESTED
    approvals.reject("p1", BOB_CRED, "too large for a Friday")
    event = approvals.log.events(proposal_id="p1", types=(EventType.APPROVAL_DENIED,))[0]
    assert event.payload == {"approver": BOB, "reason": "too large for a Friday"}
    with pytest.raises(ApprovalError, match="not awaiting approval"):
        approvals.approve("p1", ALICE_CRED)
    with pytest.raises(ApprovalError, match="illegal transition"):
        approvals.reject("p1", ALICE_CRED, "again")


# -- two processes ---------------------------------------------------------------------------


def _consume_in_process(home: str, now: str, token: str, start: Any, results: Any) -> None:
    clock = FixedClock(datetime.fromisoformat(now))
    with AuditLog(Path(home) / "workbench.sqlite", clock=clock) as log:
        service = Approvals(log, Authority(log, home, clock), clock, policy_dir=POLICIES)
        start.wait()
        try:
            with log.transaction() as tx:
                permit = service.consume(tx, "p1", token, order_ref="wb:p1")
            results.put(("ok", permit.submitted_seq))
        except ApprovalError as exc:
            results.put(("refused", str(exc)))


def test_two_processes_racing_with_one_token_submit_once(approvals: Approvals, home: Path) -> None:
    """Two processes consuming the same token at once: exactly one OrderSubmitted."""
    grant = approved(approvals, "p1")
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    now = approvals.clock.now().isoformat()
    procs = [
        ctx.Process(target=_consume_in_process, args=(str(home), now, grant.token, start, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [o[0] for o in outcomes] == ["ok", "refused"]
    assert "already used" in outcomes[1][1]
    assert types(approvals.log, "p1").count(EventType.ORDER_SUBMITTED) == 1
    assert approvals.log.verify().ok
