"""One chaos schedule end to end: the real adapter against a loopback gateway running the
gateway's seeded fault schedule (``chaos_schedule``), a few orders, then the world healed and
the invariants checked. Shared by ``test_ibkr_chaos.py`` and ``bench/chaos.py``.

Cheap by design: the permits are minted once in a template home (each needs an approver's scrypt
check), and every schedule runs on a copy of it; no wall-clock sleep anywhere: the adapter's
reconnect waits move the gateway's clock, and the driver moves it on to release delays and
refused connects."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from brokerkit import intent, permit_for, with_stop
from ibkrkit import connect

from workbench.audit import AuditLog
from workbench.brokers.ibkr import IbkrBroker
from workbench.clock import FixedClock
from workbench.errors import BrokerError
from workbench.home import create_home
from workbench.keys import ApprovalKey
from workbench.lifecycle import TERMINAL_STATES, OrderState, current_state
from workbench.models import SubmitPermit
from workbench.testing import Gateway, GatewayConfig, chaos_schedule

ACCOUNT = "DU1234567"
ORDERS = (("SPY", 10, Decimal("560")), ("QQQ", 5, None), ("IWM", 3, Decimal("150")))
RATE = 0.6  # the share of orders that meet a fault
WAIT = 10.0  # seconds at most for the adapter to be back (gateway time moves, not wall time)
HEALS = 6  # rounds of "move the clock, restore IB's link, wait for the adapter" at most


@dataclass(frozen=True)
class Template:
    """A home with one permit per order already minted (token spent, order not yet sent)."""

    home: Path
    permits: tuple[SubmitPermit, ...]


def make_template(root: Path, clock: FixedClock) -> Template:
    home = create_home(root / "template")
    with AuditLog(home / "workbench.sqlite", clock=clock) as log:
        permits = []
        for i, (symbol, quantity, stop) in enumerate(ORDERS):
            order = intent(symbol, quantity, account=ACCOUNT)
            order = with_stop(order, stop) if stop is not None else order
            permits.append(permit_for(log, f"p-{i}", order))
    return Template(home, tuple(permits))


@dataclass
class Outcome:
    """What one schedule did: how many faults fired and how each proposal ended."""

    seed: int
    fired: int
    states: dict[str, OrderState]


def run_schedule(seed: int, template: Template, work: Path, clock: FixedClock) -> Outcome:
    """Run ``seed``'s schedule on a copy of the template; AssertionError when an invariant
    fails (see :func:`check`)."""
    home = work / f"s{seed}"
    shutil.copytree(template.home, home)
    with Gateway(GatewayConfig(), start=clock.now()) as gw:
        gw.faults.install(chaos_schedule(seed, orders=len(ORDERS), rate=RATE))
        log = AuditLog(home / "workbench.sqlite", clock=clock)
        broker = connect(log, gw, key=ApprovalKey(home), timeouts=TIMEOUTS, pacing=PACING)
        try:
            for permit in template.permits:
                with contextlib.suppress(BrokerError):  # refused, rejected, unknown: see check
                    broker.submit(permit)
                heal(gw, broker)
            heal(gw, broker, final=True)
            states = check(gw, broker, log, template)
        finally:
            broker.close()
            log.close()
        fired = len(gw.faults.fired())
    shutil.rmtree(home)
    return Outcome(seed, fired, states)


# An order IB does not acknowledge (a delayed ack, a bracket whose stop was refused) is given up
# on after 1 s (it is then reconciled); the throttle in 1 s windows (not the policy's 0.1 s
# steps: pacing is not what this test is about, and the fine steps cost a few tenths per
# connection).
TIMEOUTS = {"connect_seconds": 5, "request_seconds": 5, "order_seconds": 1}
PACING = {"max_messages": 45, "per_seconds": 1}


def heal(gw: Gateway, broker: IbkrBroker, *, final: bool = False) -> None:
    """Move the gateway's clock past every delay and refused window, restore IB's link after a
    1100, and wait until the adapter is connected and reconciled; ``final`` also drops the
    connection once more, so a last reconciliation adopts whatever is left."""
    for _ in range(HEALS):
        gw.advance(60)
        if gw.connectivity_lost:
            gw.send_error(1102)
        generation = broker.session.link.generation
        if final:
            gw.drop_connections()
            final = False
            assert broker.wait_ready(WAIT, after=generation), broker.session.link.status()
            continue
        if not broker.wait_ready(WAIT):
            raise AssertionError(f"the adapter is not back: {broker.session.link.status()}")
        try:
            broker.settle()
        except BrokerError:
            continue  # it dropped meanwhile: heal again
        if broker.session.link.ready and not gw.connectivity_lost and gw.next_due() is None:
            return
    raise AssertionError(f"the world did not heal in {HEALS} rounds")


def check(
    gw: Gateway, broker: IbkrBroker, log: AuditLog, template: Template
) -> dict[str, OrderState]:
    """The invariants: no order sent twice, every execution recorded exactly once (and nothing
    else), every proposal terminal or UNKNOWN — UNKNOWN only when IB holds no parent order for
    it —, the audit chain verifies."""
    placed = [(r["orderRef"], r["action"]) for r in gw.received("placeOrder") if not r.dropped]
    assert len(placed) == len(set(placed)), f"an order was sent twice: {placed}"
    ids = [r["orderId"] for r in gw.received("placeOrder")]
    assert len(ids) == len(set(ids)), f"an order id was used twice: {ids}"
    executed = sorted((e.exec_id, e.shares) for e in gw.executions())
    recorded = sorted((f.exec_id, f.quantity) for f in broker.executions())
    assert recorded == executed, f"fills lost or counted twice: {recorded} != {executed}"
    held = {o.order_ref for o in gw.orders() if o.parent_id == 0}  # parents IB holds
    states = {}
    for permit in template.permits:
        state = current_state(log, permit.proposal_id)
        states[permit.proposal_id] = state
        assert state in TERMINAL_STATES or state is OrderState.UNKNOWN, (permit.proposal_id, state)
        if state is OrderState.UNKNOWN:
            assert permit.order_ref not in held, f"{permit.proposal_id} is at IB, yet UNKNOWN"
    assert log.verify().ok
    return states
