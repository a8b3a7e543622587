"""The risk gate: each rule lets through what it should and stops what it should, as data."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gatekit import (
    COSTS,
    NOW,
    POLICY,
    D,
    Outcome,
    history,
    intent,
    portfolio,
    quote,
    run,
    stock,
    tweak,
)

from workbench.errors import RiskInputError
from workbench.models import (
    Decision,
    InstrumentType,
    IntentConstraints,
    OrderType,
    ProtectiveStop,
    RiskDecision,
    RuleId,
    Severity,
    Side,
    TradingState,
    Violation,
)
from workbench.policy import RiskPolicy, policy_hash
from workbench.risk import History, NavPoint, Submission, WorkingOrder, evaluate, gate
from workbench.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
MSFT = quote("MSFT", "399.90", "400.10")


def msft(side: Side = Side.BUY, qty: int = 20) -> Outcome:
    """An order on MSFT (50 held at 400) in the default scene."""
    stop = ProtectiveStop(stop_price=D(380)) if side is Side.BUY else None
    order = intent(
        instrument=stock("MSFT"),
        side=side,
        quantity=D(qty),
        limit_price=D(400),
        protective_stop=stop,
    )
    return run(order, market=MSFT)


def sent(seconds_ago: int, symbol: str = "AAPL", qty: int = 20) -> Submission:
    """A BUY submitted ``seconds_ago``."""
    return Submission(NOW - timedelta(seconds=seconds_ago), symbol, Side.BUY, D(qty), "p-old")


def msft_with(policy: RiskPolicy) -> Outcome:
    """BUY 5 more MSFT under ``policy``."""
    order = intent(instrument=stock("MSFT"), quantity=D(5), limit_price=D(400),
                   protective_stop=ProtectiveStop(stop_price=D(380)))  # fmt: skip
    return run(order, market=MSFT, policy=policy)


def reducing_sell() -> Outcome:
    """SELL 10 of the 50 MSFT held, while REDUCING."""
    order = intent(instrument=stock("MSFT"), side=Side.SELL, quantity=D(10), limit_price=D(400),
                   protective_stop=None)  # fmt: skip
    return run(order, market=MSFT, state=TradingState.REDUCING)


def day_ago(nav: str) -> History:
    """A history whose only NAV point is 25 hours old."""
    return History(nav_points=(NavPoint(NOW - timedelta(hours=25), D(nav)),))


Scene = Callable[[], Outcome]

# (rule, an order it lets through, an order it stops)
CASES: list[tuple[RuleId, Scene, Scene]] = [
    (
        RuleId.R1_MAX_NOTIONAL,
        lambda: run(intent(quantity=D(249))),  # 24,924.90
        lambda: run(intent(quantity=D(300))),  # 30,030.00
    ),
    (
        RuleId.R2_MAX_POSITION_WEIGHT,
        lambda: msft(qty=20),  # 70 x 400 = 28,000 = 9.7% of NAV
        lambda: msft(qty=30),  # 80 x 400 = 32,000 = 11.0%
    ),
    (
        RuleId.R3_MAX_POSITIONS,
        lambda: msft_with(tweak(POLICY, limits__max_positions=2)),  # adds to a held position
        lambda: run(policy=tweak(POLICY, limits__max_positions=2)),
    ),
    (
        RuleId.R4_INSTRUMENT_ALLOWED,
        lambda: run(),
        lambda: run(policy=tweak(POLICY, instruments__restricted_symbols=["AAPL"])),
    ),
    (
        RuleId.R5_ORDER_TYPE,
        lambda: run(),
        lambda: run(intent(order_type=OrderType.MKT, limit_price=None)),
    ),
    (
        RuleId.R6_TRADING_STATE,
        reducing_sell,
        lambda: run(state=TradingState.HALTED),
    ),
    (
        RuleId.R7_DAILY_LOSS,
        lambda: run(past=day_ago("292000")),  # down 0.7%
        lambda: run(past=day_ago("300000")),  # down 3.3%
    ),
    (
        RuleId.R8_MARKET_DATA_STALE,
        lambda: run(market=quote(timestamp=NOW - timedelta(seconds=60))),
        lambda: run(market=quote(timestamp=NOW - timedelta(seconds=61))),
    ),
    (
        RuleId.R9_MAX_DRAWDOWN,
        lambda: run(past=history(nav_peak=D(300000))),  # 3.3% below the peak
        lambda: run(past=history(nav_peak=D(330000))),  # 12.1% below
    ),
    (
        RuleId.R10_MAX_LEVERAGE,
        lambda: run(policy=tweak(POLICY, limits__max_leverage=D("0.15"))),  # 14.5%
        lambda: run(policy=tweak(POLICY, limits__max_leverage=D("0.14"))),
    ),
    (
        RuleId.R11_TRADING_WINDOW,
        lambda: run(),  # Wednesday 10:30 New York
        lambda: run(now=NOW.replace(day=21)),  # Saturday
    ),
    (
        RuleId.R12_PRICE_COLLAR,
        lambda: run(intent(limit_price=D("104.90"))),
        lambda: run(intent(limit_price=D(120))),  # 20% through the market
    ),
    (
        RuleId.R13_DUPLICATE_ORDER,
        lambda: run(past=history(submissions=(sent(601),))),
        lambda: run(past=history(submissions=(sent(300),))),
    ),
    (
        RuleId.R14_ORDER_RATE,
        lambda: run(past=history(submissions=tuple(sent(5, f"X{k}") for k in range(9)))),
        lambda: run(past=history(submissions=tuple(sent(5, f"X{k}") for k in range(10)))),
    ),
    (
        RuleId.R15_CASH_AND_SHORTS,
        lambda: msft(Side.SELL, 50),  # sells everything held
        lambda: run(intent(side=Side.SELL, protective_stop=None)),  # AAPL is not held
    ),
    (
        RuleId.R16_PROTECTIVE_STOP,
        lambda: run(),
        lambda: run(intent(protective_stop=None)),
    ),
    (
        RuleId.R17_PROPAGATED_SIGNAL,
        lambda: run(),
        lambda: run(intent(is_propagated=True), policy=tweak(POLICY, propagated_signal="REJECT")),
    ),
    (
        RuleId.R18_MIN_ORDER_SIZE,
        lambda: run(intent(quantity=D(1))),  # 100.10
        lambda: run(intent(quantity=D(1)), policy=tweak(POLICY, orders__min_order_notional=500)),
    ),
    (
        RuleId.R19_INTENT_CONSTRAINTS,
        lambda: run(intent(constraints=IntentConstraints(max_notional=D(2002)))),
        lambda: run(intent(constraints=IntentConstraints(max_notional=D(2000)))),
    ),
]


@pytest.mark.parametrize(("rule", "allowed", "stopped"), CASES, ids=[c[0].value for c in CASES])
def test_rule_lets_through_an_order_it_should(rule: RuleId, allowed: Scene, stopped: Scene) -> None:
    """Each rule's allowed case is APPROVEd with no finding from that rule."""
    outcome = allowed()
    assert outcome.decision.decision is Decision.APPROVE, outcome.decision.violations
    assert rule.value not in outcome.ids()


@pytest.mark.parametrize(("rule", "allowed", "stopped"), CASES, ids=[c[0].value for c in CASES])
def test_rule_stops_an_order_it_should(rule: RuleId, allowed: Scene, stopped: Scene) -> None:
    """Each rule's stopped case is not APPROVEd and carries that rule's id."""
    outcome = stopped()
    assert outcome.decision.decision is not Decision.APPROVE
    assert rule.value in outcome.ids(), outcome.decision.violations


def test_every_rule_has_a_case() -> None:
    """The allow/stop table covers every rule id."""
    assert {c[0] for c in CASES} == set(RuleId)


def test_sell_of_a_symbol_not_held_is_rejected_when_shorts_are_off() -> None:
    """A SELL of AAPL, not held, is REJECTed by R15 with shorts off; allowed once shorts are on."""
    order = intent(side=Side.SELL, protective_stop=ProtectiveStop(stop_price=D(105)))
    stopped = run(order)
    assert stopped.decision.decision is Decision.REJECT
    assert "R15_CASH_AND_SHORTS" in stopped.ids()
    allowed = run(order, policy=tweak(POLICY, limits__allow_shorts=True))
    assert "R15_CASH_AND_SHORTS" not in allowed.ids()


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 21, 15, 30, tzinfo=UTC),  # Saturday
        datetime(2026, 11, 26, 15, 30, tzinfo=UTC),  # Thanksgiving
        datetime(2026, 11, 27, 18, 30, tzinfo=UTC),  # after the 13:00 early close
        datetime(2026, 11, 18, 14, 29, tzinfo=UTC),  # 09:29 New York, before the open
        datetime(2026, 3, 9, 13, 45, tzinfo=UTC),  # 09:45 EDT: open (a control case)
    ],
    ids=["saturday", "thanksgiving", "early-close", "pre-open", "dst-control"],
)
def test_orders_outside_the_session_are_rejected(when: datetime) -> None:
    """Weekends, holidays, early closes and pre-open are outside the XNYS session (R11)."""
    fresh = {"timestamp": when - timedelta(seconds=5)}
    outcome = run(
        market=quote(**fresh),
        book=portfolio(at=when - timedelta(seconds=5)),
        past=History(nav_points=(NavPoint(when - timedelta(hours=1), D(290000)),)),
        now=when,
    )
    in_session = when == datetime(2026, 3, 9, 13, 45, tzinfo=UTC)
    assert ("R11_TRADING_WINDOW" in outcome.ids()) is not in_session


def test_dst_shifts_the_open_in_utc() -> None:
    """On 6 March 2026 (EST) 14:15 UTC is before the open; on 9 March (EDT) it is after."""
    for day, open_ in ((6, False), (9, True)):
        when = datetime(2026, 3, day, 14, 15, tzinfo=UTC)
        outcome = run(
            market=quote(timestamp=when),
            book=portfolio(at=when),
            past=History(nav_points=(NavPoint(when - timedelta(hours=1), D(290000)),)),
            now=when,
        )
        assert ("R11_TRADING_WINDOW" in outcome.ids()) is not open_


def test_stale_portfolio_snapshot_is_rejected() -> None:
    """A portfolio snapshot older than the policy allows is REJECTed by R8."""
    outcome = run(book=portfolio(at=NOW - timedelta(seconds=301)))
    assert outcome.decision.decision is Decision.REJECT
    assert "R8_MARKET_DATA_STALE" in outcome.ids()


def test_quote_from_the_future_is_rejected() -> None:
    """A quote time beyond the allowed clock skew means a wrong clock: REJECT."""
    outcome = run(market=quote(timestamp=NOW + timedelta(seconds=30)))
    assert "R8_MARKET_DATA_STALE" in outcome.ids()


def test_limit_twenty_percent_through_the_market_is_rejected() -> None:
    """A BUY limit 20% above the reference price is REJECTed by the collar (R12)."""
    outcome = run(intent(limit_price=D(120)))
    assert outcome.decision.decision is Decision.REJECT
    assert "R12_PRICE_COLLAR" in outcome.ids()


def test_same_order_twice_within_the_window_is_rejected() -> None:
    """The same symbol/side/qty sent five minutes ago is REJECTed as a duplicate (R13)."""
    first = run()
    assert first.decision.decision is Decision.APPROVE
    second = run(past=history(submissions=(sent(300),)))
    assert second.decision.decision is Decision.REJECT
    assert "R13_DUPLICATE_ORDER" in second.ids()


def test_working_order_same_side_other_quantity_needs_review() -> None:
    """A working order on the same symbol and side with another quantity sends it to REVIEW."""
    working = (WorkingOrder("AAPL", Side.BUY, D(7), "p-w"),)
    outcome = run(past=history(working_orders=working))
    assert outcome.decision.decision is Decision.REVIEW
    same = run(past=history(working_orders=(WorkingOrder("AAPL", Side.BUY, D(20), "p-w"),)))
    assert same.decision.decision is Decision.REJECT


def test_reducing_state_rejects_an_increase() -> None:
    """While REDUCING, a BUY that grows a position is REJECTed by R6."""
    outcome = run(state=TradingState.REDUCING)
    assert "R6_TRADING_STATE" in outcome.ids()


def test_protective_stop_on_the_wrong_side_is_rejected() -> None:
    """A long entry's stop above the price is REJECTed by R16."""
    outcome = run(intent(protective_stop=ProtectiveStop(stop_price=D(101))))
    assert "R16_PROTECTIVE_STOP" in outcome.ids()


def test_propagated_signal_goes_to_review_by_default() -> None:
    """With the shipped policy a propagated signal's order is REVIEW, not APPROVE."""
    outcome = run(intent(is_propagated=True))
    assert outcome.decision.decision is Decision.REVIEW


def test_daily_loss_lets_a_reducing_order_through() -> None:
    """Past the daily loss limit, a SELL that shrinks a position is still allowed."""
    order = intent(
        instrument=stock("MSFT"), side=Side.SELL, limit_price=D(400), protective_stop=None
    )
    outcome = run(order, market=MSFT, past=day_ago("300000"))
    assert outcome.decision.decision is Decision.APPROVE


def _on(when: datetime, *points: tuple[datetime, str]) -> Outcome:
    """The default order judged at ``when`` with fresh snapshots and these NAV points."""
    fresh = when - timedelta(seconds=5)
    past = History(nav_points=tuple(NavPoint(at, D(nav)) for at, nav in points))
    return run(market=quote(timestamp=fresh), book=portfolio(at=fresh), past=past, now=when)


TUESDAY_1030 = datetime(2026, 11, 17, 15, 30, tzinfo=UTC)


def test_daily_loss_counts_from_the_previous_close_not_from_24_hours_ago() -> None:
    """Monday 09:45 at 300,000 and 16:30 at 293,000: on Tuesday 290,000 is down 1.0% (APPROVE)."""
    outcome = _on(
        TUESDAY_1030,
        (datetime(2026, 11, 16, 14, 45, tzinfo=UTC), "300000"),  # 09:45 New York, intraday
        (datetime(2026, 11, 16, 21, 30, tzinfo=UTC), "293000"),  # after the close
    )
    assert outcome.decision.decision is Decision.APPROVE, outcome.decision.violations
    assert outcome.decision.computed["daily_loss_pct"] == "0.010239"


@pytest.mark.parametrize(
    ("when", "close_nav_at"),
    [
        (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), datetime(2026, 11, 20, 21, 30, tzinfo=UTC)),
        (datetime(2026, 11, 27, 15, 30, tzinfo=UTC), datetime(2026, 11, 25, 21, 30, tzinfo=UTC)),
    ],
    ids=["monday-after-a-weekend", "friday-after-thanksgiving"],
)
def test_daily_loss_spans_weekends_and_holidays(when: datetime, close_nav_at: datetime) -> None:
    """The previous session's close NAV (300,000) is the baseline across a weekend or holiday."""
    outcome = _on(when, (close_nav_at, "300000"))
    assert "R7_DAILY_LOSS" in outcome.ids()
    assert outcome.decision.decision is Decision.REJECT


def test_no_nav_history_needs_review() -> None:
    """Without any NAV history the daily loss is unknown: REVIEW, not APPROVE."""
    outcome = run(past=History())
    assert outcome.decision.decision is Decision.REVIEW
    assert "R7_DAILY_LOSS" in outcome.ids()


def test_synthetic_quote_is_a_minor_warning_on_an_approve() -> None:
    """A synthetic quote leaves the decision APPROVE with a MINOR R8 violation listed."""
    outcome = run(market=quote(synthetic=True))
    assert outcome.decision.decision is Decision.APPROVE
    minor = [v for v in outcome.decision.violations if v.severity is Severity.MINOR]
    assert [v.rule_id for v in minor] == [RuleId.R8_MARKET_DATA_STALE]


def test_decision_carries_every_violation_with_data() -> None:
    """An order breaking several rules lists each violation with id, severity, message, data."""
    order = intent(quantity=D(300), limit_price=D(120), is_propagated=True, protective_stop=None)
    outcome = run(order, state=TradingState.HALTED)
    ids = outcome.ids()
    for rule in ("R1_MAX_NOTIONAL", "R6_TRADING_STATE", "R12_PRICE_COLLAR", "R16_PROTECTIVE_STOP"):
        assert rule in ids
    assert "R17_PROPAGATED_SIGNAL" in ids
    r1 = next(v for v in outcome.decision.violations if v.rule_id is RuleId.R1_MAX_NOTIONAL)
    assert r1.severity is Severity.BLOCKER and r1.message and r1.data["cap"] == "25000"
    # built with model_construct on the hot path: every field set, equal to a validated copy
    decision = outcome.decision
    assert decision.model_fields_set == set(RiskDecision.model_fields)
    assert all(v.model_fields_set == set(Violation.model_fields) for v in decision.violations)
    assert RiskDecision.model_validate(decision.model_dump()) == decision


def test_decision_is_stamped_with_the_policy_and_intent_hash() -> None:
    """Every decision carries the policy's canonical hash, the intent hash and the time."""
    order = intent()
    outcome = run(order)
    assert outcome.decision.policy_hash == policy_hash(POLICY)
    assert outcome.decision.intent_hash == order.intent_hash
    assert outcome.decision.evaluated_at == NOW
    assert outcome.decision.computed["notional"] == "2002.00"


def test_a_rule_that_raises_rejects_with_its_own_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that raises turns into a BLOCKER under that rule's id: REJECT, never APPROVE."""

    def broken(_: object) -> tuple[()]:
        raise ZeroDivisionError("boom")

    rules = tuple((rid, broken if rid is RuleId.R9_MAX_DRAWDOWN else f) for rid, f in gate.RULES)
    monkeypatch.setattr(gate, "RULES", rules)
    outcome = run()
    assert outcome.decision.decision is Decision.REJECT
    (v,) = outcome.decision.violations
    assert v.rule_id is RuleId.R9_MAX_DRAWDOWN and v.severity is Severity.BLOCKER
    assert "raised ZeroDivisionError" in v.message


def test_mismatched_inputs_are_faults_not_decisions() -> None:
    """Another intent's simulation, account or quote raises RiskInputError."""
    order, book, market = intent(), portfolio(), quote()
    other = simulate(intent(quantity=D(21)), book, market, COSTS)
    with pytest.raises(RiskInputError, match="another intent"):
        evaluate(order, other, book, market, POLICY, TradingState.ACTIVE, history(), NOW)
    sim = simulate(order, book, market, COSTS)
    with pytest.raises(RiskInputError, match="quote for MSFT"):
        evaluate(order, sim, book, MSFT, POLICY, TradingState.ACTIVE, history(), NOW)


def test_other_instrument_types_are_rejected() -> None:
    """A future is not on the STK/ETF allowlist: REJECT by R4."""
    order = intent(instrument=stock("ES", type=InstrumentType.FUT))
    outcome = run(order, market=quote(instrument=stock("ES", type=InstrumentType.FUT)))
    assert "R4_INSTRUMENT_ALLOWED" in outcome.ids()


def test_every_rule_id_is_documented() -> None:
    """docs/risk-rules.md has one table line per rule id."""
    text = (ROOT / "docs" / "risk-rules.md").read_text()
    for rule in RuleId:
        lines = [line for line in text.splitlines() if line.startswith(f"| {rule.value} |")]
        assert len(lines) == 1, rule


def test_gate_never_imports_the_audit_log_or_a_broker() -> None:
    """The pure risk package imports neither workbench.audit nor workbench.brokers."""
    for path in (ROOT / "workbench" / "risk").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("workbench.audit", "workbench.brokers")), path
