"""The MCP server's door: argument size, nesting and keys, rate limits, short error texts.

Everything a model sends is untrusted. Before any tool runs, :func:`inspect_arguments` measures
the call's arguments as JSON (refusing oversized or deeply nested ones, and keys the tool does
not declare — the SDK would otherwise drop them silently) and gives the digest the audit event
records; :class:`RateLimiter` admits or refuses the call under the MCP policy's sliding windows,
on an injected clock. Error texts are short and never echo what the caller sent: a rejected
key or a client's name is shown only when it is a plain identifier. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from workbench.clock import Clock
from workbench.errors import WorkbenchError
from workbench.mcp_policy import McpPolicy

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
MAX_PROBLEMS = 4


class RefusedCall(WorkbenchError, ValueError):
    """A call refused at the door (too big, too deep, unknown keys, over a rate limit); its
    message is safe to show to the model."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited


@dataclass(frozen=True)
class Measured:
    """What the audit records of a call's arguments: their size and digest, never their text."""

    chars: int
    digest: str


def plain(name: object) -> str:
    """A key or name as shown in an error: itself if it is a plain identifier, else ``<key>``."""
    text = str(name)
    return text if _PLAIN_KEY.fullmatch(text) else "<key>"


def depth_of(value: object, limit: int) -> int:
    """How deeply objects and arrays nest in ``value`` (parsed JSON), counted without recursion;
    stops counting once past ``limit`` (returns ``limit + 1``)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return limit + 1
        stack.extend((child, level + 1) for child in children)
    return deepest


def inspect_arguments(
    arguments: Mapping[str, Any], declared: Iterable[str], policy: McpPolicy
) -> Measured:
    """Measure a call's arguments and refuse what no tool of ours accepts: more nesting or
    characters than the policy allows, or a key the tool does not declare."""
    limits = policy.payload
    if depth_of(arguments, limits.max_depth) > limits.max_depth:
        raise RefusedCall(f"arguments nest deeper than {limits.max_depth} levels: refused")
    try:
        text = json.dumps(
            arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
    except (ValueError, TypeError, RecursionError):
        raise RefusedCall("arguments are not plain JSON: refused") from None
    if len(text) > limits.max_argument_chars:
        raise RefusedCall(
            f"arguments are {len(text):,} characters, above the {limits.max_argument_chars:,}"
            " allowed: refused"
        )
    unknown = sorted(plain(k) for k in arguments if k not in set(declared))
    if unknown:
        raise RefusedCall(
            f"unknown argument(s) {', '.join(unknown)}: this tool takes only"
            f" {', '.join(sorted(declared)) or 'no arguments'}"
        )
    return Measured(len(text), hashlib.sha256(text.encode("utf-8")).hexdigest())


def digest_of(arguments: Mapping[str, Any]) -> Measured:
    """Size and digest of arguments that could not be measured as JSON (recorded anyway)."""
    text = repr(sorted(map(str, arguments)))
    return Measured(len(text), hashlib.sha256(text.encode("utf-8")).hexdigest())


def short_problems(exc: ValidationError, prefix: str = "invalid arguments") -> str:
    """A pydantic error as one short line: where and what, never the value that was sent."""
    parts = []
    for err in exc.errors()[:MAX_PROBLEMS]:
        where = ".".join(plain(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg'][:160]}")
    more = len(exc.errors()) - MAX_PROBLEMS
    tail = f"; and {more} more" if more > 0 else ""
    return f"{prefix}: {'; '.join(parts)}{tail}"


def printable(text: object, limit: int = 100) -> str:
    """A client-supplied label as printable ASCII of at most ``limit`` characters."""
    cleaned = _PRINTABLE.sub("?", str(text)).strip()[:limit]
    return cleaned or "unknown"


@dataclass
class RateLimiter:
    """Sliding windows over the injected clock: calls per session, and calls per tool across
    every session. A refused call is not counted; a window frees up as its calls age out."""

    policy: McpPolicy
    clock: Clock
    _sessions: defaultdict[str, deque[datetime]] = field(
        default_factory=lambda: defaultdict(deque), repr=False
    )
    _tools: defaultdict[str, deque[datetime]] = field(
        default_factory=lambda: defaultdict(deque), repr=False
    )

    def admit(self, session: str, tool: str) -> None:
        """Count one call of ``tool`` in ``session`` now, or raise RefusedCall (rate limited)."""
        limits = self.policy.rate_limits
        now = self.clock.now()
        window = timedelta(seconds=limits.window_seconds)
        per_tool = limits.per_tool.get(tool)  # None for a name no tool has: its session counts
        mine = self._sessions[session]
        theirs = self._tools[tool] if per_tool is not None else deque()
        for calls in (mine, theirs):
            while calls and calls[0] <= now - window:
                calls.popleft()
        if len(mine) >= limits.per_session:
            self._refuse(f"{limits.per_session} calls per session", mine[0] + window - now)
        if per_tool is not None and len(theirs) >= per_tool:
            self._refuse(f"{per_tool} calls of {tool}", theirs[0] + window - now)
        mine.append(now)
        theirs.append(now)

    def _refuse(self, what: str, wait: timedelta) -> None:
        seconds = max(1, int(wait.total_seconds() + 0.999))
        window = self.policy.rate_limits.window_seconds
        raise RefusedCall(
            f"rate limit: at most {what} in {window} s; try again in {seconds} s",
            rate_limited=True,
        )
