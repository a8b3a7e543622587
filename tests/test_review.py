"""The reviewer's view: chain verdict, events, rejects by rule, fills and state history."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from wbkit import APPROVER, CREDENTIAL, add_approver, intent, open_wb

from workbench.clock import FixedClock
from workbench.models import Side
from workbench.review import Review


def busy_home(home: Path, clock: FixedClock) -> str:
    """A home with one filled order, one rejected proposal and a halt/resume."""
    with open_wb(home, clock) as wb:
        add_approver(wb)
        filled = wb.run(intent(wb, "SPY", 10), actor="test")
        grant = wb.approve(filled.proposal_id, CREDENTIAL)
        wb.submit(filled.proposal_id, grant.token)
        wb.run(intent(wb, "QQQ", 10, Side.SELL, stop=False), actor="test")  # a short: rejected
        wb.halt("lunch", by="ops")
        wb.resume("back", CREDENTIAL)
        return filled.proposal_id


def test_review_summarises_a_day(home: Path, clock: FixedClock) -> None:
    """Fills carry commission and P&L, rejects are counted by rule, state changes are listed."""
    pid = busy_home(home, clock)
    review = Review.open(home=str(home), since="2026-11-01", until="2026-12-01")
    try:
        assert review.chain().ok
        fills = review.fills()
        assert list(fills["proposal_id"]) == [pid]
        assert fills["commission"].iloc[0] > 0 and isinstance(fills["quantity"].iloc[0], Decimal)
        rejects = review.rejects_by_rule()
        assert "R15_CASH_AND_SHORTS" in set(rejects["rule_id"])
        states = review.trading_states()
        assert list(states["state"]) == ["HALTED", "ACTIVE"]
        assert list(states["by"]) == ["ops", APPROVER]
        counts = dict(
            zip(review.events_by_type()["type"], review.events_by_type()["events"], strict=True)
        )
        assert counts["OrderFilled"] == 1
    finally:
        review.close()


def test_review_reports_a_broken_chain(home: Path, clock: FixedClock) -> None:
    """An edited event makes the reviewer's chain check fail at that seq."""
    busy_home(home, clock)
    raw = sqlite3.connect(home / "workbench.sqlite")
    raw.executescript(
        "DROP TRIGGER events_no_update; UPDATE events SET actor = 'mallory' WHERE seq = 5;"
    )
    raw.close()
    review = Review.open(home=str(home))
    try:
        result = review.chain()
        assert not result.ok and result.first_bad_seq == 5
    finally:
        review.close()
