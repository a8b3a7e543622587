"""The execution bridge: AccountMonitor on the real paper broker, Smart Stop, sizing, order tags."""

from __future__ import annotations

from decimal import Decimal

import pytest
from wbkit import CREDENTIAL
from wbkit import intent as valid_intent

from workbench.audit import AuditLog
from workbench.bridge import (
    PROPAGATED_TAG,
    AccountMonitor,
    SizingRules,
    order_ref,
    proposal_from_order_ref,
    quantity_for_target,
    smart_stop,
)
from workbench.brokers.base import OrderRole
from workbench.brokers.paper import PaperBroker
from workbench.errors import SimulationError
from workbench.models import Decision, LiveSignal, Side
from workbench.proposers import Market, StopRules, from_signals
from workbench.workbench import Workbench

D = Decimal
RULES = SizingRules(min_order_size=D(1), max_order_size=D(10_000))


@pytest.fixture
def paper(log: AuditLog) -> PaperBroker:
    """The real embedded paper broker on the test's SQLite home."""
    return PaperBroker(log, key=None)


# -- AccountMonitor --------------------------------------------------------------------------


def test_account_monitor_reads_numeric_funds_and_nav_from_the_paper_broker(
    paper: PaperBroker,
) -> None:
    """AvailableFunds and NetLiquidation come back as finite Decimals from the broker snapshot."""
    monitor = AccountMonitor(lambda: paper.portfolio("PAPER1"))
    funds, nav = monitor.available_funds(), monitor.net_liquidation()
    assert isinstance(funds, Decimal) and funds.is_finite()
    assert isinstance(nav, Decimal) and nav.is_finite()
    assert nav == paper.config.starting_cash
    assert funds == nav  # no positions yet: nothing is tied up as margin
    assert monitor.positions() == ()
    assert monitor.margin_utilisation() == 0


def test_account_monitor_refresh_sees_a_fill_and_its_margin(wb: Workbench) -> None:
    """After a fill the refreshed monitor shows the position, less AvailableFunds and margin."""
    monitor = AccountMonitor(lambda: wb.broker.portfolio(wb.account))
    before = monitor.available_funds()
    outcome = wb.run(valid_intent(wb, "SPY", 10), actor="test")
    grant = wb.approve(outcome.proposal_id, CREDENTIAL)
    wb.submit(outcome.proposal_id, grant.token)
    assert monitor.available_funds() == before  # cached until refreshed
    monitor.refresh()
    assert [p.instrument.symbol for p in monitor.positions()] == ["SPY"]
    assert monitor.available_funds() < before
    utilisation = monitor.margin_utilisation()
    assert utilisation is not None and utilisation > 0


# -- Smart Stop ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "entry", "atr", "k", "expected"),
    [
        (Side.BUY, "100", "2", "2", "96"),  # the design's validation case
        (Side.SELL, "100", "2", "2", "104"),
        (Side.BUY, "3", "2", "2", "0.01"),  # entry − k·ATR below zero: floored at one cent
        (Side.BUY, "10.005", "0", "2", "10.01"),  # rounded half-up to the cent
    ],
)
def test_smart_stop_is_entry_minus_k_atr_for_longs_and_plus_for_shorts(
    side: Side, entry: str, atr: str, k: str, expected: str
) -> None:
    """Long stop = entry − k·ATR floored at 0.01; short stop = entry + k·ATR, to the cent."""
    assert smart_stop(side, D(entry), D(atr), D(k)) == D(expected)


@pytest.mark.parametrize(
    ("entry", "atr", "k"), [("0", "2", "2"), ("100", "-1", "2"), ("100", "2", "0")]
)
def test_smart_stop_refuses_nonsense_inputs(entry: str, atr: str, k: str) -> None:
    """A non-positive entry or k, or a negative ATR, raises instead of inventing a stop."""
    with pytest.raises(SimulationError):
        smart_stop(Side.BUY, D(entry), D(atr), D(k))


# -- sizing ----------------------------------------------------------------------------------


def size(**overrides: object) -> Decimal:
    """quantity_for_target on a 100,000 account at price 100 with plenty of funds."""
    args: dict[str, object] = {
        "target_weight": D("0.10"),
        "nav": D(100_000),
        "price": D(100),
        "held": D(0),
        "available_funds": D(100_000),
        "rules": RULES,
    }
    args.update(overrides)
    return quantity_for_target(**args)  # type: ignore[arg-type]


def test_sizing_buys_toward_the_target_weight_in_whole_shares() -> None:
    """10% of 100,000 at 100 is 100 shares; what is held already is subtracted; odd lots floor."""
    assert size() == D(100)
    assert size(held=D(40)) == D(60)
    assert size(price=D(33)) == D(303)


def test_sizing_sells_down_to_the_target() -> None:
    """Holding more than the target gives a negative (sell) quantity."""
    assert size(held=D(150)) == D(-50)
    assert size(target_weight=D(0), held=D(70)) == D(-70)


def test_sizing_is_capped_by_available_funds() -> None:
    """A buy never costs more than AvailableFunds; with no funds it is no order at all."""
    assert size(available_funds=D(2_550)) == D(25)
    assert size(available_funds=D(0)) == D(0)
    assert size(available_funds=D(-500)) == D(0)


def test_sizing_respects_min_and_max_order_size() -> None:
    """Orders above max_order_size are capped (both ways); below min_order_size become zero."""
    rules = SizingRules(min_order_size=D(5), max_order_size=D(30))
    assert size(rules=rules) == D(30)
    assert size(rules=rules, held=D(200)) == D(-30)
    assert size(rules=rules, held=D(96)) == D(0)  # 4 shares to go: under the minimum
    assert size(rules=rules, held=D(95)) == D(5)


def test_sizing_refuses_a_non_positive_nav_or_price() -> None:
    """No NAV or no price means no sizing: it raises rather than guessing."""
    with pytest.raises(SimulationError):
        size(nav=D(0))
    with pytest.raises(SimulationError):
        size(price=D(0))


def test_sizing_rules_need_min_at_most_max() -> None:
    """Sizing rules with min above max (or a zero min) are refused."""
    with pytest.raises(ValueError):
        SizingRules(min_order_size=D(10), max_order_size=D(5))
    with pytest.raises(ValueError):
        SizingRules(min_order_size=D(0), max_order_size=D(5))


# -- order tags ------------------------------------------------------------------------------


def test_order_ref_carries_the_proposal_id_and_the_tag_only_for_propagated_signals() -> None:
    """orderRef names the proposal; a propagated signal's also carries the compliance tag."""
    plain = order_ref("p42", is_propagated=False)
    tagged = order_ref("p42", is_propagated=True)
    assert PROPAGATED_TAG == "PROHIBITED_LLM_DISCOVERY_LINK"
    assert "p42" in plain and PROPAGATED_TAG not in plain
    assert "p42" in tagged and PROPAGATED_TAG in tagged
    assert proposal_from_order_ref(plain) == proposal_from_order_ref(tagged) == "p42"
    assert proposal_from_order_ref("someone else's order") is None


def _signal_market(wb: Workbench) -> Market:
    day = wb.clock.now().date()
    return Market(
        quote=lambda s: wb.market_snapshot(s, record=False),
        atr=lambda s: wb.atr(s, day),
        instrument=wb.instrument,
    )


def _order_refs(wb: Workbench, proposal_id: str) -> list[str]:
    return [
        o.order_ref
        for o in wb.broker.orders()
        if o.proposal_id == proposal_id and o.role is OrderRole.PARENT
    ]


@pytest.mark.parametrize("propagated", [True, False])
def test_a_propagated_signals_order_reaches_the_broker_tagged(
    wb: Workbench, propagated: bool
) -> None:
    """End to end: a propagated signal's order, as the paper broker received it, carries the
    tag (and its proposal id); an ordinary signal's does not."""
    signal = LiveSignal(
        ticker="SPY",
        weight=D("0.005"),
        direction=Side.BUY,
        is_propagated=propagated,
        atr_per_share=D(5),
        entry_price=D(1),  # the signal's own price is never used to size or price
    )
    portfolio = wb.portfolio()
    stops = StopRules(wb.params.smart_stop.atr_multiplier, wb.params.smart_stop.floor)
    (intent,) = from_signals([signal], portfolio, _signal_market(wb), RULES, stops)
    assert intent.is_propagated is propagated
    outcome = wb.run(intent, actor="signals")
    assert outcome.decision is not None
    expected = Decision.REVIEW if propagated else Decision.APPROVE  # R17 asks for a person
    assert outcome.decision.decision is expected
    reason = "checked the signal's provenance" if propagated else None
    grant = wb.approve(outcome.proposal_id, CREDENTIAL, override_reason=reason)
    wb.submit(outcome.proposal_id, grant.token)
    (ref,) = _order_refs(wb, outcome.proposal_id)
    assert outcome.proposal_id in ref
    assert (PROPAGATED_TAG in ref) is propagated
