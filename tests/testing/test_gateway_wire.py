"""The gateway's wire format and its boundaries: frame layouts that must match ib_async exactly,
and the rule that the gateway never imports ib_async (nor the library the gateway)."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from workbench.testing import order_codec, replies
from workbench.testing.book import load_universe
from workbench.testing.orders import WorkingOrder
from workbench.testing.wire import (
    choose_server_version,
    fmt,
    frame,
    parse_version_range,
    split_frames,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workbench"


def _order() -> WorkingOrder:
    spy = load_universe()["SPY"]
    return WorkingOrder(1, 1, 5, spy, "SMART", "BUY", Decimal(10), "LMT", Decimal(590), None)


@pytest.mark.parametrize(("version", "fields"), [(176, 128), (177, 127), (178, 127)])
def test_open_order_has_the_field_count_ib_async_decodes(version: int, fields: int) -> None:
    """openOrder: 128 fields at 176, one fewer from 177 (no faProfile)."""
    assert len(order_codec.open_order(_order(), version).fields) == fields


def test_fixed_size_messages_have_exactly_their_size() -> None:
    """tickPrice 7, position 16, portfolio 20, commissionReport 8, error 6 fields."""
    spy = load_universe()["SPY"]
    one = Decimal(1)
    assert len(replies.tick_price(1, 1, one, one).fields) == 7
    assert len(replies.position("DU1", spy, one, one).fields) == 16
    assert len(replies.portfolio("DU1", spy, (one, one, one, one, one)).fields) == 20
    assert len(replies.error(-1, 2104, "ok").fields) == 6


def test_frames_round_trip_and_decimals_print_plainly() -> None:
    """A frame splits back into its fields; Decimals never print in exponent form."""
    buffer = bytearray(frame(["3", "SPY", ""]) + frame(["49", "1"]))
    assert split_frames(buffer) == [["3", "SPY", ""], ["49", "1"]]
    assert fmt(Decimal("100.00")) == "100" and fmt(Decimal("0.50")) == "0.5"
    assert fmt(True) == "1" and fmt(None) == ""


def test_server_version_is_chosen_within_the_clients_range() -> None:
    """176 by default; None follows the client up to 178; impossible ranges are refused."""
    assert parse_version_range("v157..178 +PACEAPI") == (157, 178)
    assert choose_server_version((157, 178), 176) == 176
    assert choose_server_version((157, 177), None) == 177
    assert choose_server_version((157, 175), None) is None
    with pytest.raises(ValueError):
        parse_version_range("hello")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_gateway_never_imports_ib_async() -> None:
    """The server side writes the protocol itself: no module of workbench/testing imports it."""
    for path in (PACKAGE / "testing").glob("*.py"):
        assert not any(name.startswith("ib_async") for name in _imports(path)), path


def test_only_the_cli_imports_the_gateway() -> None:
    """The library never depends on its test double; only the `workbench gateway` face does."""
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.parts or path.name == "cli.py":
            continue
        assert not any(n.startswith("workbench.testing") for n in _imports(path)), path
