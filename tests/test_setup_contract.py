"""The set-up contract: layout, the README's two commands, CI and conda/pip agreement."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_layout_is_as_the_user_asked() -> None:
    """The fixed top-level entries all exist."""
    for name in (
        "README.md",
        "AGENTS.md",
        "notebooks",
        "workbench",
        "policies",
        "runs",
        "tests",
        "environment.yml",
        "pyproject.toml",
        "Makefile",
        ".ci/run",
        ".gitignore",
    ):
        assert (ROOT / name).exists(), name


def test_environment_yml_agrees_with_pyproject() -> None:
    """environment.yml asks for the same minimum Python and installs the dev extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]
    pip_block = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    extras = {e for line in pip_block for e in re.findall(r"\[([a-z,]+)\]", line)[0].split(",")}
    assert extras <= set(project["optional-dependencies"])
    assert "dev" in extras


def test_readme_opens_with_the_two_commands() -> None:
    """The README's first code block holds `make run` and `make test`."""
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls `make test`, the command the README gives."""
    assert re.search(r"^make test\b", (ROOT / ".ci/run").read_text(), re.MULTILINE)


def test_agents_md_states_the_hard_rules() -> None:
    """AGENTS.md names the commands and the non-negotiable rules."""
    text = (ROOT / "AGENTS.md").read_text().lower()
    for phrase in ("make test", "make run", "token", "fail closed", "decimal"):
        assert phrase in text, phrase


def test_ib_insync_is_not_a_dependency() -> None:
    """ib_insync (archived, clashing eventkit) is never asked for; ib_async is."""
    text = (ROOT / "pyproject.toml").read_text()
    assert "ib_insync" not in text and "ib_async" in text


def test_threat_model_names_only_tests_that_exist() -> None:
    """Every test docs/threat-model.md cites as proof exists (file, and function when named), and
    the README links the page."""
    text = (ROOT / "docs" / "threat-model.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(cited) >= 10
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or f"def {name}(" in source, f"{path}::{name}"
    for extra in re.findall(r"`::(\w+)`", text):
        assert any(f"def {extra}(" in p.read_text() for p in (ROOT / "tests").rglob("*.py")), extra
    assert "docs/threat-model.md" in (ROOT / "README.md").read_text()
