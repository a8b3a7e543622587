"""The log check of tests/testing/logcheck.py fails a test whose client logged a decoder error,
and lets it pass when the test names that line with ``allow_ib_log``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

GARBLED = """
import pytest
from testing.gwkit import wait_until


def _garble(gateway, ib, ib_log_check):
    gateway.send_raw(1, ["1", "6", "not-a-number"])
    wait_until(ib, lambda: bool(ib_log_check.records))


def test_garbled(gateway, ib, ib_log_check):
    _garble(gateway, ib, ib_log_check)


@pytest.mark.allow_ib_log("Error handling fields")
def test_garbled_but_allowed(gateway, ib, ib_log_check):
    _garble(gateway, ib, ib_log_check)
"""


ROOT_CONFTEST = """
from testing.logcheck import ib_log_check, pytest_configure, pytest_runtest_call  # noqa: F401
"""


def test_a_decoder_error_fails_the_test_unless_allowed(tmp_path: Path) -> None:
    """Run two tests in a child pytest: the one with a decoder error fails in its call phase,
    the one that allows the line passes."""
    package = tmp_path / "testing"
    package.mkdir()
    for name in ("__init__.py", "conftest.py", "gwkit.py", "logcheck.py"):
        shutil.copy(HERE / name, package / name)
    (package / "test_garbled.py").write_text(GARBLED)
    (tmp_path / "conftest.py").write_text(ROOT_CONFTEST)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "1 failed, 1 passed" in run.stdout, run.stdout
    assert "FAILED testing/test_garbled.py::test_garbled - Failed: protocol problems" in run.stdout
    assert "ib_async.Decoder" in run.stdout
