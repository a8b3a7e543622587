"""Shared fixtures: a fake clock on a normal NYSE trading day, and a fresh home per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from testing.logcheck import ib_log_check, pytest_configure, pytest_runtest_call  # noqa: F401

from workbench.audit import AuditLog
from workbench.clock import FixedClock
from workbench.home import create_home
from workbench.workbench import Workbench

# Two shared cores under load: judge examples by what they find, never by how long they take.
settings.register_profile(
    "workbench", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("workbench")

# Wednesday 18 November 2026, 15:30 UTC = 10:30 in New York: the market is open.
TRADING_NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    """A clock that stands still at ``TRADING_NOW`` until a test moves it."""
    return FixedClock(TRADING_NOW)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh workbench home: the folder and its empty database (what `workbench init` makes),
    private (0700, the database 0600) as the workbench creates its own."""
    return create_home(tmp_path / "home")


@pytest.fixture
def log(home: Path, clock: FixedClock) -> Iterator[AuditLog]:
    """An audit log in a real SQLite file under ``home``."""
    audit = AuditLog(home / "workbench.sqlite", clock=clock)
    yield audit
    audit.close()


@pytest.fixture
def wall_clock_at_trading_now(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """The wall clock of every facade a command opens in this process, fixed on a trading
    morning (time is outside our control)."""
    import workbench.workbench as workbench_module

    clock = FixedClock(TRADING_NOW)
    monkeypatch.setattr(workbench_module, "SystemClock", lambda: clock)
    return clock


@pytest.fixture
def anyio_backend() -> str:
    """The MCP tests (``pytest.mark.anyio``) run on asyncio."""
    return "asyncio"


@pytest.fixture
def wb(home: Path, clock: FixedClock) -> Iterator[Workbench]:
    """The real facade on the paper broker with one registered approver (``wbkit.APPROVER``)."""
    from wbkit import add_approver, open_wb

    with open_wb(home, clock) as bench:
        add_approver(bench)
        yield bench
