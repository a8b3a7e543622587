"""``policies/mcp.yaml``: what a model connected through the MCP server may do, how often and
how much. Frozen and hashed like the other policies (its digest is stamped on every
``ToolCalled`` event); every key is required and nothing falls back to a default. No I/O beyond
reading the file through :func:`workbench.policy.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, StrictInt, StringConstraints, model_validator

from workbench.policy import Config, Seconds, load_config

MCP_POLICY_FILE = "mcp.yaml"

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
CallCount = Annotated[StrictInt, Field(ge=1, le=100_000)]


class RateLimits(Config):
    """Sliding-window limits: calls of any tool in one session, and calls of each tool across
    every session, within ``window_seconds``. ``per_tool`` names every tool the server offers."""

    window_seconds: Seconds
    per_session: CallCount
    per_tool: dict[ToolName, CallCount] = Field(min_length=1)


class PayloadLimits(Config):
    """How big and how deeply nested one call's arguments may be (as JSON text)."""

    max_argument_chars: Annotated[StrictInt, Field(ge=256, le=1_000_000)]
    max_depth: Annotated[StrictInt, Field(ge=2, le=64)]


class ReadLimits(Config):
    """How much one read may return."""

    max_audit_events: Annotated[StrictInt, Field(ge=1, le=1_000)]
    max_proposals: Annotated[StrictInt, Field(ge=1, le=1_000)]
    max_report_chars: Annotated[StrictInt, Field(ge=1_000, le=2_000_000)]


class RebalanceLimits(Config):
    """How many symbols one rebalance request may name."""

    max_symbols: Annotated[StrictInt, Field(ge=1, le=200)]


class McpPolicy(Config):
    """The whole MCP policy; its ``digest`` is the ``limits_hash`` of every ToolCalled."""

    version: Annotated[StrictInt, Field(ge=1)]
    rate_limits: RateLimits
    payload: PayloadLimits
    reads: ReadLimits
    rebalance: RebalanceLimits

    @model_validator(mode="after")
    def _a_tool_never_outruns_its_session(self) -> Self:
        top = self.rate_limits.per_session
        over = sorted(n for n, v in self.rate_limits.per_tool.items() if v > top)
        if over:
            raise ValueError(f"rate_limits.per_tool: {', '.join(over)} above per_session {top}")
        return self


def load_mcp_policy(path: Path) -> McpPolicy:
    """Load ``mcp.yaml`` (a file path, or a folder holding it); ConfigError on any fault."""
    path = Path(path)
    return load_config(McpPolicy, path / MCP_POLICY_FILE if path.is_dir() else path)
