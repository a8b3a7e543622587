"""Gateway fixtures: a loopback gateway per test, the real ib_async client connected to it, and a
log check that fails the test on any ib_async decoder error, unknown message, parse failure or
request time-out (and on any error the gateway itself logs).

A test that provokes such a line on purpose names it: ``@pytest.mark.allow_ib_log("Peer closed")``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from ib_async import IB, Contract, Stock

from testing.gwkit import START, LogCatcher, connect, log_problems
from workbench.testing import Gateway, GatewayConfig

_CATCHER = pytest.StashKey[LogCatcher]()
WATCHED = ("ib_async", "workbench.testing", "asyncio")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_ib_log(*texts): log lines containing these texts do not fail the test"
    )


@pytest.fixture(autouse=True)
def ib_log_check(request: pytest.FixtureRequest) -> Iterator[LogCatcher]:
    """Collect warnings and errors from ib_async, the gateway and asyncio during the test."""
    catcher = LogCatcher()
    catcher.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in WATCHED]
    for logger in loggers:
        logger.addHandler(catcher)
    request.node.stash[_CATCHER] = catcher
    yield catcher
    for logger in loggers:
        logger.removeHandler(catcher)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test itself (not its teardown) when the log shows a protocol problem."""
    result = yield
    catcher = item.stash.get(_CATCHER, None)
    if catcher is not None:
        allowed = tuple(t for m in item.iter_markers("allow_ib_log") for t in m.args)
        problems = log_problems(catcher.records, allowed)
        if problems:
            pytest.fail("protocol problems in the log:\n" + "\n".join(problems), pytrace=False)
    return result


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A started loopback gateway whose clock stands at START."""
    with Gateway(GatewayConfig(), start=START) as gw:
        yield gw


@pytest.fixture
def ib(gateway: Gateway) -> Iterator[IB]:
    """The real ib_async client (clientId 1, RaiseRequestErrors) connected to ``gateway``."""
    client = connect(gateway, client_id=1)
    yield client
    client.disconnect()


@pytest.fixture
def spy(ib: IB) -> Contract:
    """SPY, qualified by the gateway."""
    contract = Stock("SPY", "SMART", "USD")
    ib.qualifyContracts(contract)
    return contract
