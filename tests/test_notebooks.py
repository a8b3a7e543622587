"""The notebooks: committed clean, parameterised for papermill, and they run under nbval."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench.home import create_home

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_exist() -> None:
    """The daily cycle, approvals, explore and review notebooks are all there."""
    names = {p.stem for p in NOTEBOOKS}
    assert {"daily_cycle", "approvals", "explore", "review"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    """A committed notebook carries no outputs or execution counts (reports live in runs/)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} has outputs: clear them before committing"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_python3_kernel_and_has_parameters(path: Path) -> None:
    """Every notebook names kernel python3 and has one papermill parameters cell."""
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


@pytest.mark.slow
def test_notebooks_run_under_nbval(tmp_path: Path) -> None:
    """`pytest --nbval-lax` runs every notebook against a fresh home without an error."""
    env = {**os.environ, "WORKBENCH_HOME": str(create_home(tmp_path / "home"))}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-sanitize-with",
            str(ROOT / "notebooks" / "nbval-sanitize.cfg"),
            str(ROOT / "notebooks"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    cells = sum(
        c.cell_type == "code" for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells
    )
    assert f"{cells} passed" in run.stdout  # every code cell ran as its own item
    assert (tmp_path / "home" / "workbench.sqlite").exists()
    assert not list((ROOT / "notebooks").glob("runs")), "a notebook wrote beside itself"


@pytest.mark.slow
def test_a_notebook_opened_from_notebooks_finds_the_projects_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from <project>/notebooks (JupyterLab's folder) with no home given, the review
    notebook refuses the missing <project>/runs by name, then reads it once `init` made it."""
    import papermill as pm

    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "policies", project / "policies")
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    review = str(ROOT / "notebooks" / "review.ipynb")
    out = str(tmp_path / "out.ipynb")
    with pytest.raises(pm.PapermillExecutionError) as refused:
        pm.execute_notebook(review, out, cwd=str(project / "notebooks"), progress_bar=False)
    assert refused.value.ename == "HomeError"
    assert str(project / "runs") in refused.value.evalue
    assert not (project / "runs").exists() and not (project / "notebooks" / "runs").exists()
    create_home(project / "runs")
    pm.execute_notebook(review, out, cwd=str(project / "notebooks"), progress_bar=False)
    printed = "".join(  # streams and the plain-text twin of each display (the header card)
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nbformat.read(out, as_version=4).cells
        for o in c.get("outputs", [])
    )
    assert f"Home: {project / 'runs'}" in printed
