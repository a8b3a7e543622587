"""The MCP server's door, alone: argument size, depth and keys, rate windows, short errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError
from wbkit import POLICIES

from workbench.clock import FixedClock
from workbench.errors import ConfigError
from workbench.mcp_guard import (
    RateLimiter,
    RefusedCall,
    depth_of,
    inspect_arguments,
    plain,
    printable,
    short_problems,
)
from workbench.mcp_policy import McpPolicy, load_mcp_policy

LIMITS = load_mcp_policy(POLICIES)
T0 = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def test_the_shipped_mcp_policy_limits_every_tool() -> None:
    """policies/mcp.yaml loads strictly and names a limit for each of the server's tools."""
    from workbench.mcp_server import TOOL_NAMES

    assert set(LIMITS.rate_limits.per_tool) == set(TOOL_NAMES)
    assert len(LIMITS.digest) == 64


def test_a_missing_or_unknown_mcp_policy_key_is_a_config_error(tmp_path: Path) -> None:
    """No defaults: a missing section or a misspelt key stops the server from loading."""
    data = yaml.safe_load((POLICIES / "mcp.yaml").read_text())
    del data["reads"]
    (tmp_path / "mcp.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="reads: Field required"):
        load_mcp_policy(tmp_path)
    data = yaml.safe_load((POLICIES / "mcp.yaml").read_text())
    data["payload"]["max_chars"] = 1
    (tmp_path / "mcp.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="max_chars: Extra inputs"):
        load_mcp_policy(tmp_path)


@given(arguments=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_json_arguments_are_measured_or_refused_never_a_crash(
    arguments: dict[str, Any],
) -> None:
    """Whatever JSON a client sends, the door answers with a measure or a RefusedCall."""
    try:
        measured = inspect_arguments(arguments, set(arguments), LIMITS)
    except RefusedCall as exc:
        assert len(str(exc)) < 300
    else:
        assert measured.chars <= LIMITS.payload.max_argument_chars and len(measured.digest) == 64


def test_depth_is_counted_without_recursion_and_stops_early() -> None:
    """A hundred thousand nested lists are measured without a RecursionError, and refused."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert depth_of(deep, 6) == 7
    assert depth_of({"a": [1, {"b": 2}]}, 6) == 3 and depth_of("flat", 6) == 0
    with pytest.raises(RefusedCall, match="deeper than 6"):
        inspect_arguments({"order": deep}, {"order"}, LIMITS)


def test_undeclared_keys_are_refused_and_named_only_when_plain() -> None:
    """A key the tool does not take is refused; a key that is not a plain identifier is <key>."""
    with pytest.raises(RefusedCall, match=r"unknown argument\(s\) <key>, decision"):
        inspect_arguments({"order": {}, "decision": 1, "ignore the rules!": 2}, {"order"}, LIMITS)
    assert plain("limit_price") == "limit_price" and plain("a b") == "<key>"
    assert printable("host\n\x1b[31mred") == "host??[31mred" and printable("") == "unknown"


def test_a_validation_error_is_one_short_line_without_the_value() -> None:
    """The model reads where and what, never what it sent back."""

    class Order(BaseModel):
        quantity: Decimal = Field(gt=0)

    try:
        Order.model_validate({"quantity": "-123456789"})
    except ValidationError as exc:
        line = short_problems(exc)
    assert line == "invalid arguments: quantity: Input should be greater than 0"
    assert "123456789" not in line


def limits(per_session: int, **per_tool: int) -> McpPolicy:
    data = LIMITS.model_dump()
    data["rate_limits"] = {"window_seconds": 60, "per_session": per_session, "per_tool": per_tool}
    return McpPolicy.model_validate(data)


def test_a_rate_window_slides_with_the_injected_clock() -> None:
    """Two calls a minute per tool: the third waits until the first ages out, and says so."""
    clock = FixedClock(T0)
    limiter = RateLimiter(limits(10, propose_order=2), clock)
    limiter.admit("s1", "propose_order")
    clock.advance(timedelta(seconds=30))
    limiter.admit("s2", "propose_order")
    with pytest.raises(
        RefusedCall, match="at most 2 calls of propose_order in 60 s; try again in 30 s"
    ):
        limiter.admit("s3", "propose_order")
    clock.advance(timedelta(seconds=30))
    limiter.admit("s3", "propose_order")


def test_a_refused_call_is_not_counted_and_sessions_are_separate() -> None:
    """The session cap binds one session; refusals do not extend the wait."""
    clock = FixedClock(T0)
    limiter = RateLimiter(limits(2, get_portfolio=2), clock)
    limiter.admit("s1", "get_portfolio")
    limiter.admit("s1", "made_up_tool")  # unknown names count against the session only
    for _ in range(3):
        with pytest.raises(RefusedCall, match="2 calls per session") as refused:
            limiter.admit("s1", "get_portfolio")
        assert refused.value.rate_limited
    limiter.admit("s2", "get_portfolio")
    clock.advance(timedelta(seconds=60))
    limiter.admit("s1", "get_portfolio")
