"""Record and replay: a session recorded through the recording proxy (sanitised) replays against
the replay server to the same audit events, so a recorded session — the committed one against the
loopback gateway, or one against a real paper account — is a regression test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from brokerkit import TRADING_NOW, intent, permit_for
from transcriptkit import EVENTS, SESSION, open_broker, record, replay

from workbench.clock import FixedClock
from workbench.errors import BrokerError
from workbench.home import create_home
from workbench.testing.transcript import ReplayServer

pytestmark = [pytest.mark.usefixtures("ib_log_check"), pytest.mark.allow_ib_log("Peer closed")]


def test_the_committed_transcript_replays_to_its_recorded_audit_events(tmp_path: Path) -> None:
    """The committed session (recorded against the loopback gateway) replayed: the adapter
    sends exactly what was recorded and records exactly the events recorded then."""
    events, problems = replay(SESSION, tmp_path)
    assert problems == []
    assert events == json.loads(EVENTS.read_text())


def test_a_session_recorded_through_the_proxy_replays_to_the_same_audit_events(
    tmp_path: Path,
) -> None:
    """Record a session (fills, a drop and the reconnect's adoption, a cancel) through the
    proxy, replay the transcript: the same audit events, no mismatch."""
    path = tmp_path / "session.jsonl"
    recorded, _ = record(path, tmp_path)
    replayed, problems = replay(path, tmp_path)
    assert problems == []
    assert replayed == recorded
    kinds = [e["type"] for e in recorded]
    assert (
        "OrderFilled" in kinds and "OrderCancelled" in kinds and kinds.count("BrokerConnected") == 2
    )


def test_the_transcript_masks_account_ids_and_amounts_and_keeps_prices(tmp_path: Path) -> None:
    """The real account id and the account's money never reach the file; fills keep their
    prices and sizes."""
    path = tmp_path / "session.jsonl"
    _, accounts = record(path, tmp_path)
    text = path.read_text()
    assert accounts == {"DU1234567": "DU0000001"} and "DU1234567" not in text
    entries = [json.loads(line) for line in text.splitlines()[1:]]
    values = {e["fields"][2]: e["fields"][3] for e in entries
              if e.get("dir") == "s2c" and e["fields"][:2] == ["6", "2"]}  # fmt: skip
    assert values["NetLiquidation"] not in ("1000000", "1000000.00")
    fills = [e["fields"] for e in entries if e.get("fields", [""])[0] == "11"]
    assert {(f[4], f[19], f[20]) for f in fills} == {
        ("SPY", "10", "590.01"),
        ("IWM", "3", "225.01"),
    }


@pytest.mark.allow_ib_log("replay: connection 1 expected")
def test_a_client_that_sends_something_else_fails_its_replay(tmp_path: Path) -> None:
    """A changed client (another order than the one recorded) is caught: the replay server
    names the message that differs and closes the connection."""
    clock = FixedClock(TRADING_NOW)
    server = ReplayServer(SESSION).start()
    try:
        log, broker = open_broker(create_home(tmp_path / "h"), server.port, clock)
        try:
            with pytest.raises(BrokerError):
                broker.submit(permit_for(log, "p-1", intent("SPY", 11, account=broker.account)))
        finally:
            broker.close()
            log.close()
    finally:
        server.stop()
    assert len(server.problems) == 1 and "'11.0'" in server.problems[0]
