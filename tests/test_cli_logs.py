"""Library log lines on a command's terminal: held while it runs, dropped when an expected
failure says it in one line, written named as the library's otherwise; what the workbench
reports itself is never written twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from workbench import cli
from workbench.cli_logs import LibraryLines, library_lines
from workbench.errors import BrokerUnavailableError


@pytest.fixture
def lines() -> Iterator[LibraryLines]:
    """The ib_async logger's terminal handler, removed again after the test."""
    parent = logging.getLogger("ib_async")
    level, propagate = parent.level, parent.propagate
    handler = library_lines()
    try:
        yield handler
    finally:
        parent.removeHandler(handler)
        parent.setLevel(level)
        parent.propagate = propagate


def test_ib_async_lines_are_named_and_what_the_workbench_says_is_not_said_twice(
    capsys: pytest.CaptureFixture[str], lines: LibraryLines
) -> None:
    """On the terminal an ib_async error is named as ib_async's; IB's order answers that the
    workbench reports itself (a cancel's 202, a 201 reject) are not printed twice."""
    wrapper = logging.getLogger("ib_async.wrapper")
    assert library_lines() is lines  # one per process
    lines.hold()
    wrapper.error("Error 202, reqId 7: Order Canceled - reason:")
    wrapper.error("Error 201, reqId 8: Order rejected - reason:no permissions")
    wrapper.error("Error handling fields: 'x'")
    lines.let_through()
    assert capsys.readouterr().err == "ib_async.wrapper ERROR: Error handling fields: 'x'\n"


def test_an_expected_failure_drops_the_librarys_lines_about_it(
    capsys: pytest.CaptureFixture[str], lines: LibraryLines
) -> None:
    """A command that ends in a refusal prints its own one line only: what ib_async logged on
    the way (a refused connection) is held and then dropped."""
    client = logging.getLogger("ib_async.client")

    def refused(_: object) -> int:
        client.error("API connection failed: ConnectionRefusedError(111)")
        client.error("Make sure API port on TWS/IBG is open")
        raise BrokerUnavailableError("cannot reach IB Gateway/TWS at 127.0.0.1:4002")

    args = cli.build_parser().parse_args(["gateway"])  # a command that opens no home
    args.handler = refused
    assert cli.run_command(args) == 1
    assert capsys.readouterr().err == "refused: cannot reach IB Gateway/TWS at 127.0.0.1:4002\n"


def test_a_command_that_succeeds_writes_them_when_it_ends(
    capsys: pytest.CaptureFixture[str], lines: LibraryLines
) -> None:
    """Without an expected failure, what ib_async said is written (named) when the command ends,
    and, once let through, as it comes; a later command starts holding again."""
    client = logging.getLogger("ib_async.client")

    def works(_: object) -> int:
        client.warning("a warning worth reading")
        assert capsys.readouterr().err == ""  # held while the command runs
        return 0

    args = cli.build_parser().parse_args(["gateway"])
    args.handler = works
    assert cli.run_command(args) == 0
    assert capsys.readouterr().err == "ib_async.client WARNING: a warning worth reading\n"
    client.warning("after the command")  # still let through until the next one holds
    assert capsys.readouterr().err == "ib_async.client WARNING: after the command\n"
    lines.hold()
    client.warning("held again")
    assert capsys.readouterr().err == ""
    lines.drop_held()
    lines.let_through()
    assert capsys.readouterr().err == ""
