"""``workbench mcp --http`` as a real subprocess: loopback only, a bearer token issued once,
401 without it, DNS-rebinding protection, oversized bodies refused; the official client works
with the right token."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from conftest import TRADING_NOW
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation
from mcpkit import make_home, tool_calls

from workbench import privacy
from workbench.audit import AuditLog
from workbench.clock import FixedClock
from workbench.mcp_http import HomeTokenVerifier, check_bind, issue_token, token_path
from workbench.mcp_server import TOOL_NAMES

pytestmark = pytest.mark.slow

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return subprocess.run(
        [WORKBENCH, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    token: str
    home: Path


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``workbench mcp --http`` on a free loopback port of a home with a token issued (one
    server for the module's read-only checks)."""
    home = tmp_path_factory.mktemp("http") / "home"
    home.mkdir(mode=0o700)
    make_home(home, FixedClock(TRADING_NOW))
    issued = run("mcp", "token", "--home", str(home))
    assert issued.returncode == 0, issued.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    proc = subprocess.Popen(
        [WORKBENCH, "mcp", "--http", "--http-port", str(port), "--home", str(home)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not listening(port):  # waiting for a server to listen: not an order path
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not start listening"
            time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{port}/mcp", port, issued.stdout.strip(), home)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def test_no_token_or_a_wrong_one_is_401(http_server: Served) -> None:
    """Without a bearer token, or with a wrong one, the server answers 401 and asks for Bearer."""
    for headers in ({}, {"authorization": "Bearer not-the-token"},
                    {"authorization": f"Bearer {http_server.token}x"}):  # fmt: skip
        answer = httpx2.post(http_server.url, json=LIST, headers={**JSON, **headers})
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["error"] == "invalid_token"


@pytest.mark.anyio
async def test_the_right_token_works_with_the_official_client(http_server: Served) -> None:
    """With the token the official client lists the tools and reads; the call is recorded as
    HTTP with a session id the server made."""
    auth = httpx2.AsyncClient(headers={"Authorization": f"Bearer {http_server.token}"})
    info = Implementation(name="http-test-host", version="1.0")
    async with Client(streamable_http_client(http_server.url, http_client=auth),
                      client_info=info) as c:  # fmt: skip
        names = [t.name for t in (await c.list_tools()).tools]
        result = await c.call_tool("get_trading_state", {})
    assert names == list(TOOL_NAMES)
    assert not result.is_error and result.structured_content["trading_state"] == "ACTIVE"
    with AuditLog(http_server.home / "workbench.sqlite") as log:
        last = tool_calls(log)[-1]
    assert last.tool == "get_trading_state" and last.origin.transport == "http"
    assert last.origin.client == "http-test-host" and last.origin.session.startswith("h")


def test_dns_rebinding_protection_refuses_a_foreign_host_or_origin(http_server: Served) -> None:
    """With the right token, a Host naming another site is 421 and a foreign Origin is 403."""
    auth = {**JSON, "authorization": f"Bearer {http_server.token}"}
    foreign_host = httpx2.post(http_server.url, json=LIST, headers={**auth, "host": "evil.test"})
    assert foreign_host.status_code == 421
    origin = {**auth, "origin": "http://evil.test"}
    assert httpx2.post(http_server.url, json=LIST, headers=origin).status_code == 403
    own = {**auth, "origin": f"http://127.0.0.1:{http_server.port}"}
    assert httpx2.post(http_server.url, json=LIST, headers=own).status_code not in (403, 421)


def test_an_oversized_body_is_refused_before_it_is_read(http_server: Served) -> None:
    """A body far above the policy's argument size is 413 (never parsed)."""
    auth = {**JSON, "authorization": f"Bearer {http_server.token}"}
    huge = {**LIST, "params": {"pad": "x" * 200_000}}
    assert httpx2.post(http_server.url, json=huge, headers=auth).status_code == 413


def test_binding_anything_but_loopback_needs_allow_remote(home: Path, clock: FixedClock) -> None:
    """0.0.0.0 (or a LAN address) is refused with exit 2 and nothing listens; --allow-remote
    is the explicit way out; options that only make sense with --http need it."""
    make_home(home, clock)
    assert run("mcp", "token", "--home", str(home)).returncode == 0
    port = free_port()
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        out = run("mcp", "--http", "--bind", host, "--http-port", str(port), "--home", str(home))
        assert out.returncode == 2 and f"refusing to listen on {host}" in out.stderr
        assert "--allow-remote" in out.stderr
    assert not listening(port)
    check_bind("0.0.0.0", allow_remote=True)  # the flag is the only way past the check
    out = run("mcp", "--bind", "127.0.0.1", "--home", str(home))
    assert out.returncode == 2 and "need --http" in out.stderr
    out = run("mcp", "--http", "--http-port", "0", "--home", str(home))
    assert out.returncode == 2 and "0 is not a port (1 to 65535)" in out.stderr


def test_a_port_in_use_is_refused_in_one_line_before_anything_is_served(
    home: Path, clock: FixedClock
) -> None:
    """`workbench mcp --http` on a port another program holds: exit 1, one line of its own
    saying so (no web server's log line), and the banner of a server never printed."""
    make_home(home, clock)
    issue_token(home, rotate=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("mcp", "--http", "--http-port", str(port), "--home", str(home))
    assert out.returncode == 1, out
    assert out.stderr.splitlines() == [
        f"home: {home}",
        f"refused: cannot listen on 127.0.0.1:{port}: Address already in use",
    ]


def test_the_token_is_printed_once_and_only_its_digest_is_kept(
    home: Path, clock: FixedClock
) -> None:
    """`workbench mcp token` prints a token once; the home keeps its sha256 only, 0600; a second
    call refuses; --rotate issues a new one; HTTP without any token file does not start."""
    make_home(home, clock)
    port = free_port()
    none_yet = run("mcp", "--http", "--http-port", str(port), "--home", str(home))
    assert none_yet.returncode == 2 and "run `workbench mcp token` first" in none_yet.stderr
    first = run("mcp", "token", "--home", str(home))
    token = first.stdout.strip()
    assert first.returncode == 0 and len(token) >= 40 and "shown once" in first.stderr
    assert first.stdout == token + "\n"  # the token alone on stdout (the home line: stderr)
    stored = token_path(home).read_text()
    assert token not in stored and len(stored.strip()) == 64
    assert stat.S_IMODE(token_path(home).stat().st_mode) == 0o600
    again = run("mcp", "token", "--home", str(home))
    assert again.returncode == 2 and again.stdout == "" and "--rotate" in again.stderr
    rotated = run("mcp", "token", "--rotate", "--home", str(home))
    assert rotated.returncode == 0 and rotated.stdout.strip() != token
    token_path(home).chmod(0o644)  # widened: doctor reports it and the server will not start
    assert any("mcp.token" in p for p in privacy.problems(home))
    widened = run("mcp", "--http", "--http-port", str(port), "--home", str(home))
    assert widened.returncode == 2 and "readable by others" in widened.stderr


@pytest.mark.anyio
async def test_a_rotated_token_replaces_the_old_one_at_once(home: Path, clock: FixedClock) -> None:
    """The verifier re-reads the digest on each request: after a rotation the old token is
    refused and the new one accepted, without a restart."""
    make_home(home, clock)
    old = issue_token(home, rotate=False)
    verifier = HomeTokenVerifier(home)
    assert await verifier.verify_token(old) is not None
    new = issue_token(home, rotate=True)
    assert await verifier.verify_token(old) is None
    accepted = await verifier.verify_token(new)
    assert accepted is not None and accepted.scopes == ["workbench:propose"]
