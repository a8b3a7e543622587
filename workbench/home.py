"""Where the workbench keeps its state: one folder, one SQLite file, reports beside it.

One home, resolved the same way by every command and notebook: ``--home`` (or a notebook's
``home`` parameter), else ``$WORKBENCH_HOME``, else the ``runs/`` folder of the project — the
nearest folder, from the working folder up, that holds ``policies/risk_policy.yaml`` (the way
policies are found), so a notebook opened from ``notebooks/`` finds the same home as the shell.

Only ``workbench daily`` and ``workbench init`` create a home (:func:`create_home`); everything
else calls :func:`require_home` and refuses a missing one, naming the path it looked at.
Replays of past days run in a sandbox home inside the main one: ``<home>/replay/<YYYY-MM-DD>/``.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

from workbench import privacy
from workbench.errors import HomeError

HOME_ENV = "WORKBENCH_HOME"
RUNS = "runs"
DB_NAME = "workbench.sqlite"
REPLAY_DIR = "replay"
POLICY_ENV = "WORKBENCH_POLICY_DIR"
POLICY_FILE = "risk_policy.yaml"
_REPO = Path(__file__).resolve().parents[1]
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder from ``start`` (the working folder) up that holds
    ``policies/risk_policy.yaml``; else this repository, if it holds one; else None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "policies" / POLICY_FILE).is_file():
            return folder
    return _REPO if (_REPO / "policies" / POLICY_FILE).is_file() else None


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home folder: ``home`` if given, else ``$WORKBENCH_HOME``, else the project's
    ``runs/`` (see :func:`project_root`; ``./runs`` outside any project). Nothing is checked."""
    chosen = home if home not in (None, "") else os.environ.get(HOME_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    root = project_root()
    return (root if root is not None else Path.cwd()) / RUNS


def db_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file inside the home folder."""
    return resolve_home(home) / DB_NAME


def require_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The resolved home, which must already exist: a folder holding the workbench database.

    A missing folder, a file in its place or a folder without the database is a
    :class:`HomeError` naming the path; nothing is created.
    """
    path = resolve_home(home)
    if path.is_file():
        raise HomeError(f"{path} is a file, not a workbench home folder", path=path)
    if not path.is_dir():
        raise HomeError(
            f"no workbench home at {path}: create it with `workbench init --home {path}`"
            " (or run `workbench daily`)",
            path=path,
        )
    if not (path / DB_NAME).is_file():
        raise HomeError(
            f"{path} is not a workbench home (it has no {DB_NAME}): create one with"
            f" `workbench init --home {path}`",
            path=path,
        )
    return path


def check_creatable(home: str | os.PathLike[str] | None = None) -> Path:
    """The resolved home if it exists or could be created here; writes nothing."""
    path = resolve_home(home)
    if path.is_file():
        raise HomeError(f"{path} is a file, not a workbench home folder", path=path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise HomeError(f"cannot create a home at {path}: {existing} is a file", path=path)
    for target in (existing, path / DB_NAME):
        if target.exists() and not writable(target):
            raise HomeError(f"the home {path} cannot be written: {target} is read-only", path=path)
    return path


def create_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Create the home folder and its (empty, migrated) database if missing; return its path."""
    from workbench.audit import AuditLog  # the record layer; home resolution does not need it

    path = check_creatable(home)
    try:
        privacy.make_home(path)  # a home made here is 0700, whatever the umask
    except OSError as exc:
        raise HomeError(f"cannot create the home {path}: {exc.strerror}", path=path) from exc
    if not (path / DB_NAME).is_file():
        AuditLog(path / DB_NAME).close()
    return path


def writable(path: Path) -> bool:
    """Whether this process may write in ``path`` (a read-only mount or folder says no)."""
    return os.access(path, os.W_OK)


def require_writable(home: Path) -> Path:
    """``home`` if its folder and database can be written, else a HomeError saying so."""
    for target in (home, home / DB_NAME):
        if not writable(target):
            raise HomeError(
                f"the home {home} is read-only: only `workbench audit verify` and"
                " `workbench audit tail` can read it",
                path=home,
            )
    return home


def replay_home(home: str | os.PathLike[str] | None, day: date) -> Path:
    """The sandbox home where a replay of ``day`` runs: ``<home>/replay/<day>/``."""
    return resolve_home(home) / REPLAY_DIR / day.isoformat()


def is_replay_home(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a replay sandbox (``…/replay/<YYYY-MM-DD>``): paper broker only."""
    folder = Path(path)
    return folder.parent.name == REPLAY_DIR and _DAY.fullmatch(folder.name) is not None


def resolve_policy_dir(policy_dir: str | os.PathLike[str] | None = None) -> Path:
    """The policies folder: ``policy_dir``, else ``$WORKBENCH_POLICY_DIR``, else the nearest
    ``policies/`` holding a risk policy in the working folder or its parents, else the
    repository's own. Whether the files in it are valid is for the loader to say."""
    chosen = policy_dir or os.environ.get(POLICY_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    root = project_root()
    return (root if root is not None else _REPO) / "policies"
