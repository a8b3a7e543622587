"""The MCP server over streamable HTTP: loopback only, a bearer token, DNS-rebinding protection.

``workbench mcp token`` makes a random token, prints it once and keeps only its sha256 in
``<home>/mcp.token`` (0600); the server compares each request's bearer token against that digest
in constant time (no token or a wrong one: 401). The server listens on 127.0.0.1 (or ::1,
localhost) unless ``--allow-remote`` is given; every request's Host (and Origin, when sent) must
name the address it listens on (DNS-rebinding protection, always on), and bodies above the MCP
policy's size are refused before they are parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from workbench import privacy
from workbench.errors import ConfigError, ListenError

TOKEN_FILE = "mcp.token"
TOKEN_BYTES = 32
SCOPE = "workbench:propose"
CLIENT_ID = "workbench-mcp-token"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
MCP_PATH = "/mcp"
DEFAULT_PORT = 8765
_DIGEST_CHARS = 64


def token_path(home: Path) -> Path:
    return Path(home) / TOKEN_FILE


def issue_token(home: Path, *, rotate: bool) -> str:
    """A fresh token for ``home``'s HTTP server, returned once; only its sha256 is kept. An
    existing token is replaced only with ``rotate`` (the old one stops working at once)."""
    path = token_path(home)
    if path.exists() and not rotate:
        raise ConfigError(
            f"{path} exists: a token was issued already (it is never shown again);"
            " `workbench mcp token --rotate` replaces it"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    privacy.make_home(path.parent)
    tmp = path.with_name(f".{TOKEN_FILE}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, privacy.FILE_MODE)
    try:
        os.fchmod(fd, privacy.FILE_MODE)
        os.write(fd, (_digest(token) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_digest(home: Path) -> str:
    """The stored token digest; ConfigError when there is none or the file is not ours."""
    path = token_path(home)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no MCP token in {path.parent}: run `workbench mcp token` first (it prints the"
            " token once)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if len(text) != _DIGEST_CHARS or not all(c in "0123456789abcdef" for c in text):
        raise ConfigError(f"{path} is corrupt: issue a new token with --rotate")
    if privacy.problems(path.parent) or (path.stat().st_mode & 0o077):
        raise ConfigError(
            f"{path} or its home is readable by others: run workbench doctor --fix-permissions"
        )
    return text


class HomeTokenVerifier(TokenVerifier):
    """Accepts exactly the token whose digest is in the home (re-read on each request, so a
    rotation takes effect at once); compared in constant time."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        read_digest(self.home)  # refuse to start without a usable token file

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            expected = read_digest(self.home)
        except ConfigError:
            return None
        if not hmac.compare_digest(_digest(token), expected):
            return None
        return AccessToken(token=token, client_id=CLIENT_ID, scopes=[SCOPE])


def auth_settings() -> AuthSettings:
    return AuthSettings.model_validate(
        {"issuer_url": "http://localhost", "resource_server_url": None, "required_scopes": [SCOPE]}
    )


def check_bind(host: str, *, allow_remote: bool) -> None:
    """Refuse any address but loopback unless the user said ``--allow-remote``."""
    if host not in LOOPBACK and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {host}: the MCP server listens on 127.0.0.1 only; pass"
            " --allow-remote to expose it to other machines (its token is then the only guard)"
        )


def transport_security(
    host: str, port: int, extra_hosts: tuple[str, ...] = ()
) -> TransportSecuritySettings:
    """DNS-rebinding protection on every bind: Host (and Origin) must name this server."""
    names = {"localhost", "127.0.0.1", "[::1]"} if host in LOOPBACK else {_bracket(host)}
    names |= set(extra_hosts)
    hosts = sorted(f"{name}:{port}" for name in names)
    origins = sorted(f"http://{name}:{port}" for name in names)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def http_app(
    server: MCPServer[Any], *, host: str, port: int, extra_hosts: tuple[str, ...], max_body: int
) -> Starlette:
    """The streamable-HTTP app at :data:`MCP_PATH`: bearer token required (the server was
    built with :class:`HomeTokenVerifier`), Host/Origin checked, bodies above ``max_body``
    refused (413) before they are parsed."""
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        max_request_body_size=max_body,
        transport_security=transport_security(host, port, extra_hosts),
        host=host,
    )


@contextmanager
def listening(host: str, port: int) -> Iterator[list[socket.socket]]:
    """Sockets listening on every address ``host`` resolves to (as uvicorn would bind them),
    closed on exit; a ListenError when it cannot (a port in use), before anything is served."""
    sockets: list[socket.socket] = []
    try:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, _, _, _, address in found:
                sockets.append(socket.create_server(address, family=family))
        except OSError as exc:
            code = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else None
            why = os.strerror(code) if code else exc.strerror or str(exc)  # no bind-call detail
            raise ListenError(f"cannot listen on {host}:{port}: {why}") from None
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


async def serve(app: Starlette, sockets: list[socket.socket], *, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn on the ``sockets`` listening at ``host:port`` until
    interrupted."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve(sockets=sockets)


def url(host: str, port: int) -> str:
    return f"http://{_bracket(host)}:{port}{MCP_PATH}"
