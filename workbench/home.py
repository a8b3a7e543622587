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
