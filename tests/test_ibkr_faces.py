"""The whole product on IBKR, end to end against the loopback gateway: ``workbench daily --broker
ibkr`` (the daily notebook through papermill), then ``approve`` and ``submit`` from the CLI, each
a separate process on a wall clock fixed at a trading moment (``tests/wallclock``), the gateway's
clock standing at the same moment. Nothing here is a replay: it is today's live run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from conftest import TRADING_NOW
from wbkit import APPROVER, PASSPHRASE, POLICIES

from workbench import records
from workbench.audit import AuditLog, EventType
from workbench.clock import FixedClock
from workbench.home import create_home
from workbench.lifecycle import OrderState
from workbench.testing import Gateway, GatewayConfig

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
WALL_CLOCK = Path(__file__).resolve().parent / "wallclock"
# What a process's output must never show: ib_async decoder errors, time-outs, tracebacks.
TROUBLE = ("ib_async", "Decoder", "timed out", "Traceback", "Unknown reqId")


def wall_env(at: datetime) -> dict[str, str]:
    """A process environment whose wall clock (CLI and notebook kernel) stands at ``at``."""
    path = os.pathsep.join(p for p in (str(WALL_CLOCK), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "WORKBENCH_TEST_WALL_CLOCK": at.isoformat()}
    for name in ("WORKBENCH_HOME", "WORKBENCH_POLICY_DIR"):
        env.pop(name, None)
    return env


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKBENCH, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        env=wall_env(TRADING_NOW),
    )


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """The loopback gateway, its clock at the trading moment the processes see."""
    with Gateway(GatewayConfig(), start=TRADING_NOW) as gw:
        yield gw


def on_ibkr(gw: Gateway, home: Path) -> tuple[str, ...]:
    """The options that put a command on the IBKR broker (the gateway) and the home."""
    return ("--broker", "ibkr", "--port", str(gw.port), "--home", str(home),
            "--policy-dir", str(POLICIES))  # fmt: skip


def awaiting(home: Path) -> list[str]:
    with AuditLog(home / "workbench.sqlite", FixedClock(TRADING_NOW)) as log:
        found = records.load_all(log)
        return [
            r.proposal_id
            for r in found
            if isinstance(r, records.ProposalRecord) and r.state is OrderState.APPROVAL_REQUESTED
        ]


@pytest.mark.slow
def test_daily_approve_submit_on_ibkr_from_the_command_line(
    gateway: Gateway, tmp_path: Path
) -> None:
    """The scheduled run proposes on the IBKR paper account and its report names it; a person
    approves one proposal and submits it from the CLI: the bracket reaches IB with its orderRef,
    fills once, its stop works, and every output says which broker traded."""
    home = tmp_path / "home"
    assert cli("init", "--home", str(home)).returncode == 0
    added = cli("approver", "add", APPROVER, "--passphrase-stdin", "--home", str(home),
                stdin=PASSPHRASE + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    label = f"IBKR paper account DU1234567 via 127.0.0.1:{gateway.port}"

    daily = cli("daily", *on_ibkr(gateway, home))
    assert daily.returncode == 0, daily.stdout + daily.stderr
    report = Path(daily.stdout.split("report:")[1].split()[0])
    html = report.with_suffix(".html").read_text()
    assert f"{label} (loopback TEST gateway, synthetic prices)" in html
    assert "synthetic (seeded)" not in html  # that is the paper broker's data
    outputs = [
        o.get("text", "") for c in nbformat.read(report, 4).cells for o in c.get("outputs", [])
    ]
    assert not [o for o in outputs if any(t in o for t in TROUBLE)]
    pending = awaiting(home)
    assert pending, "the rebalance proposer should propose on an empty paper account"
    proposal_id = pending[0]

    approve = cli("approve", proposal_id, "--approver", APPROVER, "--passphrase-stdin",
                  *on_ibkr(gateway, home), stdin=PASSPHRASE + "\n")  # fmt: skip
    assert approve.returncode == 0, approve.stdout + approve.stderr
    token = approve.stdout.strip().splitlines()[-1]
    submit = cli("submit", proposal_id, "--token", token, *on_ibkr(gateway, home))
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert label in submit.stdout and "FILLED" in submit.stdout, submit.stdout
    assert not any(t in submit.stdout + submit.stderr for t in TROUBLE)

    refs = {r.fields["orderRef"] for r in gateway.received("placeOrder")}
    assert refs == {f"wb:{proposal_id}"}
    assert len(gateway.executions()) == 1
    with AuditLog(home / "workbench.sqlite", FixedClock(TRADING_NOW)) as log:
        assert len(log.events(proposal_id=proposal_id, types=(EventType.ORDER_FILLED,))) == 1
        assert log.verify().ok
    status = cli("status", *on_ibkr(gateway, home))
    assert f"broker: {label}" in status.stdout, status.stdout + status.stderr


@pytest.mark.slow
def test_cli_refuses_a_live_port_and_connection_options_on_paper(
    gateway: Gateway, tmp_path: Path
) -> None:
    """``--port 7496`` is refused naming the live gate and nothing connects; IBKR connection
    options on the paper broker are bad input."""
    home = create_home(tmp_path / "home")
    with Gateway(GatewayConfig(port=7496), start=TRADING_NOW) as live:
        run = cli("status", "--broker", "ibkr", "--port", "7496", "--home", str(home))
        assert live.received() == []
    assert run.returncode == 1, run.stdout + run.stderr
    assert "refused:" in run.stderr and "live gate" in run.stderr
    run = cli("status", "--port", "4002", "--home", str(home))
    assert run.returncode == 2 and "--broker ibkr" in run.stderr, run.stderr
