"""The approval panel in a real browser: JupyterLab, headless Debian Chromium, Playwright.

A person opens ``notebooks/approvals.ipynb`` (a parameterised copy on a temp home), runs it, types
their name and passphrase, clicks Approve then Submit; the audit log must show the order filled on
the paper broker. With a wrong passphrase no token is minted. Screenshots go to ``test-artifacts/``.
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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import TRADING_NOW
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from playwright.sync_api import Browser, Page, sync_playwright
from wbkit import APPROVER, PASSPHRASE, POLICIES, ROOT, add_approver, intent, open_wb

from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.home import db_path, replay_home
from workbench.lifecycle import OrderState
from workbench.replay import NEW_YORK

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token, serving an empty temp folder."""
    root, state = tmp_path_factory.mktemp("lab-root"), tmp_path_factory.mktemp("lab-state")
    (state / "app-settings").mkdir()
    (state / "app-settings" / "overrides.json").write_text(json.dumps(LAB_OVERRIDES))
    port, token = _free_port(), secrets.token_hex(16)
    server_log = state / "server.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            _lab_command(port, token, root, state),
            env=_lab_env(state),
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


def pending_proposal(home: Path) -> str:
    """A registered approver and one SPY limit buy awaiting approval, made by the real facade
    in the sandbox of the replayed day."""
    with open_wb(sandbox(home), FixedClock(TRADING_NOW)) as wb:
        add_approver(wb)
        outcome = wb.run(intent(wb, "SPY"), actor="test")
    assert outcome.state is OrderState.APPROVAL_REQUESTED, outcome
    return outcome.proposal_id


def notebook_copy(lab: Lab, folder: str, home: Path) -> str:
    """The approvals notebook, parameterised for ``home``, copied under the served folder."""
    nb = load_notebook_node(str(NOTEBOOK))
    parameters = {
        "home": str(home),
        "broker": "paper",
        "policy_dir": str(POLICIES),
        "clock_at": TRADING_NOW.isoformat(),
    }
    nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    assert nb.metadata.kernelspec.name == "python3"
    (lab.root / folder).mkdir()
    nbformat.write(nb, lab.root / folder / NOTEBOOK.name)
    return f"{folder}/{NOTEBOOK.name}"


def run_all(page: Page, url: str) -> None:
    """Open the notebook, wait for its kernel, Run All from the Run menu, wait for the panel."""
    page.goto(url)
    wait_for_idle_kernel(page)
    page.locator("#jp-menu-panel").get_by_text("Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    page.locator("button.wb-approve").wait_for(state="visible")
    wait_for_idle_kernel(page)


def wait_for_idle_kernel(page: Page) -> None:
    """Wait until Lab's status bar says the notebook's kernel is Idle."""
    page.locator("#jp-main-statusbar >> text=Idle").wait_for()


def choose(page: Page, proposal_id: str) -> None:
    """Pick the proposal in the panel's dropdown (by its id at the start of the label)."""
    option = page.locator(".wb-proposal select option", has_text=proposal_id).first
    page.locator(".wb-proposal select").select_option(label=option.inner_text())


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


def screenshot(page: Page, name: str) -> None:
    """Save what the page shows, with the panel in view when there is one, as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    halt = page.locator("button.wb-halt")
    if halt.count():
        halt.scroll_into_view_if_needed(timeout=5_000)
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
    """Typing the passphrase, Approve, then Submit in the browser fills the order (audit log)."""
    home = tmp_path / "home"
    proposal_id = pending_proposal(home)
    url = lab.notebook_url(notebook_copy(lab, "approve", home), "approve")
    with screenshot_on_failure(page, "approvals-panel"):
        run_all(page, url)
        choose(page, proposal_id)
        credential(page, APPROVER, PASSPHRASE)
        page.locator("button.wb-approve").click()
        assert proposal_id in status(page, f"Approved {proposal_id}")
        assert page.locator(".wb-passphrase input").input_value() == ""
        page.locator("button.wb-submit").click()
        assert "order FILLED" in status(page, f"Submitted {proposal_id}")
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
        choose(page, proposal_id)
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


def test_ci_installs_the_chromium_the_readme_names() -> None:
    """.ci/run installs Chromium with the exact apt command the README gives (CI runs no more)."""
    command = "apt-get install -y --no-install-recommends chromium fonts-liberation"
    assert command in (ROOT / ".ci" / "run").read_text()
    assert command in (ROOT / "README.md").read_text()
