"""The approval panel on IBKR in a real browser: JupyterLab (its kernels on a wall clock fixed at a
trading moment, ``tests/wallclock``), headless Debian Chromium, Playwright, and the kernel's IBKR
adapter talking to the loopback gateway over a socket. A person approves and submits; the bracket
reaches the gateway with the proposal's orderRef, fills once, and the panel says which account
traded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import TRADING_NOW
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from playwright.sync_api import Browser, Page, expect
from test_browser import (
    NOTEBOOK,
    Lab,
    browser,  # noqa: F401  (the browser fixtures, shared with test_browser)
    choose,
    credential,
    page,  # noqa: F401
    run_all,
    running_lab,
    screenshot,
    screenshot_on_failure,
    status,
)
from test_ibkr_faces import wall_env
from wbkit import APPROVER, PASSPHRASE, POLICIES, add_approver, intent

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.lifecycle import OrderState
from workbench.testing import Gateway, GatewayConfig
from workbench.workbench import Workbench


@pytest.fixture(scope="module")
def ibkr_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab whose kernels see the wall clock at TRADING_NOW (the gateway's time)."""
    with running_lab(tmp_path_factory, "ibkr-lab", wall_env(TRADING_NOW)) as served:
        yield served


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with Gateway(GatewayConfig(), start=TRADING_NOW) as gw:
        yield gw


def pending_on_ibkr(home: Path, gw: Gateway) -> str:
    """An approver and a limit buy of SPY awaiting approval, proposed through the facade on the
    IBKR broker (client id 41); its id."""
    with Workbench.open(home, "ibkr", policy_dir=POLICIES, clock=FixedClock(TRADING_NOW),
                        port=gw.port, client_id=41, create=True) as wb:  # fmt: skip
        add_approver(wb)
        outcome = wb.run(intent(wb, "SPY"), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED, outcome
    return outcome.proposal_id


def panel_copy(lab: Lab, home: Path, gw: Gateway) -> str:
    """The approvals notebook on the IBKR broker (the gateway, client id 42), live: no replay
    clock, the kernel's wall clock is the trading moment."""
    parameters = {"home": str(home), "broker": "ibkr", "policy_dir": str(POLICIES),
                  "port": gw.port, "client_id": 42}  # fmt: skip
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), parameters,
                               kernel_name="python3", language="python")  # fmt: skip
    (lab.root / "ibkr").mkdir()
    nbformat.write(nb, lab.root / "ibkr" / NOTEBOOK.name)
    return f"ibkr/{NOTEBOOK.name}"


@pytest.mark.browser
def test_approve_then_submit_in_browser_fills_on_the_ibkr_paper_account(
    browser: Browser,  # noqa: F811  (test_browser's fixture)
    ibkr_lab: Lab,
    page: Page,  # noqa: F811  (test_browser's fixture)
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    """In the panel on IBKR, Approve then Submit sends the bracket to IB: the parent fills once,
    the stop works, the header names the IBKR paper account and the fill shows."""
    home = tmp_path / "home"
    proposal_id = pending_on_ibkr(home, gateway)
    url = ibkr_lab.notebook_url(panel_copy(ibkr_lab, home, gateway), "ibkr")
    label = f"IBKR paper account DU1234567 via 127.0.0.1:{gateway.port}"
    with screenshot_on_failure(page, "approvals-ibkr"):
        run_all(page, url)
        expect(page.locator(".wb-header-box")).to_contain_text(label)
        choose(page, "SPY", proposal_id)
        credential(page, APPROVER, PASSPHRASE)
        page.locator("button.wb-approve").click()
        status(page, f"Approved {proposal_id}")
        page.locator("button.wb-submit").click()
        said = status(page, f"Submitted {proposal_id}")
        assert "order FILLED" in said and "WORKING" in said, said
        ticket = page.locator(".wb-detail .wb-ticket")
        expect(ticket.locator(".wb-ticket-exec")).to_contain_text("stop SELL 10 SPY STP")
        # Nothing on the kernel's stderr: no ib_async error, time-out or traceback in the panel.
        expect(page.locator("[data-mime-type='application/vnd.jupyter.stderr']")).to_have_count(0)
        screenshot(page, "approvals-ibkr.png")
    assert {r.fields["orderRef"] for r in gateway.received("placeOrder")} == {f"wb:{proposal_id}"}
    assert len(gateway.executions()) == 1
    with AuditLog(home / "workbench.sqlite", FixedClock(TRADING_NOW)) as log:
        filled = log.events(proposal_id=proposal_id, types=(EventType.ORDER_FILLED,))
        assert len(filled) == 1 and label in filled[0].payload["broker"]
