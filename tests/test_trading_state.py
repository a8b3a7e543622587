"""Trading state and circuit breaker on the audit log: persisted, restart-proof, person-released."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from gatekit import ACCOUNT, NOW, PARAMS, POLICY, D, intent, portfolio
from helpers import ALICE_CRED, BOB, BOB_CRED, authority_with, payload_for, raw_insert

from workbench import canonical, trading_state
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority, Credential
from workbench.cli import main
from workbench.clock import FixedClock
from workbench.errors import ApprovalError, AuditError, GuardedEventError, TradingHaltedError
from workbench.lifecycle import advance
from workbench.models import Side, TradingState
from workbench.policy import CircuitBreakerConfig

BREAKER = CircuitBreakerConfig(enabled=True, max_1d_drawdown_pct=D("0.05"))


def snap(log: AuditLog, nav: str, minutes: int = 0) -> trading_state.SnapshotRecord:
    """Record a snapshot with NAV ``nav`` taken (and recorded) ``minutes`` after NOW."""
    at = NOW + timedelta(minutes=minutes)
    assert isinstance(log.clock, FixedClock)
    log.clock.set(at)
    return trading_state.record_portfolio_snapshot(
        log, portfolio(nav=nav, at=at), BREAKER, key=None, actor="test"
    )


def people(log: AuditLog, home: Path) -> Authority:
    """alice (bootstrap) and bob (enrolled by alice) on the test's home."""
    return authority_with(log, home, ALICE_CRED, BOB_CRED)


def test_empty_log_is_active(log: AuditLog) -> None:
    """With no state event recorded, trading is ACTIVE."""
    assert trading_state.current_state(log, None) is TradingState.ACTIVE


def test_halt_survives_a_restart_until_resumed(home: Path, clock: FixedClock) -> None:
    """HALTED is read back after reopening the home, and a named resume makes it ACTIVE."""
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        people(log, home)
        trading_state.halt(log, reason="fat finger", by="alice")
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        authority = Authority(log, home, clock)
        state = trading_state.read_state(log, authority.key)
        assert (state.state, state.by, state.reason) == (TradingState.HALTED, "alice", "fat finger")
        trading_state.resume(authority, BOB_CRED, reason="checked")
        assert trading_state.read_state(log, authority.key).by == BOB
        assert trading_state.current_state(log, authority.key) is TradingState.ACTIVE


def test_reduce_is_refused_while_halted(log: AuditLog) -> None:
    """A halt is lifted only by a resume: `reduce` while HALTED raises and writes nothing."""
    trading_state.halt(log, reason="x", by="alice")
    before = log.count()
    with pytest.raises(TradingHaltedError):
        trading_state.reduce(log, reason="y", by="mallory")
    assert log.count() == before
    assert trading_state.current_state(log, None) is TradingState.HALTED


def test_reduce_from_active(log: AuditLog) -> None:
    """`reduce` from ACTIVE records REDUCING with the person's name."""
    change = trading_state.reduce(log, reason="risk off", by="alice")
    assert change.state is TradingState.REDUCING
    assert trading_state.current_state(log, None) is TradingState.REDUCING


def test_state_change_needs_a_name_and_a_reason(log: AuditLog, home: Path) -> None:
    """An empty name or reason is refused; nothing is written."""
    authority = people(log, home)
    before = log.count()
    with pytest.raises(ValueError):
        trading_state.halt(log, reason="x", by="  ")
    with pytest.raises(ValueError):
        trading_state.resume(authority, BOB_CRED, reason="")
    assert log.count() == before


def test_malformed_state_event_fails_closed(log: AuditLog) -> None:
    """A state event with an unknown state cannot be written; one planted in the file is an
    AuditError on read, never read as ACTIVE."""
    with pytest.raises((AuditError, GuardedEventError)):
        log.append(EventType.KILL_SWITCH_ACTIVATED, {"state": "OPEN", "by": "x"}, actor="x")
    raw_insert(log, "KillSwitchActivated", '{"by":"x","reason":"x","state":"OPEN"}')
    with pytest.raises(AuditError):
        trading_state.current_state(log, None)


def test_breaker_nav_100_to_94_halts_and_stays_halted_after_restart(
    home: Path, clock: FixedClock
) -> None:
    """NAV 100 → 94 with a 5% limit trips HALTED; it survives a restart until a person resumes."""
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        people(log, home)
        assert not snap(log, "100").tripped
        record = snap(log, "94", minutes=30)
        assert record.tripped and record.state is TradingState.HALTED
        assert record.breaker is not None and record.breaker.drawdown == D("0.06")
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        authority = Authority(log, home, clock)
        assert trading_state.current_state(log, authority.key) is TradingState.HALTED
        assert trading_state.read_state(log, authority.key).by == trading_state.BREAKER_ACTOR
        assert not snap(log, "93", minutes=60).tripped  # already halted: no second trip
        trading_state.resume(authority, BOB_CRED, reason="reviewed the loss")
        assert trading_state.current_state(log, authority.key) is TradingState.ACTIVE
        again = snap(log, "93", minutes=61)  # the 100 before the resume no longer counts
        assert not again.tripped
        assert trading_state.current_state(log, authority.key) is TradingState.ACTIVE


def test_breaker_trips_at_exactly_the_limit_and_not_below(log: AuditLog) -> None:
    """A 5% drop trips the 5% breaker; a 4.9% drop does not."""
    snap(log, "100")
    assert not snap(log, "95.1", minutes=1).tripped
    assert snap(log, "95", minutes=2).tripped


def test_breaker_writes_its_events_with_the_snapshot(log: AuditLog) -> None:
    """Snapshot, CircuitBreakerTripped and the HALTED activation are consecutive events."""
    snap(log, "100")
    snap(log, "94", minutes=5)
    types = [e.type for e in log.tail(3)]
    assert types == ["PortfolioSnapshotTaken", "CircuitBreakerTripped", "KillSwitchActivated"]
    tripped = log.tail(2)[0].payload
    assert tripped["drawdown"] == "0.06" and tripped["state"] == "HALTED"


def test_breaker_only_looks_back_one_day(log: AuditLog) -> None:
    """A peak more than a day old does not trip the one-day breaker."""
    snap(log, "100")
    assert not snap(log, "94", minutes=24 * 60 + 1).tripped


def test_disabled_breaker_never_trips(log: AuditLog) -> None:
    """With the breaker disabled, a 50% drop is recorded but trading stays ACTIVE."""
    off = CircuitBreakerConfig(enabled=False, max_1d_drawdown_pct=D("0.05"))
    trading_state.record_portfolio_snapshot(log, portfolio(nav="100"), off, key=None)
    record = trading_state.record_portfolio_snapshot(log, portfolio(nav="50"), off, key=None)
    assert not record.tripped and trading_state.current_state(log, None) is TradingState.ACTIVE


def test_shipped_breaker_config_is_the_design_default() -> None:
    """strategy_params.yaml ships the breaker enabled at 5%."""
    assert PARAMS.circuit_breaker == BREAKER


def _submit(log: AuditLog, proposal_id: str, **overrides: object) -> None:
    """Walk a proposal to SUBMITTED (a history needs only the events, not their authority)."""
    order = intent(**overrides)
    with log.transaction() as tx:
        for type_ in (
            EventType.ORDER_PROPOSED,
            EventType.ORDER_SIMULATED,
            EventType.RISK_GATE_EVALUATED,
            EventType.APPROVAL_REQUESTED,
            EventType.APPROVAL_GRANTED,
            EventType.ORDER_SUBMITTED,
        ):
            advance(tx, proposal_id, type_, payload_for(type_, order), actor="test")


def test_history_is_built_from_the_audit_log(log: AuditLog, clock: FixedClock) -> None:
    """NAV points, the NAV peak, recent submissions and working orders come from events."""
    snap(log, "300000", minutes=-120)
    snap(log, "290000", minutes=-1)
    _submit(log, "p1")
    _submit(log, "p2", side=Side.SELL, quantity=D(5))
    with log.transaction() as tx:
        filled = payload_for(EventType.ORDER_FILLED, intent())
        advance(tx, "p2", EventType.ORDER_FILLED, filled, actor="test")
    past = trading_state.build_history(log, account=ACCOUNT, now=NOW, policy=POLICY)
    assert [p.nav for p in past.nav_points] == [D(300000), D(290000)]
    assert past.peak() == D(300000)
    assert [(s.symbol, s.side, s.quantity) for s in past.submissions] == [
        ("AAPL", Side.BUY, D(20)),
        ("AAPL", Side.SELL, D(5)),
    ]
    assert [w.proposal_id for w in past.working_orders] == ["p1"]
    other = trading_state.build_history(log, account="DU999", now=NOW, policy=POLICY)
    assert other.submissions == () and other.nav_points == ()


def test_history_with_an_unreadable_submission_fails_closed(log: AuditLog) -> None:
    """An OrderSubmitted whose proposal has no readable intent is an AuditError."""
    submitted = payload_for(EventType.ORDER_SUBMITTED, intent())
    raw_insert(log, "OrderSubmitted", canonical.dumps(submitted), pid="ghost")
    with pytest.raises(AuditError, match="never proposed"):
        trading_state.build_history(log, account=ACCOUNT, now=NOW, policy=POLICY)


def test_cli_halt_status_resume_round_trip(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workbench halt`, `status` and `resume` (an approver and passphrase) work on a real home."""
    secret = "correct horse battery"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    assert main(["approver", "add", "bob", "--passphrase-stdin", "--home", str(home)]) == 0
    assert main(["halt", "--reason", "weird fills", "--by", "alice", "--home", str(home)]) == 0
    assert main(["status", "--home", str(home)]) == 0
    assert "trading state: HALTED" in capsys.readouterr().out
    assert main(["reduce", "--reason", "x", "--by", "eve", "--home", str(home)]) == 1
    resume = ["resume", "--approver", "bob", "--reason", "ok", "--passphrase-stdin"]
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong passphrase!!\n"))
    assert main([*resume, "--home", str(home)]) == 1
    with AuditLog(home / "workbench.sqlite") as log:
        assert trading_state.current_state(log, None) is TradingState.HALTED
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    assert main([*resume, "--home", str(home)]) == 0
    assert main(["status", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "trading state: ACTIVE" in out and "by bob: ok" in out
    assert main(["reduce", "--reason", "risk off", "--by", "alice", "--home", str(home)]) == 0
    with AuditLog(home / "workbench.sqlite") as log:
        assert trading_state.current_state(log, None) is TradingState.REDUCING


# -- releases that do not verify ---------------------------------------------------------------


def _forged_release(log: AuditLog, payload_json: str | None = None) -> None:
    """A KillSwitchReleased chained straight into the file, as code with raw access could."""
    if payload_json is None:
        payload_json = canonical.dumps(
            {"state": "ACTIVE", "reason": "let me trade", "by": "mallory", "mac": "f" * 64}
        )
    raw_insert(log, "KillSwitchReleased", payload_json)


def test_a_raw_inserted_release_keeps_trading_halted_and_is_reported(
    log: AuditLog, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A release written behind the workbench's back (the chain still verifies) does not lift a
    HALT in the verified fold; its seq is reported, and `workbench doctor` names it. A keyless
    reader sees it as recorded, marked unverified."""
    authority = people(log, home)
    trading_state.halt(log, reason="drill", by="ops")
    _forged_release(log)
    assert log.verify().ok
    verified = trading_state.read_state(log, authority.key)
    assert verified.state is TradingState.HALTED and verified.refused == (log.head()[0],)
    recorded = trading_state.read_state(log, None)
    assert recorded.state is TradingState.ACTIVE and not recorded.verified
    assert main(["doctor", "--home", str(home)]) == 1
    assert "does not verify: ignored" in capsys.readouterr().err


def test_a_copied_valid_release_does_not_verify_in_its_new_place(log: AuditLog, home: Path) -> None:
    """A real release's payload, replayed after a new HALT, is bound to its old seq and previous
    hash: it does not verify and the HALT holds."""
    authority = people(log, home)
    trading_state.halt(log, reason="first", by="ops")
    trading_state.resume(authority, BOB_CRED, reason="checked")
    (release,) = log.events(types=(EventType.KILL_SWITCH_RELEASED,))
    trading_state.halt(log, reason="second", by="ops")
    _forged_release(log, release.payload_json)
    state = trading_state.read_state(log, authority.key)
    assert state.state is TradingState.HALTED and state.reason == "second"


def test_resume_through_the_library_needs_a_verified_credential(log: AuditLog, home: Path) -> None:
    """The old keyword call, a bare name, an unknown approver or a wrong passphrase never lift a
    HALT; an enrolled approver's right passphrase does."""
    authority = people(log, home)
    trading_state.halt(log, reason="drill", by="ops")
    with pytest.raises(TypeError):
        trading_state.resume(log, approver="bob", reason="old api")  # type: ignore[call-arg]
    for offered in ("bob", Credential("mallory", "mallory's passphrase"), Credential(BOB, "x")):
        with pytest.raises(ApprovalError):
            trading_state.resume(authority, offered, reason="try")  # type: ignore[arg-type]
    assert trading_state.current_state(log, authority.key) is TradingState.HALTED
    with pytest.raises(ApprovalError, match="use resume"):
        trading_state.set_state(log, TradingState.ACTIVE, reason="x", by="mallory")
    trading_state.resume(authority, BOB_CRED, reason="checked")
    assert trading_state.current_state(log, authority.key) is TradingState.ACTIVE


def test_a_reduce_written_while_halted_never_lifts_the_halt(log: AuditLog, home: Path) -> None:
    """Even if a REDUCING activation lands while HALTED (via a forged release and the table),
    the verified fold keeps HALTED until a verified release."""
    authority = people(log, home)
    trading_state.halt(log, reason="drill", by="ops")
    _forged_release(log)
    trading_state.reduce(log, reason="sneak", by="mallory")  # the table sees the forged ACTIVE
    assert trading_state.current_state(log, authority.key) is TradingState.HALTED
