"""The MCP server's resources and prompt: the policies, the day's report, how to propose.

Resources are read-only documents a host may attach for the model: the risk policy and the MCP
policy (JSON, with their hashes), and the daily report of a day as its visible text, marked as
untrusted data (it quotes proposals' reasons). The prompt ``how_to_propose`` explains the
proposal format and the gate's rules from the policy in force. No tool here: nothing is written.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from workbench.daily import NOTEBOOK_NAME
from workbench.home import is_replay_home
from workbench.mcp_policy import McpPolicy
from workbench.mcp_text import html_text, proposal_prompt
from workbench.mcp_views import UNTRUSTED
from workbench.proposer import Proposer

if TYPE_CHECKING:
    from workbench.mcp_server import WorkbenchMCP

REPORT_HTML = Path(NOTEBOOK_NAME).with_suffix(".html").name
MAX_REPORT_BYTES = 32 * 1024 * 1024  # a report larger than this is not a report


def report_path(home: Path, day: date) -> Path | None:
    """Where ``workbench daily`` leaves the day's HTML report: ``<home>/<day>/`` for a live
    home, the sandbox itself for a replay sandbox (which holds its own day only: None else)."""
    if is_replay_home(home):
        return home / REPORT_HTML if home.name == day.isoformat() else None
    return home / day.isoformat() / REPORT_HTML


def report_document(home: Path, day: date, limit: int) -> dict[str, Any]:
    """The day's report as its visible text, marked untrusted; says so when there is none."""
    path = report_path(home, day)
    source = f"daily report {day.isoformat()}"
    if path is None or not path.is_file():
        note = f"no report for {day.isoformat()} yet (workbench daily writes it)"
        return {"day": day.isoformat(), "report": None, "note": note}
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise ResourceError(f"the report of {day.isoformat()} is too large to read here")
    text, cut = html_text(path.read_text(encoding="utf-8", errors="replace"), limit)
    note = f"cut at {limit:,} characters" if cut else "whole"
    return {"day": day.isoformat(), "note": note,
            "report": {"kind": UNTRUSTED, "source": source, "text": text}}  # fmt: skip


def _day(text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ResourceNotFoundError("a report is named by its day, YYYY-MM-DD") from None


def register_resources(server: WorkbenchMCP, proposer: Proposer, limits: McpPolicy) -> None:
    """The policies, the reports and the prompt on ``server``."""

    @server.resource(
        "workbench://policy/risk", name="risk_policy", title="Risk policy",
        description="The risk gate's policy (risk_policy.yaml) as JSON, with its hash.",
        mime_type="application/json",
    )  # fmt: skip
    def risk_policy() -> str:
        policy = proposer.policy.model_dump(mode="json")
        return json.dumps({"policy_hash": proposer.policy_hash, "policy": policy}, indent=1)

    @server.resource(
        "workbench://policy/mcp", name="mcp_policy", title="MCP limits",
        description="This server's rate, size and read limits (mcp.yaml) as JSON, with its hash.",
        mime_type="application/json",
    )  # fmt: skip
    def mcp_policy() -> str:
        return json.dumps({"limits_hash": limits.digest, "policy": limits.model_dump(mode="json")})

    @server.resource(
        "workbench://report/today", name="report_today", title="Today's daily report",
        description="Today's daily-cycle report (New York date) as text; untrusted data.",
        mime_type="application/json",
    )  # fmt: skip
    def report_today() -> str:
        doc = report_document(proposer.home, proposer.market_day(), limits.reads.max_report_chars)
        return json.dumps(doc)

    @server.resource(
        "workbench://report/{day}", name="report_of_day", title="Daily report of a day",
        description="The daily-cycle report of a day (YYYY-MM-DD) as text; untrusted data.",
        mime_type="application/json",
    )  # fmt: skip
    def report_of_day(day: str) -> str:
        doc = report_document(proposer.home, _day(day), limits.reads.max_report_chars)
        return json.dumps(doc)

    @server.prompt(
        name="how_to_propose", title="How to propose",
        description="The proposal format and the risk gate's rules, from the policy in force.",
    )  # fmt: skip
    def how_to_propose() -> str:
        return proposal_prompt(proposer.policy, limits)
