"""Benchmark: MCP tool calls through the real server in process (the SDK's client, the door, the
proposer, the audit log on a real SQLite file), and the stdio command's start-up.

Prints milliseconds per call for a read (get_portfolio), a refused hostile call (an extra field,
never reaching a tool), and one proposal's whole adviser path (propose → simulate → evaluate →
request approval: four calls); then the seconds from starting ``workbench mcp`` to its tool list.
Run: ``.venv/bin/python bench/mcp_calls.py``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from workbench.clock import FixedClock
from workbench.mcp_policy import McpPolicy, load_mcp_policy
from workbench.mcp_server import TOOL_NAMES, build_server
from workbench.proposer import Proposer
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
CALLS = 200
PATHS = 50


def unlimited(policy: McpPolicy) -> McpPolicy:
    """The shipped limits with every rate cap lifted (the bench measures work, not waiting)."""
    data = policy.model_dump()
    data["rate_limits"]["per_session"] = 100_000
    data["rate_limits"]["per_tool"] = dict.fromkeys(TOOL_NAMES, 100_000)
    return McpPolicy.model_validate(data)


async def per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    """Median milliseconds of ``n`` calls."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def order(quote: dict[str, Any], qty: int) -> dict[str, Any]:
    ask = Decimal(quote["ask"])
    return {
        "instrument": {k: v for k, v in quote["instrument"].items() if v is not None},
        "side": "BUY", "quantity": qty, "order_type": "LMT", "limit_price": str(ask),
        "protective_stop": {"stop_price": str((ask * Decimal("0.97")).quantize(Decimal("0.01")))},
        "reason": "bench",
    }  # fmt: skip


async def in_process(home: Path) -> None:
    clock = FixedClock(NOW)
    with Workbench.open(home, "paper", policy_dir=POLICIES, clock=clock, create=True):
        pass
    limits = unlimited(load_mcp_policy(POLICIES))
    with Proposer.open(home, policy_dir=POLICIES, clock=clock, log_clock=clock) as proposer:
        server = build_server(proposer, limits, clock=clock)
        async with Client(server) as c:
            read = await per_call(CALLS, lambda: c.call_tool("get_portfolio", {}))
            quote = (await c.call_tool("get_market_snapshot", {"symbol": "SPY"})).structured_content
            bad = {"order": {**order(quote, 1), "decision": "APPROVE"}}
            refused = await per_call(CALLS, lambda: c.call_tool("propose_order", bad))
            sizes = iter(range(1, PATHS + 1))

            async def path() -> None:
                made = await c.call_tool("propose_order", {"order": order(quote, next(sizes))})
                pid = made.structured_content["proposal_id"]
                for step in ("simulate_proposal", "evaluate_proposal", "request_approval"):
                    await c.call_tool(step, {"proposal_id": pid})

            whole = await per_call(PATHS, path)
    print(f"get_portfolio: {read:.2f} ms per call (median of {CALLS})")
    print(f"refused hostile call: {refused:.2f} ms per call (median of {CALLS})")
    print(f"adviser path, 4 calls to APPROVAL_REQUESTED: {whole:.1f} ms (median of {PATHS})")


async def startup(home: Path) -> None:
    exe = str(Path(sys.executable).with_name("workbench"))
    params = StdioServerParameters(command=exe, args=["mcp", "--home", str(home)])
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            await s.list_tools()
            ready = time.perf_counter() - start
    print(f"workbench mcp over stdio, start to tool list: {ready:.2f} s")


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    try:
        home = folder / "home"
        anyio.run(in_process, home)
        anyio.run(startup, home)
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
