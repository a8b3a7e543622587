"""``workbench gateway``: the demo command serves a real client and says it is a test gateway."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ib_async import IB

from workbench.cli import main

WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 20.0) -> str:
    """The child's stdout up to ``marker`` (each read waits on the pipe, at most ``timeout``)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    text = ""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while marker not in text:
            if not sel.select(timeout):
                raise AssertionError(f"no {marker!r} from the gateway; got {text!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"the gateway exited early; got {text!r}")
            text += chunk.decode()
    return text


def test_workbench_gateway_serves_a_real_client_until_interrupted() -> None:
    """The banner says TEST and synthetic prices and names the port; a client connects; Ctrl-C
    stops it with exit 0."""
    proc = subprocess.Popen(
        [WORKBENCH, "gateway", "--port", "0", "--chaos", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        text = _read_until(proc, "Stop with Ctrl-C")
        assert "TEST GATEWAY" in text and "SYNTHETIC PRICES" in text
        assert "NOT Interactive Brokers" in text and "Chaos: seed 3" in text
        match = re.search(r"Listening on 127\.0\.0\.1:(\d+)", text)
        assert match is not None
        ib = IB()
        ib.connect("127.0.0.1", int(match.group(1)), clientId=5, timeout=10)
        assert ib.managedAccounts() == ["DU1234567"]
        assert abs(ib.reqCurrentTime() - datetime.now(UTC)) < timedelta(minutes=1)
        ib.disconnect()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None
        assert b"test gateway stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "U1234567"], "paper DU"),
        (["--port", "7496"], "live-trading port"),
        (["--port", "4001"], "live-trading port"),
        (["--port", "70000"], "not a TCP port"),
        (["--chaos", "-1"], "zero or positive"),
        (["--upstream", "127.0.0.1:4002"], "give --record FILE"),
        (["--record", "/nonexistent/dir/t.jsonl"], "its folder does not"),
        (["--record", "/tmp/wb-t.jsonl", "--upstream", "127.0.0.1:7496"], "live-trading port"),
        (["--record", "/tmp/wb-t.jsonl", "--upstream", "4002"], "give HOST:PORT"),
        (["--replay", "/nonexistent.jsonl"], "no such transcript"),
        (["--replay", "/nonexistent.jsonl", "--record", "/tmp/wb-t.jsonl"], "not with --record"),
    ],
)
def test_workbench_gateway_refuses_bad_arguments_with_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live port, a non-paper account, a bad port or seed: exit 2, nothing listens."""
    assert main(["gateway", *args]) == 2
    assert message in capsys.readouterr().err
