"""Orders of unknown outcome: a token spent, and no broker acknowledgement.

One arises from a crash between the transaction that spends a token (``OrderSubmitted``) and the
broker call — an *orphan*, which :func:`find` spots when ``workbench reconcile`` compares the log
with the broker's orders — or from an order whose answer a lost connection swallowed (the IBKR
adapter after a reconnect). Either way it is recorded UNKNOWN (``OrderOutcomeUnknown``, through
the order table), never re-sent, and no new order on its symbol goes (R13) until an approver
resolves it with :func:`resolve`, after asking the broker:

- ``NOT_SENT``: the broker holds no order with the proposal's orderRef (→ NOT_SENT, final);
- ``SENT`` with the broker's order id: the broker holds that order, with that orderRef
  (→ CONFIRMED; the broker's own updates carry it on).

A resolution carries the approval key's MAC over its fields and the proposal id; one that does not
verify (written behind the workbench's back) leaves the order unresolved (:func:`is_unresolved`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from workbench import keys, records
from workbench.audit import AuditLog, EventType, Transaction
from workbench.authority import Authority, Credential
from workbench.errors import ConfigError, UnresolvedOrderError
from workbench.events import OrderOutcomeUnknown, OrderResolved, PermitRefused, Resolution
from workbench.lifecycle import OrderState, advance
from workbench.models import Side
from workbench.orders import BrokerOrder, OrderRole
from workbench.records import ProposalRecord

RESOLUTION_DOMAIN = "resolution"
_PROPOSAL_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_ORDER_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable, no spaces: what brokers use as ids
ACTOR = "reconcile"
ACTION = "resolve an order of unknown outcome"


@dataclass(frozen=True, slots=True)
class Orphan:
    """An order of unknown outcome and what is known of it: the proposal, the order, when its
    token was spent (market time) and what the broker said (or that it holds nothing)."""

    proposal_id: str
    state: OrderState  # SUBMITTED (found now, not yet recorded) or UNKNOWN (recorded)
    symbol: str
    side: Side
    quantity: Decimal
    account: str
    order_ref: str
    spent_at: datetime
    broker_answer: str


def resolution_verifies(key: bytes | None, proposal_id: str, resolved: OrderResolved) -> bool:
    """Whether the resolution's MAC is the approval key's over its fields and ``proposal_id``."""
    return keys.verify(key, RESOLUTION_DOMAIN, resolved.signed(proposal_id), resolved.mac)


def is_unresolved(record: ProposalRecord, key: bytes | None, *, checked: bool) -> bool:
    """Whether ``record`` is an order of unknown outcome no approver has resolved: UNKNOWN now,
    or resolved by a resolution that does not verify with ``key`` (when ``checked``; a reader
    without the key takes resolutions as recorded)."""
    if record.state is OrderState.UNKNOWN:
        return True
    resolved = record.resolution
    if resolved is None or not checked:
        return False
    return not resolution_verifies(key, record.proposal_id, resolved.data)


def _theirs(held: Sequence[BrokerOrder], record: ProposalRecord, ref: str) -> list[BrokerOrder]:
    """The broker's parent orders for the proposal (by orderRef, or the proposal id it carries)."""
    pid = record.proposal_id
    return [
        o
        for o in held
        if o.role is OrderRole.PARENT and (o.order_ref == ref or o.proposal_id == pid)
    ]


def _answer(log: AuditLog, record: ProposalRecord, ref: str, held: list[BrokerOrder]) -> str:
    """What the broker said about the proposal: the order it holds now, else its last refusal
    of the permit, else what was recorded when the outcome was found unknown, else nothing."""
    if held:
        return "; ".join(f"it now holds order {o.order_id} ({o.status.value})" for o in held)
    refusals = log.events(
        proposal_id=record.proposal_id, types=(EventType.PERMIT_REFUSED,), newest_first=True
    )
    if refusals:
        return f"it refused the permit: {refusals[0].data_as(PermitRefused).reason}"
    if record.unknown is not None:
        return record.unknown.data.broker_answer
    return f"nothing: it holds no order with orderRef {ref}"


def find(
    log: AuditLog, held: Sequence[BrokerOrder], key: bytes | None, *, checked: bool
) -> list[Orphan]:
    """Every order of unknown outcome, oldest first: spent tokens whose order the broker does not
    hold (``held`` is every order it knows), and those recorded UNKNOWN and not resolved."""
    found = []
    for record in records.spent_and_open(log):
        submission = record.submission
        if submission is None:
            continue
        ref = submission.data.order_ref
        theirs = _theirs(held, record, ref)
        orphaned = record.state is OrderState.SUBMITTED and not theirs
        if orphaned or is_unresolved(record, key, checked=checked):
            intent = record.intent
            found.append(
                Orphan(
                    record.proposal_id, record.state, intent.symbol, intent.side,
                    intent.quantity, intent.account, ref, submission.data.spent_at,
                    _answer(log, record, ref, theirs),
                )
            )  # fmt: skip
    return found


def declare(tx: Transaction, orphan: Orphan, *, broker: str, found_by: str = ACTOR) -> None:
    """Record a just-found orphan UNKNOWN (its broker's answer with it); a no-op for one that
    was recorded before (UNKNOWN, or resolved by a resolution that does not verify)."""
    if orphan.state is not OrderState.SUBMITTED:
        return
    unknown = OrderOutcomeUnknown(
        order_ref=orphan.order_ref, broker=broker, broker_answer=orphan.broker_answer[:2000],
        found_by=found_by,
    )  # fmt: skip
    advance(tx, orphan.proposal_id, EventType.ORDER_OUTCOME_UNKNOWN, unknown, actor=ACTOR)


def declared(orphan: Orphan) -> Orphan:
    """The orphan as :func:`declare` leaves it."""
    if orphan.state is OrderState.SUBMITTED:
        return replace(orphan, state=OrderState.UNKNOWN)
    return orphan


def resolve(
    authority: Authority,
    held: Sequence[BrokerOrder],
    proposal_id: str,
    credential: Credential,
    outcome: Resolution,
    *,
    broker_order_id: str | None,
    broker: str,
    reason: str,
) -> OrderResolved:
    """Record an approver's resolution of an order of unknown outcome, after checking it against
    ``held`` (every order the broker holds now): NOT_SENT only if it holds none with the
    proposal's orderRef, SENT only naming one it holds with it. An orphan not yet recorded
    UNKNOWN is recorded so first, in the same transaction. The credential is verified here."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not 0 < len(text) <= 2000:
        raise ConfigError("a resolution's reason is 1 to 2000 characters")
    if not isinstance(proposal_id, str) or _PROPOSAL_ID.fullmatch(proposal_id) is None:
        raise ConfigError(f"malformed proposal id {proposal_id!r:.80}")
    if broker_order_id is not None and _ORDER_ID.fullmatch(broker_order_id) is None:
        raise ConfigError(f"malformed broker order id {broker_order_id!r:.80}")
    authority.require_private("resolve")
    name = authority.verify(credential, action=ACTION, proposal_id=proposal_id)
    secret = authority.key.load()
    log = authority.log
    with log.transaction() as tx:
        orphan = _the_orphan(log, held, proposal_id, secret)
        declare(tx, orphan, broker=broker, found_by="resolve")
        _check_against_broker(orphan, held, outcome, broker_order_id)
        draft = OrderResolved(
            outcome=outcome, broker_order_id=broker_order_id, order_ref=orphan.order_ref,
            broker=broker, approver=name, reason=text, mac="0" * 64,
        )  # fmt: skip
        mac = keys.mac(secret, RESOLUTION_DOMAIN, draft.signed(proposal_id))
        resolved = draft.model_copy(update={"mac": mac})
        advance(tx, proposal_id, EventType.ORDER_RESOLVED, resolved, actor=name)
    return resolved


def _the_orphan(log: AuditLog, held: Sequence[BrokerOrder], proposal_id: str, key: bytes) -> Orphan:
    for orphan in find(log, held, key, checked=True):
        if orphan.proposal_id == proposal_id:
            return orphan
    state = records.load(log, proposal_id).state  # UnknownProposalError when there is none
    raise UnresolvedOrderError(
        f"its outcome is not unknown (it is {state.value}): there is nothing to resolve",
        proposal_id=proposal_id,
    )


def _check_against_broker(
    orphan: Orphan, held: Sequence[BrokerOrder], outcome: Resolution, broker_order_id: str | None
) -> None:
    ref, pid = orphan.order_ref, orphan.proposal_id
    theirs = [o for o in held if o.role is OrderRole.PARENT and o.order_ref == ref]
    if outcome is Resolution.NOT_SENT:
        if broker_order_id is not None:
            raise UnresolvedOrderError(
                "an order never sent has no broker order id", proposal_id=pid
            )
        if theirs:
            ids = ", ".join(o.order_id for o in theirs)
            raise UnresolvedOrderError(
                f"the broker holds order {ids} with orderRef {ref}: it was sent"
                f" (resolve it with --sent-as {theirs[0].order_id})",
                proposal_id=pid,
            )
        return
    if not any(o.order_id == broker_order_id for o in theirs):
        holds = ", ".join(o.order_id for o in theirs) or "none"
        raise UnresolvedOrderError(
            f"the broker holds no order {broker_order_id!r} with orderRef {ref}"
            f" (its orders with that orderRef: {holds})",
            proposal_id=pid,
        )
