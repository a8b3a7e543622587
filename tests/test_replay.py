"""Replays: past sessions only, in their own sandbox home, on the paper broker, honest times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from wbkit import APPROVER, CREDENTIAL, PASSPHRASE, add_approver, intent

from workbench import fmt
from workbench.audit import AuditLog
from workbench.cli_format import proposals_text
from workbench.clock import FixedClock
from workbench.daily import open_for_day, run_cycle
from workbench.errors import ConfigError
from workbench.explore import Lab
from workbench.home import DB_NAME, replay_home
from workbench.models import RuleId
from workbench.panels import list_rows, open_panel
from workbench.replay import ReplayDateError, plan_day, replay_at
from workbench.ticket import build_ticket
from workbench.ticket_source import inputs_for
from workbench.workbench import Workbench

TODAY = date(2026, 11, 29)  # a Sunday
DAY = date(2026, 11, 18)  # a Wednesday session
MARKET_TIME = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # 10:30 New York


@pytest.mark.parametrize(
    ("as_of", "names"),
    [
        (date(2030, 1, 2), ["in the future", "the latest is 2026-11-27"]),
        (date(2026, 11, 30), ["in the future"]),
        (
            date(2026, 11, 28),
            ["not an XNYS session", "previous session is 2026-11-27", "the next 2026-11-30"],
        ),
        (
            date(2026, 11, 26),
            ["not an XNYS session", "previous session is 2026-11-25", "the next 2026-11-27"],
        ),
        (date(1999, 1, 4), ["outside the calendar"]),
    ],
    ids=["2030", "tomorrow", "saturday", "thanksgiving", "1999"],
)
def test_only_a_past_session_can_be_replayed(tmp_path: Path, as_of: date, names: list[str]) -> None:
    """Future dates and days without a session are refused, naming the sessions around them."""
    with pytest.raises(ReplayDateError) as refused:
        plan_day(as_of, tmp_path / "runs", today=TODAY)
    for name in names:
        assert name in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_today_runs_live_and_a_past_session_in_its_sandbox(tmp_path: Path) -> None:
    """Today: the home, the wall clock, runs/<day>/; a past session: runs/replay/<day>/ at 10:30."""
    live = plan_day(None, tmp_path / "runs", today=TODAY)
    assert (live.replay, live.run_home, live.report_dir) == (
        False, tmp_path / "runs", tmp_path / "runs" / "2026-11-29"
    )  # fmt: skip
    past = plan_day(DAY, tmp_path / "runs", today=TODAY)
    assert past.replay and past.run_home == past.report_dir == tmp_path / "runs/replay/2026-11-18"
    assert past.clock().now() == MARKET_TIME


def test_a_replay_writes_only_its_sandbox_stamped_with_the_wall_clock(tmp_path: Path) -> None:
    """The replayed cycle's events carry the time they were written; market time is 10:30 that
    day in the payloads; the live home gets not one event."""
    main = tmp_path / "runs"
    Workbench.open(main, create=True).close()
    with AuditLog(main / DB_NAME) as live:
        live_before = live.head()
    started = datetime.now(UTC)
    wb, day, policies = open_for_day(as_of=DAY.isoformat(), home=str(main))
    try:
        assert wb.home == replay_home(main, DAY)
        report = run_cycle(wb, as_of=day, policy_dir=policies)
        assert len(report.proposals) > 0
        events = wb.log.events()
    finally:
        wb.close()
    finished = datetime.now(UTC)
    for event in events:
        written = datetime.fromisoformat(event.ts.replace("Z", "+00:00"))
        assert started - timedelta(seconds=1) <= written <= finished, event
    assert report.portfolio.timestamp == MARKET_TIME
    decided = [e.payload for e in events if e.type == "RiskGateEvaluated"]
    assert decided
    assert {datetime.fromisoformat(p["evaluated_at"]) for p in decided} == {MARKET_TIME}
    with AuditLog(main / DB_NAME) as live:
        assert live.head() == live_before


def test_a_sandbox_opens_on_the_paper_broker_only(tmp_path: Path) -> None:
    """A replay home refuses any broker but the paper broker (by name or by object)."""
    sandbox = replay_home(tmp_path / "runs", DAY)

    class RealBrokerStandIn:  # the outside world: whatever a real broker adapter would be
        label = "IBKR paper DU123456"

    with pytest.raises(ConfigError, match="paper broker only"):
        Workbench.open(sandbox, "ibkr", create=True)
    with pytest.raises(ConfigError, match="paper broker only"):
        Workbench.open(sandbox, RealBrokerStandIn(), create=True)  # type: ignore[arg-type]


def test_panel_replay_clock_never_opens_the_live_home(tmp_path: Path) -> None:
    """clock_at without a sandbox is refused (the live home untouched); with one, the panel
    works in the sandbox and its HALT lands there, stamped with the wall clock."""
    main = tmp_path / "runs"
    Workbench.open(main, create=True).close()
    with AuditLog(main / DB_NAME) as live:
        live_before = live.head()
    with pytest.raises(ReplayDateError, match="never opens the live home"):
        open_panel(home=str(main), clock_at=MARKET_TIME.isoformat())
    with pytest.raises(ReplayDateError, match="in the future"):
        open_panel(home=str(main), clock_at="2030-01-02T15:30:00+00:00")
    sandbox = replay_home(main, DAY)
    with Workbench.open(sandbox, create=True, clock=FixedClock(MARKET_TIME)) as wb:
        add_approver(wb)
        pid = wb.run(intent(wb, "SPY", 10), actor="test").proposal_id
    panel = open_panel(home=str(main), clock_at=MARKET_TIME.isoformat())
    try:
        assert panel.wb.home == sandbox and "Home: " + str(sandbox) in panel.summary()
        panel.choice.value = pid
        panel.approver.value, panel.passphrase.value = APPROVER, PASSPHRASE
        panel.approve_button.click()
        panel.submit_button.click()
        assert "FILLED" in panel.status_text
        panel.halt_button.click()
        halted = panel.wb.log.tail(1)[0]
        assert halted.type == "KillSwitchActivated" and halted.ts.startswith(
            datetime.now(UTC).date().isoformat()
        )
    finally:
        panel.wb.close()
    with AuditLog(main / DB_NAME) as live:
        assert live.head() == live_before


def test_explore_replay_clock_opens_the_sandbox_too(tmp_path: Path) -> None:
    """The lab's clock_at is refused without that day's sandbox, and never touches the live home."""
    main = tmp_path / "runs"
    Workbench.open(main, create=True).close()
    with pytest.raises(ReplayDateError, match="no replay sandbox for 2026-11-18"):
        Lab.open(home=str(main), clock_at=MARKET_TIME.isoformat())
    Workbench.open(replay_home(main, DAY), create=True).close()
    lab = Lab.open(home=str(main), clock_at=MARKET_TIME.isoformat())
    try:
        assert lab.wb.home == replay_home(main, DAY)
    finally:
        lab.wb.close()


def test_replay_at_refuses_a_time_without_a_zone(tmp_path: Path) -> None:
    """A replay time must say its zone: a naive ISO time is a ConfigError."""
    with pytest.raises(ConfigError, match="with a zone"):
        replay_at("2026-11-18T10:30:00", tmp_path)


def test_commands_on_a_sandbox_run_on_its_replayed_day(tmp_path: Path) -> None:
    """Opened without a clock (as the CLI does), a sandbox's market time is 10:30 that day."""
    sandbox = replay_home(tmp_path / "runs", DAY)
    with Workbench.open(sandbox, create=True) as wb:
        assert wb.clock.now() == MARKET_TIME
        assert wb.portfolio(record=False).timestamp == MARKET_TIME


def test_views_of_a_replay_show_its_market_time_not_the_wall_clock(tmp_path: Path) -> None:
    """In a sandbox the events carry the wall clock, but the proposals list, the panel's ages and
    the ticket say when, in the replayed session, the order was proposed, and the ticket's ATR
    is that day's."""
    with Workbench.open(replay_home(tmp_path / "runs", DAY), create=True) as wb:
        pid = wb.run(intent(wb, "SPY", 10), actor="test").proposal_id
        row = wb.proposals().iloc[0]
        recorded = datetime.fromisoformat(str(row["proposed_at"]))
        assert recorded > MARKET_TIME + timedelta(days=1)  # the wall clock, days later
        assert datetime.fromisoformat(str(row["market_at"])) == MARKET_TIME
        assert list_rows(wb.proposals(), wb.clock.now())[0][-1] == "0 s"
        assert "2026-11-18 10:30" in proposals_text(wb.proposals(), "USD")
        inputs = inputs_for(wb, pid)
        assert inputs.proposed_at == MARKET_TIME
        assert inputs.stop_rule.atr == wb.atr("SPY", DAY)
        times = {line.key: line.value for line in build_ticket(inputs).times}
        assert times["proposed"] == fmt.ny(MARKET_TIME)


def test_a_replays_gate_sees_what_it_sent_at_its_market_time(tmp_path: Path) -> None:
    """In a sandbox (events on the wall clock, days later) an order sent at 10:30 of the replayed
    day is a submission at 10:30 for the gate: the same order again is a duplicate (R13), and
    the submission records that market time while its event carries the wall clock."""
    with Workbench.open(replay_home(tmp_path / "runs", DAY), create=True) as wb:
        add_approver(wb)
        pid = wb.run(intent(wb, "SPY", 10), actor="test").proposal_id
        wb.submit(pid, wb.approve(pid, CREDENTIAL).token)
        record = wb.detail(pid)
        assert record.submission is not None
        assert record.submission.data.spent_at == MARKET_TIME
        assert datetime.fromisoformat(record.submission.ts) > MARKET_TIME + timedelta(days=1)
        again = wb.run(intent(wb, "SPY", 10), actor="test")
        assert again.decision is not None
        assert RuleId.R13_DUPLICATE_ORDER in {v.rule_id for v in again.decision.violations}
