"""A session recorded through the recording proxy, and replayed: the scenario, and the adapter's
audit events in a comparable form.

Regenerate the committed transcript (after a deliberate change to what the adapter sends):
``.venv/bin/python tests/brokers/transcriptkit.py`` — it records the scenario against the loopback
gateway through the proxy, and writes the transcript and the adapter's events beside it."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from brokerkit import TRADING_NOW, intent, permit_for, with_stop  # noqa: E402

from workbench.audit import AuditLog  # noqa: E402
from workbench.broker_policy import load_broker_policy  # noqa: E402
from workbench.brokers.ibkr import IbkrBroker  # noqa: E402
from workbench.clock import FixedClock  # noqa: E402
from workbench.errors import OrderOutcomeUnknownError  # noqa: E402
from workbench.home import create_home  # noqa: E402
from workbench.keys import ApprovalKey  # noqa: E402
from workbench.models import OrderType, TimeInForce  # noqa: E402
from workbench.testing import Gateway, GatewayConfig, Phase, Step  # noqa: E402
from workbench.testing.transcript import RecordingProxy, ReplayServer  # noqa: E402

HERE = Path(__file__).resolve().parents[1] / "data" / "transcripts"
SESSION = HERE / "loopback-session.jsonl"
EVENTS = HERE / "loopback-session.events.json"
ADAPTER = "ibkr-broker"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def open_broker(home: Path, port: int, clock: FixedClock) -> tuple[AuditLog, IbkrBroker]:
    log = AuditLog(home / "workbench.sqlite", clock=clock)
    policy = load_broker_policy(POLICIES)
    settings = policy.ibkr.with_overrides(port=port, client_id=1)
    digest = policy.digest
    broker = IbkrBroker.connect(log, settings, key=ApprovalKey(home), config_hash=digest)
    return log, broker


def scenario(broker: IbkrBroker, log: AuditLog, drop: Callable[[], object] | None = None) -> None:
    """What the session does: a market bracket that fills, a resting limit, a market order whose
    acknowledgement is lost with the socket (adopted after the reconnect), the limit cancelled."""
    account = broker.account
    broker.submit(permit_for(log, "p-1", with_stop(intent("SPY", 10, account=account),
                                                   Decimal("560"))))  # fmt: skip
    resting = intent("QQQ", 4, account=account, order_type=OrderType.LMT,
                     limit_price=Decimal("300"), time_in_force=TimeInForce.GTC)  # fmt: skip
    broker.submit(permit_for(log, "p-2", resting))
    generation = broker.session.link.generation
    if drop is not None:
        drop()
    with contextlib.suppress(OrderOutcomeUnknownError):  # its ack went with the socket
        broker.submit(permit_for(log, "p-3", intent("IWM", 3, account=account)))
    assert broker.wait_ready(10, after=generation)
    broker.settle()
    broker.cancel(proposal_id="p-2")


def adapter_events(log: AuditLog, accounts: dict[str, str], port: int) -> list[dict[str, object]]:
    """The adapter's events (type, proposal, payload), with the endpoint's port and the account
    ids masked as the transcript masks them."""
    found = []
    for event in log.events():
        if event.actor != ADAPTER:
            continue
        text = event.payload_json.replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
        for real, masked in accounts.items():
            text = text.replace(real, masked)
        found.append({"type": event.type, "proposal_id": event.proposal_id,
                      "payload": json.loads(text)})  # fmt: skip
    return found


def record(path: Path, work: Path) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Run the scenario against the loopback gateway through the recording proxy: the adapter's
    events (masked as the transcript is) and the account mapping."""
    clock = FixedClock(TRADING_NOW)
    home = create_home(work / "recorded")
    with Gateway(GatewayConfig(), start=clock.now()) as gw:
        proxy = RecordingProxy(path, (gw.host, gw.port)).start()
        try:
            log, broker = open_broker(home, proxy.port, clock)
            try:
                scenario(broker, log, lambda: gw.faults.drop(Step.ACK, Phase.BEFORE))
            finally:
                broker.close()
            accounts = dict(proxy.transcript.sanitiser.accounts)
            events = adapter_events(log, accounts, proxy.port)
            log.close()
        finally:
            proxy.stop()
    return events, accounts


def replay(path: Path, work: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Run the scenario against the replay of ``path``: the adapter's events, and the replay
    server's mismatches."""
    clock = FixedClock(TRADING_NOW)
    home = create_home(work / "replayed")
    server = ReplayServer(path).start()
    try:
        log, broker = open_broker(home, server.port, clock)
        try:
            scenario(broker, log)
        finally:
            broker.close()
        events = adapter_events(log, {}, server.port)
        log.close()
    finally:
        server.stop()
    return events, server.problems


if __name__ == "__main__":
    HERE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        recorded, _ = record(SESSION, Path(tmp))
    EVENTS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SESSION} and {EVENTS} ({len(recorded)} adapter events)")
