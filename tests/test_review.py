"""The reviewer's view: chain verdict, NAV and drawdown, rejects by rule, fills and P&L, open
orders, state history — and the review notebook as it renders."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from gatekit import portfolio
from helpers import authority_with
from wbkit import APPROVER, CREDENTIAL, POLICIES, ROOT, add_approver, intent, open_wb

from workbench import trading_state
from workbench.audit import AuditLog
from workbench.clock import FixedClock
from workbench.models import Side
from workbench.policy import load_strategy_params
from workbench.review import Review, cost_basis, one_day_drawdowns
from workbench.scheduled import write_html


def busy_home(home: Path, clock: FixedClock) -> str:
    """A home with a filled buy (its stop working), a partly closing sell, a rejected short and a
    halt/resume."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        filled = wb.run(intent(wb, "SPY", 10), actor="test")
        grant = wb.approve(filled.proposal_id, CREDENTIAL)
        wb.submit(filled.proposal_id, grant.token)
        clock.advance(timedelta(minutes=20))
        sold = wb.run(intent(wb, "SPY", 4, Side.SELL, stop=False), actor="test")
        wb.submit(sold.proposal_id, wb.approve(sold.proposal_id, CREDENTIAL).token)
        wb.run(intent(wb, "QQQ", 10, Side.SELL, stop=False), actor="test")  # a short: rejected
        wb.halt("lunch", by="ops")
        wb.resume("back", CREDENTIAL)
        return filled.proposal_id


def open_review(home: Path) -> Review:
    return Review.open(
        home=str(home), since="2026-11-01", until="2026-12-01", policy_dir=str(POLICIES)
    )


def test_review_summarises_a_day(home: Path, clock: FixedClock) -> None:
    """Fills carry commission and P&L, rejects are counted by rule, state changes are listed."""
    pid = busy_home(home, clock)
    review = open_review(home)
    try:
        assert review.chain().ok
        fills = review.fills()
        assert fills["proposal_id"].iloc[0] == pid and len(fills) == 2
        assert fills["commission"].iloc[0] > 0 and isinstance(fills["quantity"].iloc[0], Decimal)
        rejects = review.rejects_by_rule()
        assert "R15_CASH_AND_SHORTS" in set(rejects["rule_id"])
        states = review.trading_states()
        assert list(states["state"]) == ["HALTED", "ACTIVE"]
        assert list(states["by"]) == ["ops", APPROVER]
        counts = dict(
            zip(review.events_by_type()["type"], review.events_by_type()["events"], strict=True)
        )
        assert counts["OrderFilled"] == 2
    finally:
        review.close()


def test_fill_pnl_in_money_and_percent_of_what_the_shares_cost(
    home: Path, clock: FixedClock
) -> None:
    """The closing sell's P&L % is its realised P&L over the closed shares' cost; the opening
    buy realises nothing and has no %."""
    busy_home(home, clock)
    review = open_review(home)
    try:
        fills = review.fills()
        buy, sell = fills.iloc[0], fills.iloc[1]
        assert buy["realized_pnl"] == 0 and buy["pnl_pct"] is None
        basis = cost_basis("SELL", sell["quantity"], sell["price"], sell["commission"],
                           sell["realized_pnl"])  # fmt: skip
        assert sell["pnl_pct"] == sell["realized_pnl"] / basis
    finally:
        review.close()


def test_cost_basis_undoes_a_net_of_commission_pnl() -> None:
    """Sold 10 at 105 with 1.00 commission, P&L 49.00: the shares had cost 10 × 100 = 1,000."""
    assert cost_basis("SELL", Decimal(10), Decimal(105), Decimal(1), Decimal(49)) == 1000
    # covered a short of 10 at 95, opened at 100: P&L 10 × 5 − 1 = 49, cost 1,000
    assert cost_basis("BUY", Decimal(10), Decimal(95), Decimal(1), Decimal(49)) == 1000


def test_open_orders_include_the_working_protective_stop(home: Path, clock: FixedClock) -> None:
    """After the buy fills, its protective stop is listed as a working order."""
    pid = busy_home(home, clock)
    review = open_review(home)
    try:
        orders = review.open_orders()
        stops = orders[orders["role"] == "protective stop"]
        assert list(stops["proposal_id"]) == [pid]
        assert stops["status"].iloc[0] == "Submitted" and stops["stop"].iloc[0] is not None
    finally:
        review.close()


BREAKER = load_strategy_params(POLICIES).circuit_breaker  # 5%, the policy as filed


def test_one_day_drawdown_is_measured_from_the_previous_close_and_the_peak_since() -> None:
    """110 then 99 within a session is a 10% drawdown; the next session measures from its
    previous close (99), so 98 is 1/99 below it."""
    t0 = datetime(2026, 11, 18, 15, tzinfo=UTC)  # Wednesday 10:00 New York
    times = [t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=25.5)]
    navs = [Decimal(100), Decimal(110), Decimal(99), Decimal(98)]
    assert one_day_drawdowns(times, navs, breaker=BREAKER) == [
        Decimal(0),
        Decimal(0),
        Decimal(11) / Decimal(110),
        Decimal(1) / Decimal(99),
    ]


def test_one_day_drawdown_counts_a_weekend_that_a_24_hour_window_missed() -> None:
    """Friday's close 110, Monday morning 99: a 10% drop for the day (a trailing 24 h peak saw
    none); a resume in between starts afresh, as for the breaker."""
    friday = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)
    monday = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    navs = [Decimal(110), Decimal(99)]
    assert one_day_drawdowns([friday, monday], navs, breaker=BREAKER) == [
        Decimal(0),
        Decimal(11) / Decimal(110),
    ]
    resumed = [monday - timedelta(minutes=1)]
    assert one_day_drawdowns([friday, monday], navs, releases=resumed, breaker=BREAKER) == [
        Decimal(0),
        Decimal(0),
    ]


def test_review_drawdowns_are_what_the_breaker_read_at_each_snapshot(home: Path) -> None:
    """NAVs recorded through the circuit breaker across a night, 24 h + 5 s, a skipped day, a
    weekend (which trips it), a resume and Thanksgiving: the review's drawdown at every listed
    NAV is the breaker's own reading, including the first day's, measured from a close before
    the range."""
    monday_cron = datetime(2026, 11, 16, 21, 30, tzinfo=UTC)  # 16:30 New York, after the close
    moments = [
        (monday_cron, "100"),
        (monday_cron + timedelta(hours=23, minutes=59), "97"),  # Tuesday: 3% below Monday
        (monday_cron + timedelta(days=1, hours=16, minutes=30), "98"),  # Wed 09:00, pre-open
        (monday_cron + timedelta(days=2, seconds=5), "96"),  # Wednesday's cron, 5 s late
        (datetime(2026, 11, 20, 15, 0, tzinfo=UTC), "99"),  # Friday, Thursday skipped
        (datetime(2026, 11, 20, 21, 30, tzinfo=UTC), "100"),
        (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), "94"),  # Monday: 6% since Friday: trips
        (datetime(2026, 11, 23, 16, 30, tzinfo=UTC), "93"),  # after the resume below
        (datetime(2026, 11, 25, 21, 30, tzinfo=UTC), "95"),
        (datetime(2026, 11, 27, 18, 30, tzinfo=UTC), "91"),  # Friday after Thanksgiving
    ]
    read: list[tuple[datetime, Decimal]] = []
    clock = FixedClock(monday_cron)
    with AuditLog(home / "workbench.sqlite", clock) as log:
        authority = authority_with(log, home, CREDENTIAL)
        for at, nav in moments:
            clock.set(at)
            record = trading_state.record_portfolio_snapshot(
                log, portfolio(nav=nav, at=at), BREAKER, key=authority.key, actor="test"
            )
            assert record.breaker is not None and record.breaker.drawdown is not None
            read.append((at, record.breaker.drawdown))
            if record.tripped:
                clock.set(at + timedelta(minutes=30))
                trading_state.resume(authority, CREDENTIAL, reason="checked the fills")
    assert any(dd >= Decimal("0.05") for _, dd in read), "the weekend drop should trip it"
    review = Review.open(
        home=str(home), since="2026-11-17", until="2026-12-01", policy_dir=str(POLICIES)
    )
    try:
        frame = review.nav()
    finally:
        review.close()
    listed = [(at, dd) for at, dd in read if at >= datetime(2026, 11, 17, 5, tzinfo=UTC)]
    assert list(zip(frame["time"], frame["drawdown_1d"], strict=True)) == listed
    assert listed[0][1] == Decimal(3) / Decimal(100)  # from Monday's close, before the range


def test_review_reports_a_broken_chain(home: Path, clock: FixedClock) -> None:
    """An edited event makes the reviewer's chain check fail at that seq."""
    busy_home(home, clock)
    raw = sqlite3.connect(home / "workbench.sqlite")
    raw.executescript(
        "DROP TRIGGER events_no_update; UPDATE events SET actor = 'mallory' WHERE seq = 5;"
    )
    raw.close()
    review = open_review(home)
    try:
        result = review.chain()
        assert not result.ok and result.first_bad_seq == 5
    finally:
        review.close()


@pytest.mark.slow
def test_review_notebook_renders_the_charts_and_verifies_the_chain_once(
    home: Path, clock: FixedClock, tmp_path: Path
) -> None:
    """Run from its own folder, the review notebook draws NAV, drawdown, reject rate and state
    charts, says the chain verdict once and counts commission as money."""
    busy_home(home, clock)
    out = tmp_path / "review.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "review.ipynb"),
        str(out),
        parameters={"home": str(home), "since": "2026-11-01", "until": "2026-12-01"},
        kernel_name="python3",
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
    )
    page = write_html(out, title="Review").read_text()
    assert page.count("data:image/png;base64") >= 4
    for chart in ("NAV (equity curve)", "Daily drawdown against the circuit breaker",
                  "Reject rate by rule", "Trading-state timeline"):  # fmt: skip
        assert f'alt="{chart}"' in page, chart
    assert page.count("verified OK") == 1
    assert re.search(r"net of \d+\.\d\d USD commission", page)
    assert "row_heading" not in page
    nb = nbformat.read(out, as_version=4)
    streams = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "stream"]
    assert streams == [], streams
