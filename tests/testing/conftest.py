"""Gateway fixtures: a loopback gateway per test, the real ib_async client connected to it, and
the log check (``testing.logcheck``) that fails the test on any ib_async decoder error, unknown
message, parse failure or request time-out (and on any error the gateway itself logs).

A test that provokes such a line on purpose names it: ``@pytest.mark.allow_ib_log("Peer closed")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ib_async import IB, Contract, Stock

from testing.gwkit import START, LogCatcher, connect
from workbench.testing import Gateway, GatewayConfig


@pytest.fixture(autouse=True)
def gateway_log_checked(ib_log_check: LogCatcher) -> LogCatcher:
    """Every gateway test runs under the log check (``testing.logcheck``)."""
    return ib_log_check


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
