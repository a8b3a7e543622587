"""The shared permit check: a broker sends only what the whole chain in the log proves.

Each test breaks one link of a real chain (or forges the chain, sometimes even with the approval
key, as code running as the home's user could) and shows the paper broker refusing through the
shared check, naming the link, recording the refusal, and sending nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    ALICE_CRED,
    POLICIES,
    authority_with,
    make_intent,
    payload_for,
    raw_insert,
    request_approval,
)

from workbench import canonical, keys, trading_state
from workbench.approval import GRANT_DOMAIN, Approvals
from workbench.audit import AuditLog, EventType
from workbench.authority import Authority
from workbench.brokers.paper import PaperBroker
from workbench.clock import FixedClock
from workbench.errors import AuditError, GuardedEventError, PermitRefusedError
from workbench.events import ApprovalGranted, OrderSubmitted, PermitRefused
from workbench.keys import ApprovalKey
from workbench.lifecycle import OrderState, advance, current_state
from workbench.models import Decision, OrderIntent, OrderType, Side, SubmitPermit
from workbench.permits import NO_KEY

PAPER = "PAPER1"


@dataclass
class Bench:
    """A home with alice enrolled, its approvals, and the paper broker with the key."""

    log: AuditLog
    home: Path
    authority: Authority
    approvals: Approvals
    broker: PaperBroker

    def order(self, quantity: int = 5, side: Side = Side.BUY, **changes: object) -> OrderIntent:
        """A limit order on the paper account priced through the touch so it fills."""
        price = Decimal(2000) if side is Side.BUY else Decimal(1)
        fields: dict[str, object] = {
            "account": PAPER, "quantity": Decimal(quantity), "side": side,
            "order_type": OrderType.LMT, "limit_price": price,
        }  # fmt: skip
        return make_intent(**{**fields, **changes})

    def real_permit(self, pid: str, order: OrderIntent | None = None) -> SubmitPermit:
        """A permit the only way there is: approved by alice, token spent by consume."""
        request_approval(self.log, pid, order or self.order())
        grant = self.approvals.approve(pid, ALICE_CRED)
        with self.log.transaction() as tx:
            return self.approvals.consume(tx, pid, grant.token, order_ref=f"wb:{pid}")

    def forged_permit(
        self,
        pid: str,
        *,
        decision: str = "APPROVE",
        with_key: bool = True,
        token_row: str = "same",
        expires_in: timedelta = timedelta(minutes=5),
    ) -> SubmitPermit:
        """A chain written without consume: a grant (MAC'd with the real key when ``with_key``,
        as a same-user forger could), a submission, and (``token_row``) a token_uses row."""
        order = self.order()
        request_approval(self.log, pid, order, decision=decision)
        token_id = secrets.token_hex(16)
        fields = {
            "approvers": (ALICE,), "token_id": token_id, "token_digest": "1" * 64,
            "expires_at": self.log.clock.now() + expires_in, "override_reason": None,
            "decision": Decision.APPROVE, "policy_hash": "ab" * 32,
            "intent_hash": order.intent_hash, "account": PAPER, "notional": None,
            "auto_commit": False,
        }  # fmt: skip
        draft = ApprovalGranted.model_validate({**fields, "mac": "2" * 64})
        if with_key:
            mac = keys.mac(ApprovalKey(self.home).load(), GRANT_DOMAIN, draft.signed(pid))
            draft = draft.model_copy(update={"mac": mac})
        submitted = OrderSubmitted(
            token_id=token_id, intent_hash=order.intent_hash, order_ref=f"wb:{pid}",
            approvers=(ALICE,), spent_at=self.log.clock.now(),
        )  # fmt: skip
        with self.log.transaction() as tx:
            advance(tx, pid, EventType.APPROVAL_GRANTED, draft, actor=ALICE)
            event = advance(tx, pid, EventType.ORDER_SUBMITTED, submitted, actor=ALICE)
            if token_row != "none":
                seq = event.seq - 1 if token_row == "other" else event.seq
                used = self.log.clock.now() + timedelta(seconds=token_row == "other-time")
                tx.execute(
                    "INSERT INTO token_uses VALUES (?, ?, ?, ?)",
                    (token_id, pid, canonical.utc_iso(used), seq),
                )
        return permit_at(pid, order, event.seq)

    def refused(self, permit: SubmitPermit, reason: str) -> None:
        """The broker refuses ``permit`` naming ``reason``, records why, and holds no order."""
        with pytest.raises(PermitRefusedError, match=reason):
            self.broker.submit(permit)
        assert self.broker.orders() == () and self.broker.executions() == ()
        found = self.log.events(types=(EventType.PERMIT_REFUSED,), newest_first=True, limit=1)
        assert found and reason.split("(")[0].strip() in found[0].data_as(PermitRefused).reason


def permit_at(pid: str, order: OrderIntent, seq: int) -> SubmitPermit:
    return SubmitPermit(
        proposal_id=pid, intent=order, intent_hash=order.intent_hash, submitted_seq=seq,
        order_ref=f"wb:{pid}", protective_stop=order.protective_stop,
    )  # fmt: skip


@pytest.fixture
def bench(home: Path, clock: FixedClock) -> Iterator[Bench]:
    log = AuditLog(home / "workbench.sqlite", clock=clock)
    authority = authority_with(log, home, ALICE_CRED)
    approvals = Approvals(log, authority, clock, policy_dir=POLICIES)
    broker = PaperBroker(log, key=ApprovalKey(home))
    yield Bench(log, home, authority, approvals, broker)
    log.close()


def test_a_permit_the_chain_proves_is_sent(bench: Bench) -> None:
    """The baseline: a permit from a real approval and spent token fills."""
    permit = bench.real_permit("p1")
    assert bench.broker.submit(permit).parent.proposal_id == "p1"
    assert current_state(bench.log, "p1") is OrderState.FILLED


def test_order_submitted_through_the_generic_append_is_refused(bench: Bench) -> None:
    """The issue's forgery, step one: wb.log.append(OrderSubmitted) is refused; nothing written."""
    request_approval(bench.log, "p1", bench.order())
    head = bench.log.head()
    submitted = {"token_id": "0" * 32, "intent_hash": bench.order().intent_hash,
                 "order_ref": "wb:p1", "approvers": ["mallory"]}  # fmt: skip
    with pytest.raises(GuardedEventError):
        bench.log.append(EventType.ORDER_SUBMITTED, submitted, actor="mallory", proposal_id="p1")
    assert bench.log.head() == head


def test_forged_chain_for_a_rejected_order_without_a_stop_while_halted_is_refused(
    bench: Bench,
) -> None:
    """The issue's forgery, in full: a gate-REJECTED order with no stop, while HALTED, with a
    grant and a submission chained straight into the file and a token_uses row planted: the
    chain still verifies, yet the broker refuses and sends nothing."""
    order = bench.order()  # no protective stop
    with bench.log.transaction() as tx:  # rejected by the gate: nothing may follow
        for type_ in (EventType.ORDER_PROPOSED, EventType.ORDER_SIMULATED):
            advance(tx, "p1", type_, payload_for(type_, order), actor="test")
        rejected = payload_for(EventType.RISK_GATE_EVALUATED, order, "REJECT")
        advance(tx, "p1", EventType.RISK_GATE_EVALUATED, rejected, actor="test")
    trading_state.halt(bench.log, reason="drill", by="ops")
    grant = ApprovalGranted(
        approvers=("mallory",), token_id="0" * 32, token_digest="1" * 64,
        expires_at=bench.log.clock.now() + timedelta(hours=1), override_reason=None,
        decision=Decision.APPROVE, policy_hash="ab" * 32, intent_hash=order.intent_hash,
        account=PAPER, notional=None, auto_commit=False, mac="2" * 64,
    )  # fmt: skip
    submitted = OrderSubmitted(token_id="0" * 32, intent_hash=order.intent_hash,
                               order_ref="wb:p1", approvers=("mallory",),
                               spent_at=bench.log.clock.now())  # fmt: skip
    raw_insert(bench.log, "ApprovalGranted", canonical.dumps(grant), pid="p1")
    raw_insert(bench.log, "OrderSubmitted", canonical.dumps(submitted), pid="p1")
    seq = bench.log.head()[0]
    bench.log.conn.execute("INSERT INTO token_uses VALUES (?, 'p1', 'x', ?)", ("0" * 32, seq))
    assert bench.log.verify().ok
    bench.refused(permit_at("p1", order, seq), "do not follow the lifecycle table")


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ({"token_row": "none"}, "no spent token"),
        ({"token_row": "other"}, "another submission"),
        ({"token_row": "other-time"}, "not the submission's"),
        ({"with_key": False}, "does not verify with the approval key"),
        ({"decision": "REVIEW"}, "REVIEW without a recorded override"),
        ({"expires_in": timedelta(seconds=-1)}, "spent after it expired"),
    ],
    ids=[
        "no token row",
        "token row of another seq",
        "token row of another time",
        "grant MAC",
        "REVIEW",
        "expired",
    ],
)
def test_one_missing_link_is_a_refusal(
    bench: Bench, defect: dict[str, object], reason: str
) -> None:
    """A chain written around consume (grants MAC'd even with the real key) lacks one proof:
    the spent token's row (for this seq and spend time), a grant the key signed, a gate APPROVE,
    a live token."""
    bench.refused(bench.forged_permit("p1", **defect), reason)  # type: ignore[arg-type]


def test_halted_now_or_at_the_submission_is_a_refusal(bench: Bench) -> None:
    """A permit spent before a HALT is not sent; nor one written while HALTED, even after a
    proper resume."""
    permit = bench.real_permit("p1")
    trading_state.halt(bench.log, reason="drill", by="ops")
    bench.refused(permit, "HALTED")
    forged = bench.forged_permit("p2")  # written while HALTED, with the key
    trading_state.resume(bench.authority, ALICE_CRED, reason="drill over")
    bench.refused(forged, "HALTED")


def test_reducing_sends_only_what_reduces(bench: Bench) -> None:
    """REDUCING: a buy is refused; a sell of part of the position goes."""
    bench.broker.submit(bench.real_permit("p1", bench.order(10)))
    buy, sell = bench.real_permit("p2", bench.order(3)), bench.real_permit("p3", bench.order(
        4, Side.SELL))  # fmt: skip
    trading_state.reduce(bench.log, reason="losses", by="ops")
    with pytest.raises(PermitRefusedError, match="REDUCING"):
        bench.broker.submit(buy)
    assert bench.broker.submit(sell).parent.status.value == "Filled"


def test_a_permit_pointing_at_another_proposals_submission_is_refused(bench: Bench) -> None:
    """A hand-built permit for an approved proposal, pointing at another's OrderSubmitted."""
    spent = bench.real_permit("p1")
    request_approval(bench.log, "p2", bench.order(7))
    bench.approvals.approve("p2", ALICE_CRED)
    bench.refused(permit_at("p2", bench.order(7), spent.submitted_seq), "belongs to proposal p1")


def test_a_broker_opened_without_the_key_refuses_every_permit(bench: Bench) -> None:
    """A read-only handle's broker never loads the key and sends nothing, even a real permit."""
    permit = bench.real_permit("p1")
    keyless = PaperBroker(bench.log, key=None)
    with pytest.raises(PermitRefusedError, match="without the approval key"):
        keyless.submit(permit)
    assert keyless.orders() == () and NO_KEY in keyless.permits.problem(permit, lambda: Decimal(0))


@pytest.mark.parametrize(
    ("type_", "drop"),
    [("ApprovalGranted", "intent_hash"), ("OrderSubmitted", "order_ref")],
)
def test_a_record_missing_a_field_proves_nothing(bench: Bench, type_: str, drop: str) -> None:
    """A grant without intent_hash, or a submission without order_ref, is refused on write and,
    planted in the file in its place, makes the permit check refuse (never equal by default)."""
    template = bench.forged_permit("p0")
    found = {e.type: e.payload for e in bench.log.events(proposal_id="p0")}
    broken = {k: v for k, v in found[type_].items() if k != drop}
    with pytest.raises(AuditError, match=f"{drop}: Field required"), bench.log.transaction() as tx:
        advance(tx, "p0", EventType(type_), broken, actor="mallory")
    order = bench.order()
    request_approval(bench.log, "p1", order)
    for kind in ("ApprovalGranted", "OrderSubmitted"):
        payload = broken if kind == type_ else found[kind]
        raw_insert(bench.log, kind, canonical.dumps(payload), pid="p1")
    seq = bench.log.head()[0]
    token_id = found["OrderSubmitted"]["token_id"]
    bench.log.conn.execute("UPDATE token_uses SET proposal_id = 'p1', submitted_seq = ?", (seq,))
    assert template.submitted_seq < seq and token_id
    permit = permit_at("p1", order, seq).model_copy(update={"order_ref": "wb:p0"})
    bench.refused(permit, "does not validate")
