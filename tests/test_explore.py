"""The quant's what-if lab: quantized numbers, severities shown, sliders that work off-thread."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import TRADING_NOW
from wbkit import POLICIES

from workbench.explore import Lab, snap
from workbench.fmt import NEW_YORK
from workbench.home import create_home, replay_home


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    """The lab on an empty paper account at a trading moment, policies as filed: a replay time
    opens that day's sandbox (``workbench init`` made it), never the live home."""
    create_home(replay_home(home, TRADING_NOW.astimezone(NEW_YORK).date()))
    opened = Lab.open(home=str(home), policy_dir=str(POLICIES), clock_at=TRADING_NOW.isoformat())
    yield opened
    opened.wb.close()


def test_slider_floats_snap_to_their_step() -> None:
    """Float noise from a slider is gone: 0.30000000000000004 is 0.3, 9999.999999999998 is 10000."""
    assert snap(0.30000000000000004, "0.1") == Decimal("0.3")
    assert snap(9999.999999999998, "1000") == Decimal(10000)
    assert str(snap(0.1, "0.01")) == "0.10"


def test_decisions_are_quantized_and_show_every_severity_blockers_first(lab: Lab) -> None:
    """Notional to the cent, weight to the basis point, findings with severity, blockers first."""
    lab.set_limit("max_notional_per_trade", 5000)
    frame = lab.decisions()
    assert len(frame) == 10 and set(frame["decision"]) == {"REJECT"}
    for notional, weight, findings in frame[["notional", "weight_after", "findings"]].itertuples(
        index=False
    ):
        assert -notional.as_tuple().exponent == 2 and -weight.as_tuple().exponent == 4
        lines = findings.splitlines()
        assert lines[0].startswith("R1 BLOCKER: notional")
        assert any(line.startswith("R8 MINOR: ") for line in lines[1:])


def test_summary_names_the_changes_without_float_noise_or_dicts(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain-text line lists each knob once at its current value and counts the outcomes."""
    lab.set_limit("max_notional_per_trade", Decimal(5000))
    lab.set_limit("max_notional_per_trade", Decimal(10000))
    lab.scale_sizes(Decimal("0.5"))
    lab.decisions()
    line = capsys.readouterr().out.strip()
    assert "max_notional_per_trade 10,000" in line and "5,000" not in line
    assert "size factor 0.5" in line and "{" not in line
    assert re.search(r"\): \d+ (APPROVE|REVIEW|REJECT)(, \d+ (APPROVE|REVIEW|REJECT))*$", line)


def test_view_is_a_formatted_table_without_index(lab: Lab) -> None:
    """The lab's table has no index column, money with currency and weights as percentages."""
    page = lab.view().to_html()
    assert "row_heading" not in page
    assert " USD" in page and "%" in page and "BLOCKER" not in page


def test_moving_a_slider_on_a_callback_thread_changes_the_verdicts(lab: Lab) -> None:
    """A slider moved from another thread (as ipykernel runs widget callbacks) re-judges the
    intents on that thread without a SQLite thread error, and the verdicts follow."""
    box = lab.controls()
    notional = next(w for w in box.children if "wb-max-notional" in w._dom_classes)
    errors: list[BaseException] = []

    def move() -> None:
        try:
            notional.value = 5000.0
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=move)
    worker.start()
    worker.join(timeout=60)
    assert errors == []
    assert lab.policy.limits.max_notional_per_trade == Decimal(5000)
    assert set(lab.decisions()["decision"]) == {"REJECT"}
