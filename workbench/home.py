"""Where the workbench keeps its state: one folder, one SQLite file, reports beside it."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "WORKBENCH_HOME"
DEFAULT_HOME = Path("runs")
DB_NAME = "workbench.sqlite"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home folder: ``home`` if given, else ``$WORKBENCH_HOME``, else ``./runs``."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def db_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file inside the home folder."""
    return resolve_home(home) / DB_NAME


POLICY_ENV = "WORKBENCH_POLICY_DIR"
POLICY_FILE = "risk_policy.yaml"


def resolve_policy_dir(policy_dir: str | os.PathLike[str] | None = None) -> Path:
    """The policies folder: ``policy_dir``, else ``$WORKBENCH_POLICY_DIR``, else the nearest
    ``policies/`` holding a risk policy in the working folder or its parents, else the
    repository's own. Whether the files in it are valid is for the loader to say."""
    chosen = policy_dir or os.environ.get(POLICY_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "policies" / POLICY_FILE).is_file():
            return folder / "policies"
    return Path(__file__).resolve().parents[1] / "policies"
