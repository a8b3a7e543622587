"""The approval key: 32 random bytes in a 0600 file of the home, and the MACs made with it.

Tokens, grants, releases of the kill switch and approver records are signed with it
(``HMAC-SHA256``, one domain tag per kind, so a MAC of one kind never passes for another). Only the
approval side holds it: a handle opened read-and-propose only (the MCP server, a reader) never
loads it, so it can neither mint nor verify, and its broker sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from workbench import canonical, privacy
from workbench.errors import ApprovalError

KEY_FILE = "approval.key"
KEY_BYTES = 32


class ApprovalKey:
    """The key file of one home; read on each use (never cached in memory across calls)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.path = Path(home) / KEY_FILE

    def __repr__(self) -> str:
        return f"ApprovalKey({self.path})"

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        """Make the key if the home has none yet (a concurrent creator may win; either is kept)."""
        if self.path.exists():
            return
        try:
            _create_key(self.path)
        except OSError as exc:
            raise ApprovalError(f"cannot create approval key {self.path}: {exc}") from exc

    def load(self) -> bytes:
        """The key; an ApprovalError if it is missing, not ours, wider than 0600 or corrupt."""
        return _read_key(self.path)

    def load_if_present(self) -> bytes | None:
        """The key, or None if the home has none yet (a bad key still raises)."""
        return self.load() if self.path.exists() else None


def mac(key: bytes, domain: str, fields: Any) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of ``fields`` under a domain tag."""
    tag = f"workbench/{domain}/v1\n".encode("ascii")
    body = canonical.dumps(fields).encode("ascii")
    return hmac.new(key, tag + body, hashlib.sha256).hexdigest()


def verify(key: bytes | None, domain: str, fields: Any, given: str) -> bool:
    """Whether ``given`` is the MAC of ``fields``; never without a key."""
    if key is None:
        return False
    return hmac.compare_digest(mac(key, domain, fields), given)


def _create_key(path: Path) -> None:
    """Write a fresh random key to ``path`` atomically (0600); a concurrent creator may win."""
    privacy.make_home(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _read_key(path: Path) -> bytes:
    """The key, if ``path`` is a regular file of ours, mode 0600 or narrower, of the right size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise ApprovalError(
            f"approval key {path} cannot be opened: {exc.strerror} (a home gets its key when"
            " its first approver is enrolled: `workbench approver add NAME`)"
        ) from exc
    except OSError as exc:
        raise ApprovalError(f"approval key {path} cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ApprovalError(f"approval key {path} is not a regular file owned by this user")
        if mode & 0o077:
            raise ApprovalError(
                f"approval key {path} has mode {mode:04o}, wider than 0600: refusing to use it"
                f" (check who could read it, then chmod 600 {path})"
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise ApprovalError(f"approval key {path} is corrupt (expected {KEY_BYTES} bytes)")
    return key
