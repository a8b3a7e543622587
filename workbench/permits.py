"""The permit check every broker runs before it sends anything: the whole chain, from the log.

A :class:`~workbench.models.SubmitPermit` is only a claim. :meth:`PermitCheck.problem` proves it
from the audit log and the approval key, and any link missing is a refusal:

1. the permit's intent hashes to its ``intent_hash``;
2. the event at ``submitted_seq`` is the proposal's ``OrderSubmitted`` for that hash and
   ``order_ref``, every state change of the proposal follows the lifecycle table, and it now
   stands at SUBMITTED;
3. a ``token_uses`` row for that token id, proposal and seq, spent at the submission's
   ``spent_at``: written in the same transaction by the only code that spends tokens;
4. the proposal's latest ``ApprovalGranted`` before it, whose MAC verifies with the approval key
   and whose token id, intent hash, account and policy hash match, not expired when spent (the
   submission's ``spent_at`` and the grant's ``expires_at`` are both market time: a replay's
   day; the event's own time is the wall clock it was written on);
5. the latest gate decision before it judged this intent under that policy: APPROVE, or REVIEW
   with the override reason the grant recorded;
6. the trading state (the verified fold) at the submission and now allows the order: HALTED
   none; REDUCING only an order that shrinks the position without flipping it.

A check opened without the key (a read-only handle: the MCP server, a reader) refuses every
permit. The paper broker runs this now; the IBKR adapter runs the same check before it places
an order.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from workbench import records
from workbench.approval import grant_verifies
from workbench.audit import AuditLog, EventType
from workbench.canonical import utc_iso
from workbench.errors import AuditError, CanonicalizationError, WorkbenchError
from workbench.events import OrderSubmitted
from workbench.intent_hash import intent_hash
from workbench.keys import ApprovalKey
from workbench.lifecycle import OrderState, illegal_step
from workbench.models import Decision, OrderIntent, SubmitPermit, TradingState
from workbench.records import ProposalRecord
from workbench.trading_state import read_state

NO_KEY = "opened without the approval key (read-only): it sends no order"


class PermitCheck:
    """Proves permits against one audit log with the home's approval key (or refuses them all)."""

    def __init__(self, log: AuditLog, key: ApprovalKey | None) -> None:
        self.log = log
        self.key = key

    def problem(self, permit: SubmitPermit, held: Callable[[], Decimal]) -> str | None:
        """Why ``permit`` must be refused, or None when the log proves it.

        ``held`` gives the account's current signed position in the permit's symbol (read only
        when trading is REDUCING).
        """
        if self.key is None:
            return NO_KEY
        try:
            return self._problem(self.key.load(), permit, held)
        except (AuditError, CanonicalizationError) as exc:
            return f"the audit log does not back it: {exc}"
        except WorkbenchError as exc:
            return str(exc)

    def _problem(self, key: bytes, permit: SubmitPermit, held: Callable[[], Decimal]) -> str | None:
        if intent_hash(permit.intent) != permit.intent_hash:
            return "the permit's intent_hash does not match its intent"
        submitted = self._submitted(permit)
        if isinstance(submitted, str):
            return submitted
        found = self.log.events(proposal_id=permit.proposal_id)
        illegal = illegal_step(found)
        if illegal is not None:
            return f"the proposal's events do not follow the lifecycle table ({illegal})"
        record = records.fold(e for e in found if e.seq <= permit.submitted_seq)
        if record is None:
            return "the proposal was never proposed"
        for check in (_intent_problem, _token_problem, _grant_problem, _decision_problem):
            problem = check(self.log, key, permit, submitted, record)
            if problem is not None:
                return problem
        return self._state_problem(permit, held)

    def _submitted(self, permit: SubmitPermit) -> OrderSubmitted | str:
        found = self.log.events(after_seq=permit.submitted_seq - 1, limit=1)
        if not found or found[0].seq != permit.submitted_seq:
            return f"no audit event at seq {permit.submitted_seq}"
        event = found[0]
        if event.type != EventType.ORDER_SUBMITTED.value:
            return f"audit event {event.seq} is {event.type}, not OrderSubmitted"
        if event.proposal_id != permit.proposal_id:
            return f"audit event {event.seq} belongs to proposal {event.proposal_id}"
        data = event.data_as(OrderSubmitted)
        if data.intent_hash != permit.intent_hash:
            return f"audit event {event.seq} records a different intent_hash"
        if data.order_ref != permit.order_ref:
            return f"audit event {event.seq} records a different order_ref"
        return data

    def _state_problem(self, permit: SubmitPermit, held: Callable[[], Decimal]) -> str | None:
        now = read_state(self.log, self.key)
        then = read_state(self.log, self.key, before=permit.submitted_seq)
        for change in (then, now):
            if change.state is TradingState.HALTED:
                return f"trading is HALTED ({change.reason})"
        if TradingState.REDUCING in (then.state, now.state) and not _reduces(permit.intent, held()):
            return "trading is REDUCING and this order does not reduce a position"
        return None


def _intent_problem(
    log: AuditLog, key: bytes, permit: SubmitPermit, sub: OrderSubmitted, record: ProposalRecord
) -> str | None:
    if record.state is not OrderState.SUBMITTED:
        return f"proposal is {record.state.value} at seq {permit.submitted_seq}, not SUBMITTED"
    current = records.load(log, permit.proposal_id).state
    if current is not OrderState.SUBMITTED:
        return f"proposal is {current.value}, not SUBMITTED"
    if record.submission is None or record.submission.seq != permit.submitted_seq:
        return "the permit's submission is not the proposal's latest"
    if record.intent_hash != permit.intent_hash or record.intent != permit.intent:
        return "the permit's intent is not the one proposed"
    if permit.protective_stop != record.intent.protective_stop:
        return "the permit's protective stop is not the proposed one"
    return None


def _token_problem(
    log: AuditLog, key: bytes, permit: SubmitPermit, sub: OrderSubmitted, record: ProposalRecord
) -> str | None:
    row = log.conn.execute(
        "SELECT proposal_id, submitted_seq, used_at FROM token_uses WHERE token_id = ?",
        (sub.token_id,),
    ).fetchone()
    if row is None:
        return "no spent token backs the submission (no token_uses row)"
    if (str(row[0]), int(row[1])) != (permit.proposal_id, permit.submitted_seq):
        return "the spent token belongs to another submission"
    if str(row[2]) != utc_iso(sub.spent_at):
        return "the spent token's record is not the submission's (another time)"
    return None


def _grant_problem(
    log: AuditLog, key: bytes, permit: SubmitPermit, sub: OrderSubmitted, record: ProposalRecord
) -> str | None:
    if record.grant is None:
        return "no approval was granted before the submission"
    grant = record.grant.data
    if not grant_verifies(key, permit.proposal_id, grant):
        return "the approval does not verify with the approval key"
    if grant.token_id != sub.token_id or grant.intent_hash != permit.intent_hash:
        return "the approval was for another token or intent"
    if grant.account != permit.intent.account or tuple(grant.approvers) != tuple(sub.approvers):
        return "the approval was for another account or approver"
    if sub.spent_at >= grant.expires_at:
        return "the token was spent after it expired"
    return None


def _decision_problem(
    log: AuditLog, key: bytes, permit: SubmitPermit, sub: OrderSubmitted, record: ProposalRecord
) -> str | None:
    if record.decision is None or record.grant is None:
        return "no gate decision before the submission"
    decision, grant = record.decision.data, record.grant.data
    if decision.intent_hash != permit.intent_hash:
        return "the latest gate decision judged another intent"
    if decision.policy_hash != grant.policy_hash:
        return "the latest gate decision was under another policy than the approval"
    if decision.decision is Decision.APPROVE:
        return None
    if decision.decision is Decision.REVIEW and grant.override_reason:
        return None
    return f"the latest gate decision is {decision.decision.value} without a recorded override"


def _reduces(intent: OrderIntent, held: Decimal) -> bool:
    """Whether the order shrinks the position without flipping it."""
    return held * intent.side.sign < 0 and intent.quantity <= abs(held)
