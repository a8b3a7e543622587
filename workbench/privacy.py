"""Private by default: the home is 0700, its database (with -wal and -shm) and key are 0600.

Created so whatever the umask; an existing home or file that other local users can read is
reported by :func:`problems` (every command warns, approve and submit refuse) and narrowed by
:func:`fix` (``workbench doctor --fix-permissions``). Other users are outside the trust boundary;
code running as the home's own user is not stopped by modes (see docs/threat-model.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600
DB_NAME = "workbench.sqlite"
PRIVATE_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "approval.key")
# Made only when asked for (the MCP server's token digest), and as private when present.
ON_REQUEST_FILES = ("mcp.token",)


def make_home(folder: Path) -> None:
    """Create ``folder`` (and its parents) if missing; a folder created here is 0700."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=HOME_MODE)
    except FileExistsError:
        return
    os.chmod(folder, HOME_MODE)  # mkdir's mode is narrowed by the umask, never widened


def create_file(path: Path) -> None:
    """Create an empty ``path`` readable by its owner only, unless it exists already."""
    make_home(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None


def problems(home: Path) -> list[str]:
    """What other local users could read in ``home``: one sentence each; empty when private."""
    found = []
    mode = _mode(home)
    if mode is not None and mode & 0o077:
        found.append(f"home {home} is {mode:04o}, not 0700")
    for name in PRIVATE_FILES + ON_REQUEST_FILES:
        mode = _mode(home / name)
        if mode is not None and mode & 0o077:
            found.append(f"{home / name} is {mode:04o}, not 0600")
    return found


def fix(home: Path) -> list[str]:
    """Narrow the home to 0700 and its private files to 0600; what was changed."""
    changed = []
    if (mode := _mode(home)) is not None and mode & 0o077:
        os.chmod(home, HOME_MODE)
        changed.append(f"home {home}: {mode:04o} -> 0700")
    for name in PRIVATE_FILES + ON_REQUEST_FILES:
        path = home / name
        if (mode := _mode(path)) is not None and mode & 0o077:
            os.chmod(path, FILE_MODE)
            changed.append(f"{path}: {mode:04o} -> 0600")
    return changed
