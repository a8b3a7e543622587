"""The order ticket: built purely from typed inputs, rendered as text (a terminal) and HTML.

The default scene (``gatekit``) buys 20 AAPL at a limit of 100.10 with a stop at 95 in a 290,000
USD account; the real simulator and gate judge it, so the figures are the ones an approver sees.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from gatekit import NOW, PARAMS, POLICY, portfolio, position, run, tweak
from gatekit import intent as make

from workbench import fmt
from workbench.models import ProtectiveStop, RiskDecision, RuleId, Severity, Side, Violation
from workbench.policy import policy_hash
from workbench.ticket import OrderTicket, StopRule, TicketInputs, build_ticket
from workbench.ticket_view import to_html, to_text

D = Decimal


def inputs(**changes: Any) -> TicketInputs:
    """The default scene's ticket inputs (simulated and judged for real), any field replaced."""
    order = changes.pop("intent", make())
    book = changes.pop("portfolio", portfolio())
    outcome = run(order, book=book, policy=changes.pop("judged_by", POLICY))
    base = TicketInputs(
        proposal_id="p1",
        intent=order,
        state="APPROVAL_REQUESTED",
        broker="paper broker (simulated)",
        proposed_at=NOW - timedelta(minutes=3),
        now=NOW,
        policy=POLICY,
        policy_hash=policy_hash(POLICY),
        margin_rate=PARAMS.costs.initial_margin_rate,
        stop_rule=StopRule(PARAMS.smart_stop.atr_multiplier, D("2.55")),
        sim=outcome.sim,
        decision=outcome.decision,
        portfolio=book,
        quote_at=NOW - timedelta(seconds=5),
    )
    return replace(base, **changes)


def line(ticket: OrderTicket, key: str) -> str:
    return next(
        x.value for part in (ticket.order, ticket.risk, ticket.times) for x in part if x.key == key
    )


def test_buy_risk_to_stop_is_quantity_times_entry_minus_stop_and_its_share_of_nav() -> None:
    """BUY 20 at 100.10 with a stop at 95 risks 20 × 5.10 = 102.00 USD of a 290,000 NAV."""
    ticket = build_ticket(inputs())
    assert ticket.risk_amount == D("102.00")
    assert ticket.risk_of_nav == D("102.00") / D(290_000)
    assert line(ticket, "risk").startswith("102.00 USD (0.04% of NAV) = 20 × (100.10 − 95.00)")


def test_short_risk_to_stop_is_quantity_times_stop_minus_entry() -> None:
    """A SELL that opens a short risks quantity × (stop − limit)."""
    order = make(
        side=Side.SELL,
        limit_price=D("99.90"),
        protective_stop=ProtectiveStop(stop_price=D("104.90")),
    )
    ticket = build_ticket(inputs(intent=order, judged_by=tweak(POLICY, limits__allow_shorts=True)))
    assert ticket.risk_amount == D("100.00")
    assert "20 × (104.90 − 99.90)" in line(ticket, "risk")


def test_reducing_order_without_stop_adds_no_risk_and_says_why() -> None:
    """Selling part of a holding needs no stop: no new risk, and the ticket says so."""
    book = portfolio((position("AAPL", "50", "100"),))
    order = make(side=Side.SELL, limit_price=D("99.90"), protective_stop=None)
    ticket = build_ticket(inputs(intent=order, portfolio=book))
    assert ticket.risk_amount == 0
    assert "reduces the position" in line(ticket, "stop")
    assert "no new risk" in line(ticket, "risk")


def test_opening_order_without_stop_puts_the_whole_notional_at_risk() -> None:
    """An opening order without a stop shows its whole notional as at risk, and the gate's R16."""
    ticket = build_ticket(inputs(intent=make(protective_stop=None)))
    assert ticket.risk_amount == D("2002.00") and "no stop, all of it" in line(ticket, "risk")
    assert line(ticket, "stop").startswith("NONE")
    assert ticket.checks[0].rule == "R16" and ticket.checks[0].outcome == "BLOCKER"


def test_stop_says_how_it_was_set_in_atr_multiples() -> None:
    """The stop line gives the distance from the reference as a multiple of ATR and the rule."""
    # reference 100.00, stop 95.00: 5.00 below = 2.0 × ATR 2.50
    ticket = build_ticket(inputs(stop_rule=StopRule(D(2), D("2.50"))))
    assert line(ticket, "stop") == (
        "95.00 = 100.00 − 2.0 × ATR(14) 2.50; strategy: entry − 2 × ATR(14)"
    )
    unknown = build_ticket(inputs(stop_rule=StopRule(D(2), None)))
    assert "ATR unknown" in line(unknown, "stop")


def test_money_and_changes_are_formatted_to_the_cent_with_currency() -> None:
    """Notional, commission and before → after figures read like money: separators, cents, USD."""
    ticket = build_ticket(inputs())
    assert line(ticket, "notional") == "2,002.00 USD"
    assert line(ticket, "commission") == "1.00 USD"
    changes = {c.label: (c.before, c.after) for c in ticket.changes}
    assert changes["Cash"][0] == "250,000.00 USD"
    assert changes["Position AAPL"] == ("0", "20")
    assert changes["Weight AAPL"][0] == "0.00%" and changes["Weight AAPL"][1].endswith("%")
    assert set(changes) >= {"Buying power (est.)", "Initial margin (est.)", "Net liquidation"}


def test_what_rounds_to_zero_never_reads_minus_zero() -> None:
    """A loss of 0.0005% reads "0.00%" (not "-0.00%"); a real cent of loss keeps its sign."""
    assert fmt.pct(D("-0.000005"), signed=True) == "0.00%"
    assert fmt.money(D("-0.004"), "USD") == "0.00 USD"
    assert fmt.money(D("-0.005"), "USD") == "-0.01 USD"


def test_every_rule_is_a_check_row_with_blockers_first() -> None:
    """All nineteen rules appear; a BLOCKER heads the list, then MAJOR, MINOR, passes."""
    order = make(quantity=D(300), is_propagated=True)  # notional 30,030 > 25,000: R1 blocks
    ticket = build_ticket(inputs(intent=order))
    outcomes = [r.outcome for r in ticket.checks]
    assert {r.rule for r in ticket.checks} == {f"R{n}" for n in range(1, 20)}
    assert outcomes[0] == "BLOCKER" and ticket.checks[0].rule == "R1"
    assert outcomes.index("MAJOR") < outcomes.index("ok")  # R17 propagated: REVIEW
    assert outcomes == sorted(outcomes, key=["BLOCKER", "MAJOR", "MINOR", "ok"].index)
    r1 = ticket.checks[0]
    assert r1.value == "30,030.00 USD" and r1.limit == "≤ 25,000.00 USD"


def test_long_blocking_reasons_are_never_cut_and_text_fits_the_width() -> None:
    """A 600-character reason appears whole in text and HTML; every text line fits 100 columns."""
    reason = "market closed: " + "XNYS has no session on this day " * 18
    base = inputs()
    assert base.decision is not None
    decision = base.decision.model_copy(
        update={
            "violations": (
                Violation(
                    rule_id=RuleId.R11_TRADING_WINDOW, severity=Severity.BLOCKER, message=reason
                ),
                *base.decision.violations,
            )
        }
    )
    ticket = build_ticket(replace(base, decision=decision))
    text = to_text(ticket)
    assert all(len(row) <= 100 for row in text.splitlines())
    assert " ".join(text.split()).count(" ".join(reason.split())) == 1
    assert reason.strip() in to_html(ticket).replace("&#x27;", "'")
    assert ticket.checks[0].rule == "R11"


def test_violation_of_a_rule_the_table_does_not_know_is_still_shown() -> None:
    """A finding the check table has no row for is listed, never dropped."""
    base = inputs()
    assert base.decision is not None
    odd = RiskDecision.model_validate(
        {
            **base.decision.model_dump(),
            "violations": [{"rule_id": "R1_MAX_NOTIONAL", "severity": "MINOR", "message": "x"}],
        }
    )
    ticket = build_ticket(replace(base, decision=odd))
    assert [r.outcome for r in ticket.checks if r.rule == "R1"] == ["MINOR"]


def test_times_are_in_new_york_with_the_zone_and_quote_age_is_given() -> None:
    """Proposal, decision and quote times read in New York time with the zone, with the age."""
    ticket = build_ticket(inputs(now=NOW + timedelta(minutes=2)))
    assert line(ticket, "proposed") == "2026-11-18 10:27:00 EST"
    assert line(ticket, "decided") == "2026-11-18 10:30:00 EST"
    assert line(ticket, "quote") == (
        "2026-11-18 10:29:55 EST; 5 s old at the decision, 2 min 5 s old now"
    )
    assert line(ticket, "policy").startswith(policy_hash(POLICY)[:16])


def test_proposal_from_an_earlier_session_and_a_changed_policy_are_flagged() -> None:
    """An older New York day and a policy hash that moved on are both flagged in words."""
    fresh = build_ticket(inputs())
    assert fresh.flags == () and not fresh.from_earlier_session
    later = build_ticket(inputs(now=NOW + timedelta(days=3), policy_hash="0" * 64))
    assert later.from_earlier_session
    assert any(f.startswith("EARLIER SESSION: proposed Wed 2026-11-18") for f in later.flags)
    assert any(f.startswith("POLICY CHANGED") for f in later.flags)


def test_fault_without_a_simulation_is_shown_in_full() -> None:
    """A proposal that could not be simulated shows its fault and no made-up figures."""
    fault = "simulation failed: AAPL: no bid/ask, last or close: no reference price"
    ticket = build_ticket(inputs(sim=None, decision=None, fault=fault, quote_at=None))
    assert ticket.decision == "FAULT" and ticket.risk_amount is None and ticket.changes == ()
    assert fault in to_text(ticket) and any(fault in f for f in ticket.flags)
    assert line(ticket, "notional") == "not simulated"


def test_same_inputs_give_the_same_ticket() -> None:
    """The ticket is a pure function of its inputs."""
    assert build_ticket(inputs()) == build_ticket(inputs())
    assert to_html(build_ticket(inputs())) == to_html(build_ticket(inputs()))
