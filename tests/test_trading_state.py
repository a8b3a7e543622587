"""Trading state and circuit breaker on the audit log: persisted, restart-proof, person-released."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gatekit import ACCOUNT, NOW, PARAMS, POLICY, D, intent, portfolio, quote
from helpers import ALICE_CRED, BOB, BOB_CRED, authority_with, payload_for, raw_insert

from workbench import canonical, trading_state
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority, Credential
from workbench.cli import main
from workbench.clock import FixedClock
from workbench.errors import ApprovalError, AuditError, GuardedEventError, TradingHaltedError
from workbench.lifecycle import advance
from workbench.models import Decision, RuleId, Side, TradingState
from workbench.policy import CircuitBreakerConfig
from workbench.risk import evaluate
from workbench.sim import simulate

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


# Closes are 16:00 New York = 21:00 UTC in November; a daily cron at 16:30 runs at 21:30 UTC.
CRON_MONDAY = datetime(2026, 11, 16, 21, 30, tzinfo=UTC)


def snap_at(log: AuditLog, nav: str, at: datetime) -> trading_state.SnapshotRecord:
    """Record a snapshot with NAV ``nav`` taken (and recorded) at ``at``."""
    assert isinstance(log.clock, FixedClock)
    log.clock.set(at)
    return trading_state.record_portfolio_snapshot(
        log, portfolio(nav=nav, at=at), BREAKER, key=None, actor="test"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (CRON_MONDAY, CRON_MONDAY + timedelta(hours=23, minutes=59)),  # the boundary control
        (CRON_MONDAY, CRON_MONDAY + timedelta(hours=24)),
        (CRON_MONDAY, CRON_MONDAY + timedelta(hours=24, seconds=5)),  # a daily cron's jitter
        (datetime(2026, 11, 20, 21, 30, tzinfo=UTC), datetime(2026, 11, 23, 21, 30, tzinfo=UTC)),
        # Wednesday before Thanksgiving (26 Nov, no session) to Friday's early close (13:00 NY)
        (datetime(2026, 11, 25, 21, 30, tzinfo=UTC), datetime(2026, 11, 27, 18, 30, tzinfo=UTC)),
    ],
    ids=["23h59m", "24h", "24h+5s", "weekend", "thanksgiving"],
)
def test_breaker_counts_the_drop_since_the_previous_close_across_any_gap(
    log: AuditLog, first: datetime, second: datetime
) -> None:
    """A 5.8% drop from one session's after-close NAV to the next's trips, whatever the gap."""
    assert not snap_at(log, "100", first).tripped
    record = snap_at(log, "94.2", second)
    assert record.tripped and record.state is TradingState.HALTED
    assert record.breaker is not None and record.breaker.peak == D(100)


def test_breaker_after_a_weekend_then_the_gate_is_halted(log: AuditLog) -> None:
    """Friday 100, Monday morning 94: tripped, and the gate answers REJECT (R6), not APPROVE."""
    snap_at(log, "290000", datetime(2026, 11, 20, 21, 30, tzinfo=UTC))
    monday = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 10:30 New York
    assert snap_at(log, "273000", monday).tripped
    order = intent()
    book = portfolio(nav="273000", at=monday)
    market = quote(timestamp=monday)
    sim = simulate(order, book, market, PARAMS.costs)
    past = trading_state.build_history(log, account=ACCOUNT, now=monday, policy=POLICY, key=None)
    state = trading_state.current_state(log, None)
    decision = evaluate(order, sim, book, market, POLICY, state, past, monday)
    assert decision.decision is Decision.REJECT
    assert {v.rule_id for v in decision.violations} >= {RuleId.R6_TRADING_STATE}


def test_breaker_measures_one_trading_day_not_two(log: AuditLog) -> None:
    """100 → 97 → 94.1 over three daily runs: each day lost about 3%, so nothing trips."""
    assert not snap_at(log, "100", CRON_MONDAY).tripped
    assert not snap_at(log, "97", CRON_MONDAY + timedelta(days=1)).tripped
    record = snap_at(log, "94.1", CRON_MONDAY + timedelta(days=2))
    assert not record.tripped and record.breaker is not None
    assert record.breaker.peak == D(97)


def test_breaker_counts_the_peak_since_the_open(log: AuditLog) -> None:
    """Close 100, a high of 104 at noon, 98.5 at 15:00: 5.3% below the day's peak trips."""
    snap_at(log, "100", CRON_MONDAY)
    tuesday_noon = datetime(2026, 11, 17, 17, 0, tzinfo=UTC)
    assert not snap_at(log, "104", tuesday_noon).tripped
    record = snap_at(log, "98.5", tuesday_noon + timedelta(hours=3))
    assert record.tripped and record.breaker is not None and record.breaker.peak == D(104)


def test_breaker_after_a_resume_counts_from_the_release_in_market_time(tmp_path: Path) -> None:
    """In a replay (market time Monday, events stamped days later on the wall clock) a resume
    restarts the breaker's reading from the release's market time, not the wall clock that
    stamped it: a 6% fall after the resume trips again."""
    wall, market = FixedClock(datetime(2026, 11, 29, 7, 0, tzinfo=UTC)), FixedClock(CRON_MONDAY)
    with AuditLog(tmp_path / "workbench.sqlite", wall) as log:
        authority = Authority(log, tmp_path, market)
        authority.bootstrap(ALICE_CRED)

        def nav_at(nav: str, at: datetime) -> trading_state.SnapshotRecord:
            market.set(at)
            return trading_state.record_portfolio_snapshot(
                log, portfolio(nav=nav, at=at), BREAKER, key=authority.key
            )

        nav_at("100", datetime(2026, 11, 20, 21, 30, tzinfo=UTC))  # Friday after the close
        monday = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
        assert nav_at("94", monday).tripped
        market.set(monday + timedelta(minutes=30))
        trading_state.resume(authority, ALICE_CRED, reason="checked")
        (release,) = log.events(types=(EventType.KILL_SWITCH_RELEASED,))
        assert release.ts.startswith("2026-11-29")  # the wall clock stamps the event
        assert not nav_at("93", monday + timedelta(hours=1)).tripped  # 1% below the Friday peak
        again = nav_at("87", monday + timedelta(hours=2))  # 6.5% below 93, the peak since
        assert again.tripped and again.breaker is not None and again.breaker.peak == D(93)


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
    past = trading_state.build_history(log, account=ACCOUNT, now=NOW, policy=POLICY, key=None)
    assert [p.nav for p in past.nav_points] == [D(300000), D(290000)]
    assert past.peak() == D(300000)
    assert [(s.symbol, s.side, s.quantity) for s in past.submissions] == [
        ("AAPL", Side.BUY, D(20)),
        ("AAPL", Side.SELL, D(5)),
    ]
    assert [w.proposal_id for w in past.working_orders] == ["p1"]
    other = trading_state.build_history(log, account="DU999", now=NOW, policy=POLICY, key=None)
    assert other.submissions == () and other.nav_points == ()


def test_history_with_an_unreadable_submission_fails_closed(log: AuditLog) -> None:
    """An OrderSubmitted whose proposal has no readable intent is an AuditError."""
    submitted = payload_for(EventType.ORDER_SUBMITTED, intent())
    raw_insert(log, "OrderSubmitted", canonical.dumps(submitted), pid="ghost")
    with pytest.raises(AuditError, match="never proposed"):
        trading_state.build_history(log, account=ACCOUNT, now=NOW, policy=POLICY, key=None)


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
            {
                "state": "ACTIVE",
                "reason": "let me trade",
                "by": "mallory",
                "market_at": NOW,
                "mac": "f" * 64,
            }
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
