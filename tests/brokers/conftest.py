"""Broker tests talk to the loopback gateway (the IBKR adapter): its log check applies here."""

from testing.logcheck import ib_log_check, pytest_configure, pytest_runtest_call  # noqa: F401
