"""The log check shared by every test that talks to the loopback gateway: it fails the test on any
ib_async decoder error, "unknown message"/parse failure, request time-out, ``Unknown reqId`` /
``No order found`` line, or any error logged by the gateway, the IBKR adapter or asyncio.

The root conftest registers the hook and the fixture; a test (or a folder's autouse fixture) turns
the check on by using the ``ib_log_check`` fixture (``pytest.mark.usefixtures``).
A test that provokes such a line on purpose names it: ``@pytest.mark.allow_ib_log("text")``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from testing.gwkit import LogCatcher, log_problems

_CATCHER = pytest.StashKey[LogCatcher]()
WATCHED = ("ib_async", "workbench.testing", "workbench.brokers", "asyncio")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_ib_log(*texts): log lines containing these texts do not fail the test"
    )


@pytest.fixture
def ib_log_check(request: pytest.FixtureRequest) -> Iterator[LogCatcher]:
    """Collect warnings and errors from ib_async, the gateway, the adapter and asyncio."""
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
