"""One home, found the same way everywhere; only `daily` and `init` create one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clikit
import pytest

from workbench.cli import main
from workbench.errors import HomeError
from workbench.home import (
    DB_NAME,
    create_home,
    is_replay_home,
    project_root,
    replay_home,
    require_home,
    resolve_home,
)
from workbench.review import Review
from workbench.workbench import Workbench

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def project(tmp_path: Path) -> Path:
    """A project folder holding policies/ (a copy of the repository's) and notebooks/."""
    folder = tmp_path / "project"
    (folder / "policies").mkdir(parents=True)
    (folder / "notebooks").mkdir()
    for f in (ROOT / "policies").glob("*.yaml"):
        (folder / "policies" / f.name).write_text(f.read_text())
    return folder


def test_notebooks_folder_finds_the_projects_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From notebooks/ (JupyterLab's cwd) the home is the project's runs/, not notebooks/runs."""
    folder = project(tmp_path)
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(folder / "notebooks")
    assert project_root() == folder
    assert resolve_home() == folder / "runs"
    monkeypatch.chdir(folder)
    assert resolve_home() == folder / "runs"


def test_flag_then_environment_then_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--home wins over $WORKBENCH_HOME, which wins over the project's runs/."""
    folder = project(tmp_path)
    monkeypatch.chdir(folder / "notebooks")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "env"))
    assert resolve_home() == tmp_path / "env"
    assert resolve_home("flag") == folder / "notebooks" / "flag"
    monkeypatch.delenv("WORKBENCH_HOME")
    assert resolve_home("") == folder / "runs"


def test_cli_from_notebooks_folder_uses_the_projects_home(tmp_path: Path) -> None:
    """`workbench init` run in notebooks/ creates <project>/runs and says so in its header."""
    folder = project(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [WORKBENCH, "init"], cwd=folder / "notebooks", env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"home: {folder / 'runs'}"
    assert (folder / "runs" / DB_NAME).is_file() and not (folder / "notebooks" / "runs").exists()


@pytest.mark.parametrize(
    "command",
    clikit.on_a_home(creators=False),
    ids=lambda c: " ".join(c[:2]),
)
def test_a_missing_home_is_refused_naming_it_and_never_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Every command but daily and init: a typo'd --home exits 2 naming it; nothing appears."""
    typo = tmp_path / "hmoe"
    assert main([*command, "--home", str(typo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(typo) in err and "no workbench home" in err
    assert not typo.exists()


@pytest.mark.parametrize(
    "command",
    clikit.on_a_home(creators=True),
    ids=lambda c: " ".join(c[:2]),
)
def test_a_file_given_as_the_home_is_refused_in_one_line_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Every command that works on a home, creators included: --home naming a file exits 2 in
    one line saying so, and the file is left as it was."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main([*command, "--home", str(afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a file" in err and "Traceback" not in err
    assert afile.read_text() == "mine"


def test_a_folder_without_the_database_is_not_a_home(tmp_path: Path) -> None:
    """An existing folder that holds no workbench database is refused, and stays empty."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(HomeError, match="not a workbench home"):
        require_home(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_library_and_notebook_openers_refuse_a_missing_home(tmp_path: Path) -> None:
    """Workbench.open and the review opener refuse it; Workbench.open(create=True) makes it."""
    missing = tmp_path / "missing"
    with pytest.raises(HomeError, match=str(missing)):
        Workbench.open(missing)
    with pytest.raises(HomeError, match=str(missing)):
        Review.open(home=str(missing))
    assert not missing.exists()
    with Workbench.open(missing, create=True) as wb:
        assert wb.home == missing.resolve()
    assert (missing / DB_NAME).is_file()


def test_init_creates_once_and_daily_is_the_other_creator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`workbench init` creates the home, a second init changes nothing; headers show the path."""
    home = tmp_path / "h"
    assert main(["init", "--home", str(home)]) == 0
    assert main(["init", "--home", str(home)]) == 0
    assert main(["audit", "verify", "--home", str(home)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out.count(f"home: {home}") == 3
    assert "created" in out and "already a workbench home: nothing changed" in out


def test_replay_homes_are_dated_folders_under_replay(tmp_path: Path) -> None:
    """<home>/replay/<date> is a replay sandbox; the home itself and other folders are not."""
    from datetime import date

    sandbox = replay_home(tmp_path / "runs", date(2026, 11, 18))
    assert sandbox == tmp_path / "runs" / "replay" / "2026-11-18"
    assert is_replay_home(sandbox)
    assert not is_replay_home(tmp_path / "runs")
    assert not is_replay_home(tmp_path / "replay" / "latest")
    assert create_home(sandbox) == sandbox
