"""The approval panel in a real browser: JupyterLab, headless Debian Chromium, Playwright.

A person opens ``notebooks/approvals.ipynb`` (a parameterised copy on a temp home), runs it, reads
the selected proposal's ticket, types their name and passphrase, clicks Approve then Submit; the
audit log must show the order filled on the paper broker and the panel must still show that order
with its fill. With a wrong passphrase no token is minted; HALT turns the header red. In
``notebooks/explore.ipynb`` every slider re-judges the intents without an error. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import TRADING_NOW
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from playwright.sync_api import Browser, Page, expect, sync_playwright
from wbkit import APPROVER, PASSPHRASE, POLICIES, ROOT, add_approver, intent, open_wb

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.fmt import NEW_YORK
from workbench.home import create_home, db_path, replay_home
from workbench.lifecycle import OrderState

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = ROOT / "notebooks" / "approvals.ipynb"
EXPLORE = ROOT / "notebooks" / "explore.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
# Autosave off (it could write outputs into a notebook), no news pop-up over the panel.
LAB_OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
LAB_START_SECONDS = 60
LAB_STOP_SECONDS = 20
UI_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it serves, its token and the folder it serves."""

    url: str
    token: str
    root: Path

    def notebook_url(self, relative: str, workspace: str) -> str:
        """The notebook in its own workspace, so tabs opened by another test do not reopen."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{relative}?token={self.token}"


# -- the server and the browser (one of each per module) ---------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lab_command(port: int, token: str, root: Path, state: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # Settings live in this test's folders: the venv and ~/.jupyter are left untouched.
        f"--LabApp.app_settings_dir={state / 'app-settings'}",
        f"--LabApp.user_settings_dir={state / 'user-settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


def _lab_env(state: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "IPYTHONDIR": str(state / "ipython"),
    }
    for name in ("WORKBENCH_HOME", "WORKBENCH_POLICY_DIR"):
        env.pop(name, None)  # the notebook's parameters say where, nothing else
    return env


def _wait_until_ready(server: subprocess.Popen[bytes], url: str, server_log: Path) -> None:
    deadline = time.monotonic() + LAB_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{server_log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)  # polling the server's start-up, not an order path
    pytest.fail(f"JupyterLab not ready in {LAB_START_SECONDS} s:\n{server_log.read_text()}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM by pid (the server then shuts its kernels down); SIGKILL if it hangs."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=LAB_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=LAB_STOP_SECONDS)


@contextmanager
def running_lab(
    factory: pytest.TempPathFactory, name: str, env: Mapping[str, str] | None = None
) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token, serving an empty temp folder (its settings and
    state in another), ``env`` over its environment; stopped on exit."""
    root, state = factory.mktemp(f"{name}-root"), factory.mktemp(f"{name}-state")
    (state / "app-settings").mkdir()
    (state / "app-settings" / "overrides.json").write_text(json.dumps(LAB_OVERRIDES))
    port, token = _free_port(), secrets.token_hex(16)
    server_log = state / "server.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            _lab_command(port, token, root, state),
            env={**_lab_env(state), **(env or {})},
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(server, f"{url}/api/status?token={token}", server_log)
        yield Lab(url, token, root)
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab serving an empty temp folder."""
    with running_lab(tmp_path_factory, "lab") as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright; missing Chromium fails, never skips."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's Chromium. Install it with "
            "`apt-get install -y chromium fonts-liberation` (never `playwright install`)."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=UI_TIMEOUT_MS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page, with bounded waits."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- the scenario's parts --------------------------------------------------------------------


def sandbox(home: Path) -> Path:
    """The replay sandbox the panel's replay clock (``clock_at``) opens: never the live home."""
    return replay_home(home, TRADING_NOW.astimezone(NEW_YORK).date())


def pending_proposal(home: Path, symbols: tuple[str, ...] = ("SPY",)) -> str:
    """A registered approver and limit buys awaiting approval, made by the real facade in the
    sandbox of the replayed day; the id of the last one."""
    with open_wb(sandbox(home), FixedClock(TRADING_NOW)) as wb:
        add_approver(wb)
        outcomes = [wb.run(intent(wb, symbol), actor="test") for symbol in symbols]
    assert all(o.state is OrderState.APPROVAL_REQUESTED for o in outcomes), outcomes
    return outcomes[-1].proposal_id


def notebook_copy(lab: Lab, folder: str, home: Path, notebook: Path = NOTEBOOK) -> str:
    """A notebook, parameterised for ``home`` at a trading moment, copied under the served
    folder."""
    nb = load_notebook_node(str(notebook))
    parameters = {
        "home": str(home),
        "broker": "paper",
        "policy_dir": str(POLICIES),
        "clock_at": TRADING_NOW.isoformat(),
    }
    nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    assert nb.metadata.kernelspec.name == "python3"
    (lab.root / folder).mkdir()
    nbformat.write(nb, lab.root / folder / notebook.name)
    return f"{folder}/{notebook.name}"


def run_all(page: Page, url: str, ready: str = "button.wb-approve") -> None:
    """Open the notebook, wait for its kernel, Run All from the Run menu, wait for ``ready``."""
    page.goto(url)
    wait_for_idle_kernel(page)
    page.locator("#jp-menu-panel").get_by_text("Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    page.locator(ready).first.wait_for(state="visible")
    wait_for_idle_kernel(page)


def wait_for_idle_kernel(page: Page) -> None:
    """Wait until Lab's status bar says the notebook's kernel is Idle."""
    page.locator("#jp-main-statusbar >> text=Idle").wait_for()


def choose(page: Page, symbol: str, proposal_id: str) -> None:
    """Pick the proposal in the panel's list by its row (symbol first), as a person would, and
    wait until its ticket is the one the buttons act on."""
    option = page.locator(".wb-proposal select option", has_text=symbol).first
    page.locator(".wb-proposal select").select_option(label=option.inner_text())
    expect(page.locator(".wb-acting-on")).to_contain_text(proposal_id)


def credential(page: Page, name: str, passphrase: str) -> None:
    page.locator(".wb-approver input").fill(name)
    page.locator(".wb-passphrase input").fill(passphrase)


def status(page: Page, text: str) -> str:
    """Wait for the panel's status line to say ``text``; return all of it."""
    line = page.locator(".wb-status", has_text=text)
    line.wait_for(state="visible")
    return line.inner_text()


def event_types(home: Path, proposal_id: str) -> list[str]:
    """The audit log's event types for one proposal, oldest first."""
    with AuditLog(db_path(sandbox(home)), FixedClock(TRADING_NOW)) as log:
        return [str(e.type) for e in log.events(proposal_id=proposal_id)]


def screenshot(page: Page, name: str, focus: str = "button.wb-halt") -> None:
    """Save what the page shows, with ``focus`` (the panel's HALT button) in view when there is
    one, as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    target = page.locator(focus).first
    if target.count():
        target.scroll_into_view_if_needed(timeout=5_000)
    page.screenshot(path=ARTIFACTS / name, timeout=10_000)


@contextmanager
def screenshot_on_failure(page: Page, name: str) -> Iterator[None]:
    """When the block fails, save what the page showed then (``<name>-failed.png``)."""
    try:
        yield
    except BaseException:
        with suppress(Exception):  # the test's own error is the one to report
            screenshot(page, f"{name}-failed.png")
        raise


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.browser
def test_approve_then_submit_in_browser_fills_the_order_on_the_paper_broker(
    browser: Browser, lab: Lab, page: Page, tmp_path: Path
) -> None:
    """The selected proposal's ticket shows its stop, money at risk, before → after and every
    check; Approve then Submit fills it, the selection stays on it and the fill shows."""
    home = tmp_path / "home"
    proposal_id = pending_proposal(home, ("QQQ", "IEF", "SPY"))
    url = lab.notebook_url(notebook_copy(lab, "approve", home), "approve")
    with screenshot_on_failure(page, "approvals-panel"):
        run_all(page, url)
        choose(page, "SPY", proposal_id)
        ticket = page.locator(".wb-detail .wb-ticket")
        expect(ticket.locator(".wb-ticket-head")).to_contain_text("BUY 10 SPY LMT")
        expect(ticket.locator(".wb-line-stop")).to_contain_text("ATR(14)")
        expect(ticket.locator(".wb-line-risk")).to_contain_text("of NAV")
        expect(ticket.locator(".wb-ticket-changes")).to_contain_text("Buying power")
        expect(ticket.locator(".wb-ticket-changes")).to_contain_text("→")
        expect(ticket.locator(".wb-check")).to_have_count(19)  # R1..R19, each finding a row
        expect(page.locator(".wb-acting-on")).to_contain_text(proposal_id)
        screenshot(page, "approvals-ticket.png", ".wb-detail")
        credential(page, APPROVER, PASSPHRASE)
        page.locator("button.wb-approve").click()
        assert proposal_id in status(page, f"Approved {proposal_id}")
        assert "EST" in status(page, "expires")
        assert page.locator(".wb-passphrase input").input_value() == ""
        page.locator("button.wb-submit").click()
        said = status(page, f"Submitted {proposal_id}")
        assert "order FILLED" in said and "commission 1.00 USD" in said and "WORKING" in said
        selected = page.locator(".wb-proposal select").input_value()
        assert selected.startswith("SPY") and "FILLED" in selected, selected
        expect(page.locator(".wb-acting-on")).to_contain_text(proposal_id)
        expect(ticket.locator(".wb-ticket-exec")).to_contain_text("FILLED")
        expect(ticket.locator(".wb-ticket-exec")).to_contain_text("stop SELL 10 SPY STP")
        screenshot(page, "approvals-panel.png")
    types = event_types(home, proposal_id)
    assert EventType.APPROVAL_GRANTED in types, types
    assert EventType.ORDER_SUBMITTED in types, types
    assert EventType.ORDER_FILLED in types, types


@pytest.mark.browser
def test_wrong_passphrase_in_browser_mints_no_token(
    browser: Browser, lab: Lab, page: Page, tmp_path: Path
) -> None:
    """Approve with a wrong passphrase shows a refusal and records no ApprovalGranted."""
    home = tmp_path / "home"
    proposal_id = pending_proposal(home)
    url = lab.notebook_url(notebook_copy(lab, "refuse", home), "refuse")
    with screenshot_on_failure(page, "approvals-refused"):
        run_all(page, url)
        choose(page, "SPY", proposal_id)
        credential(page, APPROVER, "not the right passphrase")
        page.locator("button.wb-approve").click()
        assert "wrong approver name or passphrase" in status(page, "Approval refused")
        screenshot(page, "approvals-refused.png")
        page.locator("button.wb-submit").click()
        status(page, "No token for this proposal")
    types = event_types(home, proposal_id)
    assert EventType.APPROVAL_CREDENTIAL_REFUSED in types, types
    assert EventType.APPROVAL_GRANTED not in types, types
    assert EventType.ORDER_SUBMITTED not in types, types


@pytest.mark.browser
def test_halt_in_browser_turns_the_header_red(
    browser: Browser, lab: Lab, page: Page, tmp_path: Path
) -> None:
    """HALT with a name halts trading and the header turns red, saying HALTED."""
    home = tmp_path / "home"
    pending_proposal(home)
    url = lab.notebook_url(notebook_copy(lab, "halt", home), "halt")
    with screenshot_on_failure(page, "approvals-halted"):
        run_all(page, url)
        header = page.locator(".wb-header-box")
        expect(header).to_contain_text("ACTIVE")
        assert "wb-halted" not in (header.get_attribute("class") or "")
        page.locator(".wb-approver input").fill("ops")
        page.locator("button.wb-halt").click()
        expect(page.locator(".wb-header-box.wb-halted")).to_contain_text("TRADING HALTED")
        colour = page.locator(".wb-header-box").evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(179, 38, 30)", colour
        status(page, "Trading HALTED by ops")
        screenshot(page, "approvals-halted.png", ".wb-header-box")
    with AuditLog(db_path(sandbox(home)), FixedClock(TRADING_NOW)) as log:
        assert [e.type for e in log.events(types=(EventType.KILL_SWITCH_ACTIVATED,))] == [
            EventType.KILL_SWITCH_ACTIVATED
        ]


def verdicts(page: Page) -> str:
    """The explore table's text once the kernel is idle again."""
    wait_for_idle_kernel(page)
    return page.locator(".wb-explore-table").inner_text()


def nudge(page: Page, slider: str, key: str = "ArrowLeft") -> None:
    """Move one explore slider a step with the keyboard, as a person would."""
    handle = page.locator(f".{slider} .noUi-handle")
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press(key)


@pytest.mark.browser
def test_explore_sliders_rejudge_without_error(
    browser: Browser, lab: Lab, page: Page, tmp_path: Path
) -> None:
    """Each explore slider, moved in the browser, re-judges the intents without an error; the
    verdicts change when the limits say they should."""
    home = tmp_path / "home"
    create_home(sandbox(home))  # the replay time opens that day's sandbox, never the live home
    url = lab.notebook_url(notebook_copy(lab, "explore", home, EXPLORE), "explore")
    table = page.locator(".wb-explore-table")
    with screenshot_on_failure(page, "explore-sliders"):
        run_all(page, url, ".wb-max-notional .noUi-handle")
        expect(table).to_contain_text("REVIEW")  # max notional 10,000, sizes ×0.5: none over
        nudge(page, "wb-max-notional")  # 9,000: every ~10,000 order is now over the cap
        expect(table).not_to_contain_text("REVIEW")
        assert "R1 BLOCKER: notional" in verdicts(page)
        nudge(page, "wb-size")  # sizes ×0.4: ~8,000 orders fit under 9,000 again
        expect(table).to_contain_text("REVIEW")
        before = verdicts(page)
        nudge(page, "wb-max-weight")  # 9%: far above any ~1% weight, verdicts unchanged
        expect(page.locator(".wb-max-weight .widget-readout")).to_have_text("9%")
        assert verdicts(page).count("REVIEW") == before.count("REVIEW")
        page_text = page.locator(".jp-NotebookPanel").inner_text()
        assert "Error" not in page_text and "Traceback" not in page_text
        assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        screenshot(page, "explore-sliders.png", ".wb-explore-table")


def test_ci_installs_the_chromium_the_readme_names() -> None:
    """.ci/run installs Chromium with the exact apt command the README gives (CI runs no more)."""
    command = "apt-get install -y --no-install-recommends chromium fonts-liberation"
    assert command in (ROOT / ".ci" / "run").read_text()
    assert command in (ROOT / "README.md").read_text()
