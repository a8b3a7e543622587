"""The two-step commit: only a fresh, matching, unused token while ACTIVE sends an order.

A hypothesis state machine drives the real facade (real SQLite home, real paper broker) through
random sequences and checks the broker against its own model after every step; two spawned
processes race with one token; and a process killed between consuming the token and calling the
broker leaves a state the next start reports without re-sending.
"""

from __future__ import annotations

import base64
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TRADING_NOW
from helpers import fake_grant, fake_submission, raw_insert
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from wbkit import (
    APPROVER,
    CREDENTIAL,
    PASSPHRASE,
    POLICIES,
    add_approver,
    counter_ids,
    intent,
    open_wb,
)
from wbkit import parent_orders as broker_parents

from workbench import canonical, records, trading_state
from workbench.audit import EventType
from workbench.authority import Authority, Credential
from workbench.clock import FixedClock
from workbench.errors import (
    ApprovalError,
    BrokerError,
    GuardedEventError,
    IllegalTransitionError,
    TradingHaltedError,
    WorkbenchError,
)
from workbench.events import GUARDED, KillSwitchReleased
from workbench.lifecycle import OrderState, advance, change_trading_state
from workbench.models import SubmitPermit, TradingState
from workbench.workbench import Workbench

# Each at least 100 (R18's minimum notional for one share) and well under R1's cap for a few.
SYMBOLS = ("SPY", "QQQ", "IWM", "DIA", "VTI", "XLK", "GLD", "XLV", "AAPL", "MSFT")
EXPIRY = timedelta(seconds=300)  # policies/risk_policy.yaml: approval.token_expiry_seconds


def policies_without_rate_limit(folder: Path) -> Path:
    """The repository's policies with R14's per-minute throttle lifted, so that the gate's verdict
    at a submit-time re-check depends only on what the model tracks (token, state, time)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in POLICIES.glob("*.yaml"):
        (folder / f.name).write_text(f.read_text())
    policy = folder / "risk_policy.yaml"
    text = policy.read_text()
    assert "max_submits_per_minute: 10" in text
    policy.write_text(text.replace("max_submits_per_minute: 10", "max_submits_per_minute: 1000"))
    return folder


@dataclass
class Expected:
    """The model's view of one proposal."""

    approvable: bool  # the gate sent it to a person (APPROVAL_REQUESTED)
    token: str | None = None  # the token its approval minted
    expires_at: datetime | None = None
    used: bool = False


def tamper(token: str, where: str) -> str:
    """A token with one thing changed: its MAC, or its claims (the MAC left as it was)."""
    claims, mac = token.split(".")
    if where == "mac":
        return f"{claims}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}"
    raw = base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))
    forged = raw.replace(b'"expires_at":"2', b'"expires_at":"3')  # a far later expiry
    assert forged != raw
    return f"{base64.urlsafe_b64encode(forged).rstrip(b'=').decode()}.{mac}"


ROGUE = Credential("mallory", "mallory's own passphrase")  # never enrolled by anyone
NEWCOMERS = ("bob", "carol", "dave")
GUARDED_TYPES = sorted(GUARDED)


class TwoStepCommit(RuleBasedStateMachine):
    """propose / approve / submit (good and bad tokens) / halt / resume / time / restart, and the
    hostile moves: forged events, forged permits, enrolment without consent, library resumes.

    Invariant after every step: the broker holds exactly the orders that had a fresh, matching,
    spent token from an approver enrolled by an existing approver, while ACTIVE."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="wb-2pc-"))
        self.home = self.tmp / "home"
        self.policies = policies_without_rate_limit(self.tmp / "policies")
        self.clock = FixedClock(TRADING_NOW)
        self.ids = counter_ids()
        self.wb = open_wb(self.home, self.clock, self.ids, self.policies)
        self.model: dict[str, Expected] = {}
        self.sent: list[str] = []  # the model: proposals whose parent order the broker got
        self.halted = False
        self.proposed = 0
        self.enrolled: dict[str, str] = {}  # name -> passphrase, as the model knows them

    @initialize()
    def register_approver_and_approve_two(self) -> None:
        """Every run starts with tokens in hand, so short runs reach the interesting submits."""
        add_approver(self.wb)
        self.enrolled[APPROVER] = PASSPHRASE
        self.propose(and_approve=True)
        self.propose(and_approve=True)

    def teardown(self) -> None:
        try:
            assert self.wb.log.verify().ok
        finally:
            self.wb.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def authority(self) -> Authority:
        assert self.wb.authority is not None
        return self.wb.authority

    def _pick(self, ids: list[Any], index: int) -> Any:
        return ids[index % len(ids)]

    def _tokens(self) -> list[tuple[str, str]]:
        return [(pid, e.token) for pid, e in self.model.items() if e.token is not None]

    def _credential(self, index: int, right: bool) -> Credential:
        """An enrolled approver's credential (right or wrong passphrase), or the rogue's."""
        names = [*sorted(self.enrolled), ROGUE.name]
        name = self._pick(names, index)
        if name == ROGUE.name:
            return ROGUE
        return Credential(name, self.enrolled[name] if right else "not the passphrase")

    def _valid(self, credential: Credential) -> bool:
        return self.enrolled.get(credential.name) == credential.passphrase

    def _should_send(self, pid: str, token: str) -> bool:
        expected = self.model[pid]
        return (
            not self.halted
            and expected.token == token
            and not expected.used
            and expected.expires_at is not None
            and self.clock.now() < expected.expires_at
        )

    def _submit(self, pid: str, token: str) -> None:
        should = self._should_send(pid, token)
        try:
            self.wb.submit(pid, token)
        except (ApprovalError, TradingHaltedError) as exc:
            assert not should, f"a valid submit of {pid} was refused: {exc}"
            return
        assert should, f"submit of {pid} went through but the model says it must not"
        self.model[pid].used = True
        self.sent.append(pid)

    # -- rules -----------------------------------------------------------------------------------

    @rule(and_approve=st.booleans())
    def propose(self, and_approve: bool) -> None:
        """A valid intent through wb.run ((symbol, quantity) never repeat, so R13 stays quiet),
        often approved at once with the right credential."""
        n = self.proposed
        self.proposed += 1
        order = intent(self.wb, SYMBOLS[n % len(SYMBOLS)], 1 + n // len(SYMBOLS))
        outcome = self.wb.run(order, actor="quant")
        approvable = outcome.state is OrderState.APPROVAL_REQUESTED
        self.model[outcome.proposal_id] = Expected(approvable=approvable)
        if and_approve:
            self._approve(outcome.proposal_id, CREDENTIAL)

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 99), who=st.integers(0, 9), right=st.booleans())
    def approve(self, index: int, who: int, right: bool) -> None:
        """An enrolled approver (right or wrong passphrase) or the rogue approves; only an
        enrolled approver's right passphrase on a pending request mints a token."""
        self._approve(self._pick(sorted(self.model), index), self._credential(who, right))

    def _approve(self, pid: str, credential: Credential) -> None:
        expected, valid = self.model[pid], self._valid(credential)
        try:
            grant = self.wb.approve(pid, credential, override_reason="reviewed")
        except ApprovalError:
            assert not (valid and expected.approvable and expected.token is None)
            return
        assert valid and expected.approvable and expected.token is None
        expected.token, expected.expires_at = grant.token, grant.expires_at

    @precondition(lambda self: any(e.token for e in self.model.values()))
    @rule(index=st.integers(0, 99))
    def submit_right_token(self, index: int) -> None:
        """Submit a proposal with its own token (maybe already used, expired or while halted)."""
        pid, token = self._pick(self._tokens(), index)
        self._submit(pid, token)

    @precondition(lambda self: any(e.token for e in self.model.values()))
    @rule(
        index=st.integers(0, 99),
        victim=st.integers(0, 99),
        kind=st.sampled_from(
            ["replayed", "other proposal's", "tampered mac", "tampered claims", "junk"]
        ),
        junk=st.text(max_size=40),
    )
    def submit_a_bad_token(self, index: int, victim: int, kind: str, junk: str) -> None:
        """A used token again, a token for A presented for B, an altered token, or junk."""
        pid, token = self._pick(self._tokens(), index)
        if kind == "junk":
            token = junk
        elif kind == "replayed":
            used = [(p, e.token) for p, e in self.model.items() if e.used and e.token]
            pid, token = self._pick(used, index) if used else (pid, token)
        elif kind == "other proposal's":
            others = [p for p in sorted(self.model) if p != pid]
            pid = self._pick(others, victim) if others else pid
        else:
            token = tamper(token, kind.split()[-1])
        self._submit(pid, token)

    @precondition(lambda self: any(e.token for e in self.model.values()))
    @rule(index=st.integers(0, 99), late=st.sampled_from([0, 1]))
    def submit_an_expired_token(self, index: int, late: int) -> None:
        """Move the clock to (or a second past) a token's expiry, then submit with it."""
        pid, token = self._pick(self._tokens(), index)
        expires_at = self.model[pid].expires_at
        assert expires_at is not None
        self.clock.set(max(self.clock.now(), expires_at + timedelta(seconds=late)))
        self._submit(pid, token)

    @rule(seconds=st.sampled_from([30, 61, int(EXPIRY.total_seconds()) + 1]))
    def let_time_pass(self, seconds: int) -> None:
        """Time moves: quotes go stale (re-check at submit) and tokens expire."""
        self.clock.advance(timedelta(seconds=seconds))

    @rule()
    def halt(self) -> None:
        self.wb.halt("drill", by="ops")
        self.halted = True

    @rule(who=st.integers(0, 9), right=st.booleans())
    def resume(self, who: int, right: bool) -> None:
        """Only an enrolled approver with the right passphrase lifts a halt (the facade)."""
        credential = self._credential(who, right)
        try:
            self.wb.resume("drill over", credential)
        except ApprovalError:
            assert not self._valid(credential)
            return
        assert self._valid(credential)
        self.halted = False

    @rule(who=st.integers(0, 9), right=st.booleans(), bare=st.booleans())
    def resume_through_the_library(self, who: int, right: bool, bare: bool) -> None:
        """trading_state.resume called directly: without a Credential it refuses; with one, only
        an enrolled approver's right passphrase releases the halt."""
        credential = self._credential(who, right)
        offered: Any = credential.name if bare else credential  # a bare name is no credential
        try:
            trading_state.resume(self.authority, offered, reason="library resume")
        except ApprovalError:
            assert bare or not self._valid(credential)
            return
        assert not bare and self._valid(credential)
        self.halted = False

    @rule(
        newcomer=st.sampled_from(NEWCOMERS),
        who=st.integers(0, 9),
        right=st.booleans(),
        how=st.sampled_from(["enrol", "self-consent", "bootstrap", "replace"]),
    )
    def enrol(self, newcomer: str, who: int, right: bool, how: str) -> None:
        """Enrol a newcomer with an existing approver's consent (or try without: vouching for
        oneself, bootstrapping a home that has approvers, replacing without the old passphrase).
        Only a verified consent from an enrolled approver changes who may approve."""
        fresh = Credential(newcomer, f"{newcomer} passphrase {self.proposed}")
        consent = self._credential(who, right)
        name = newcomer
        try:
            if how == "enrol":
                self.authority.enrol(fresh, by=consent)
            elif how == "self-consent":
                self.authority.enrol(fresh, by=fresh)
            elif how == "bootstrap":
                self.authority.bootstrap(fresh)
            else:
                name = consent.name if consent.name in self.enrolled else APPROVER
                fresh = Credential(name, f"{name} rotated {self.proposed}")
                self.authority.replace(fresh, by=[Credential(name, consent.passphrase)])
        except ApprovalError:
            assert not self._enrolment_allowed(how, newcomer, consent)
            return
        assert self._enrolment_allowed(how, newcomer, consent)
        self.enrolled[name] = fresh.passphrase

    def _enrolment_allowed(self, how: str, newcomer: str, consent: Credential) -> bool:
        if how == "enrol":
            return newcomer not in self.enrolled and self._valid(consent)
        if how == "replace":
            name = consent.name if consent.name in self.enrolled else APPROVER
            return self._valid(Credential(name, consent.passphrase))
        return False

    @rule(index=st.integers(0, len(GUARDED_TYPES) - 1))
    def forge_an_event_through_the_api(self, index: int) -> None:
        """wb.log.append of an event that carries authority or state is refused."""
        type_ = GUARDED_TYPES[index]
        with pytest.raises(GuardedEventError):
            self.wb.log.append(type_, {}, actor="mallory", proposal_id="p1")

    @rule(through=st.sampled_from(["the file", "the trading-state table"]))
    def forge_a_release(self, through: str) -> None:
        """A KillSwitchReleased without the key's MAC, chained straight into the file or written
        through the public trading-state table: the verified state fold ignores it, so a HALT
        stays a HALT (and the chain still verifies)."""
        release = KillSwitchReleased(
            state=TradingState.ACTIVE,
            reason="forged",
            by="mallory",
            market_at=self.wb.clock.now(),
            mac="f" * 64,
        )
        if through == "the file":
            raw_insert(self.wb.log, "KillSwitchReleased", canonical.dumps(release))
            return
        with self.wb.log.transaction() as tx:
            change_trading_state(tx, EventType.KILL_SWITCH_RELEASED, release, actor="mallory")

    @rule(
        index=st.integers(0, 99),
        kind=st.sampled_from(["hand-built", "replayed", "forged chain", "gate-rejected"]),
    )
    def forge_a_permit(self, index: int, kind: str) -> None:
        """Hand the broker a permit the two-step commit never produced: hand-built for a proposal
        not sent (pointing at some OrderSubmitted), a real one again, one for a proposal walked
        with a forged grant and submission, or one for a gate-rejected order with no stop while
        possibly HALTED. The shared permit check refuses each; nothing reaches the broker."""
        permit = self._forged_permit(index, kind)
        if permit is None:
            return
        with pytest.raises(BrokerError):
            self.wb.broker.submit(permit)

    def _forged_permit(self, index: int, kind: str) -> SubmitPermit | None:
        submitted = self.wb.log.events(types=(EventType.ORDER_SUBMITTED,))
        if kind == "replayed":
            if not self.sent:
                return None
            return permit_from_log(self.wb, self._pick(self.sent, index))
        if kind == "hand-built":
            unsent = [p for p in sorted(self.model) if p not in self.sent]
            if not unsent:
                return None
            pid = self._pick(unsent, index)
            seq = self._pick(submitted, index).seq if submitted else self.wb.log.head()[0] or 1
            return hand_built(self.wb, pid, seq)
        order = intent(self.wb, "SPY", 10_000 + self.proposed, stop=kind != "gate-rejected")
        self.proposed += 1
        pid = self.wb.run(order, actor="mallory").proposal_id
        self.model[pid] = Expected(approvable=False)  # never legitimately approvable again
        return forge_chain(self.wb, pid) if kind == "forged chain" else hand_built(self.wb, pid, 1)

    @rule()
    def restart(self) -> None:
        """Close and reopen the workbench on the same home: tokens and state survive."""
        self.wb.close()
        self.wb = open_wb(self.home, self.clock, self.ids, self.policies)

    # -- after every step ------------------------------------------------------------------------

    @invariant()
    def broker_received_exactly_the_validly_submitted_orders(self) -> None:
        assert broker_parents(self.wb) == self.sent

    @invariant()
    def trading_state_matches(self) -> None:
        state = self.wb.trading_state()
        assert state is (TradingState.HALTED if self.halted else TradingState.ACTIVE)


def permit_from_log(wb: Workbench, pid: str) -> SubmitPermit:
    """The permit a past submission carried, rebuilt from the log (a replay)."""
    record = records.load(wb.log, pid)
    assert record.submission is not None
    return SubmitPermit(
        proposal_id=pid, intent=record.intent, intent_hash=record.intent_hash,
        submitted_seq=record.submission.seq, order_ref=record.submission.data.order_ref,
        protective_stop=record.intent.protective_stop,
    )  # fmt: skip


def hand_built(wb: Workbench, pid: str, seq: int) -> SubmitPermit:
    """A well-formed permit for ``pid`` pointing at event ``seq``, made by hand."""
    record = records.load(wb.log, pid)
    return SubmitPermit(
        proposal_id=pid, intent=record.intent, intent_hash=record.intent_hash,
        submitted_seq=seq, order_ref=f"wb:{pid}", protective_stop=record.intent.protective_stop,
    )  # fmt: skip


def forge_chain(wb: Workbench, pid: str) -> SubmitPermit | None:
    """Walk ``pid`` through the public transition table with a grant and a submission made
    without the key or a token (when the table allows it), and a permit for it."""
    order = records.load(wb.log, pid).intent
    try:
        with wb.log.transaction() as tx:
            advance(tx, pid, EventType.APPROVAL_GRANTED, fake_grant(order), actor="mallory")
            event = advance(
                tx, pid, EventType.ORDER_SUBMITTED, fake_submission(order, f"wb:{pid}"),
                actor="mallory",
            )  # fmt: skip
    except IllegalTransitionError:
        return hand_built(wb, pid, 1)
    return hand_built(wb, pid, event.seq)


TwoStepCommit.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_step_commit = TwoStepCommit.TestCase


# -- two processes, one token ----------------------------------------------------------------


def _submit_in_process(
    home: str, policies: str, now: str, pid: str, token: str, start: Any, results: Any
) -> None:
    clock = FixedClock(datetime.fromisoformat(now))
    wb = Workbench.open(home, "paper", policy_dir=policies, clock=clock, log_clock=clock)
    try:
        start.wait()
        try:
            state = wb.submit(pid, token)
            results.put(("ok", state.value))
        except WorkbenchError as exc:
            results.put(("refused", f"{type(exc).__name__}: {exc}"))
    finally:
        wb.close()


def _approved(home: Path, clock: FixedClock) -> tuple[str, str]:
    with open_wb(home, clock) as wb:
        add_approver(wb)
        outcome = wb.run(intent(wb), actor="quant")
        grant = wb.approve(outcome.proposal_id, CREDENTIAL)
        return outcome.proposal_id, grant.token


def test_two_processes_submitting_one_token_send_exactly_one_order(
    home: Path, clock: FixedClock
) -> None:
    """Two processes, each with its own Workbench on the same home, submit the same token at
    once: exactly one order reaches the broker, the other is told the token is already used."""
    pid, token = _approved(home, clock)
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    args = (str(home), str(POLICIES), clock.now().isoformat(), pid, token, start, results)
    procs = [ctx.Process(target=_submit_in_process, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert outcomes[0] == ("ok", "FILLED")
    assert outcomes[1][0] == "refused" and "ApprovalError" in outcomes[1][1]
    assert "already used" in outcomes[1][1]
    with open_wb(home, clock, counter_ids(start=100)) as wb:
        assert broker_parents(wb) == [pid]
        submitted = wb.log.events(proposal_id=pid, types=(EventType.ORDER_SUBMITTED,))
        assert len(submitted) == 1
        assert wb.log.verify().ok


# -- a crash between consuming the token and calling the broker ------------------------------


def _submit_then_get_killed(home: str, policies: str, now: str, pid: str, token: str) -> None:
    clock = FixedClock(datetime.fromisoformat(now))
    wb = Workbench.open(home, "paper", policy_dir=policies, clock=clock, log_clock=clock)

    def killed(*_: object) -> None:  # the outside world: the process dies before the broker call
        os.kill(os.getpid(), signal.SIGKILL)

    wb.broker.submit = killed  # type: ignore[method-assign]
    wb.submit(pid, token)


def test_crash_after_consuming_the_token_is_reported_and_never_resent(
    home: Path, clock: FixedClock
) -> None:
    """Killed after the token's transaction committed and before the broker call: the next start
    reports the proposal in reconcile() (recorded UNKNOWN, with ReconciliationRun) and sends
    nothing itself; it stays listed until an approver resolves it (tests/test_orphans.py)."""
    pid, token = _approved(home, clock)
    ctx = mp.get_context("spawn")
    args = (str(home), str(POLICIES), clock.now().isoformat(), pid, token)
    proc = ctx.Process(target=_submit_then_get_killed, args=args)
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL
    with open_wb(home, clock, counter_ids(start=100)) as wb:
        assert wb.state(pid) is OrderState.SUBMITTED  # the token was spent
        assert broker_parents(wb) == []
        assert [o.proposal_id for o in wb.reconcile()] == [pid]
        (run,) = wb.log.events(types=(EventType.RECONCILIATION_RUN,))
        assert run.payload["submitted_without_broker_order"] == [pid]
        with pytest.raises(ApprovalError, match="already used"):
            wb.submit(pid, token)
        assert broker_parents(wb) == [] and wb.broker.orders() == ()
        assert wb.state(pid) is OrderState.UNKNOWN
        assert wb.log.verify().ok
    with open_wb(home, clock, counter_ids(start=200)) as again:  # and the start after that
        assert [o.proposal_id for o in again.reconcile()] == [pid]
        assert broker_parents(again) == []
