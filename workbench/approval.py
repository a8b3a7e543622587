"""One-time approval tokens: minted for a verified approver, spent atomically with the submission.

``approve`` verifies the approver's :class:`~workbench.authority.Credential` first, then mints a
token: ``base64url(claims) + "." + hex(HMAC-SHA256(key, claims))`` where the claims are the
canonical JSON of (proposal_id, intent_hash, account, policy_hash, nonce, expires_at) and the key is
the home's approval key (``workbench.keys``). The ``ApprovalGranted`` event records only the
token's sha256, and carries its own MAC over every field, so a grant written by anything but this
module never verifies. ``consume`` runs inside the caller's audit transaction, writes
``OrderSubmitted`` and the ``token_uses`` row together, and is the only producer of a
:class:`~workbench.models.SubmitPermit`. Nothing is held in memory: tokens survive a restart.

Approval settings (token lifetime, second approver, auto-commit) come only from the risk policy
loaded from the policies folder: no caller hands them in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from workbench import autocommit, canonical, db, keys, records, trading_state
from workbench.audit import AuditLog, Event, EventType, Transaction
from workbench.authority import ACTOR, AUTO_COMMIT, MIGRATIONS, Authority, Credential
from workbench.clock import Clock
from workbench.errors import ApprovalError, IllegalTransitionError
from workbench.events import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    OrderSubmitted,
    Payload,
    RiskGateEvaluated,
)
from workbench.lifecycle import OrderState, advance
from workbench.models import AccountId, Decision, Sha256Hex, SubmitPermit, TradingState
from workbench.orders import PROPOSAL_ID_RE
from workbench.policy import RiskPolicy, load_policy, policy_hash
from workbench.records import ProposalRecord

TOKEN_RE = re.compile(r"([A-Za-z0-9_\-]{1,1024})\.([0-9a-f]{64})")
MAX_REASON = 2000
MAX_EXPIRY = timedelta(hours=1)
GRANT_DOMAIN = "grant"


class TokenClaims(BaseModel):
    """What a token says, signed: the proposal, its intent, account, policy, nonce and expiry."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1]
    proposal_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    intent_hash: Sha256Hex
    account: AccountId
    policy_hash: Sha256Hex
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    expires_at: Annotated[str, StringConstraints(pattern=r"^[0-9T:.\-]{26}Z$")]


@dataclass(frozen=True, slots=True)
class ApprovalGrant:
    """The result of :meth:`Approvals.approve`; ``token`` is shown once and stored nowhere."""

    proposal_id: str
    token_id: str
    expires_at: datetime
    approvers: tuple[str, ...]
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Judged:
    """A proposal with its latest gate decision (one that names the intent it judged)."""

    record: ProposalRecord
    decision: RiskGateEvaluated

    @property
    def policy_hash(self) -> str:
        assert self.decision.policy_hash is not None  # checked by _load for non-REJECTs
        return self.decision.policy_hash


class Approvals:
    """Token minting and atomic consumption over one audit log, for verified approvers."""

    def __init__(
        self,
        log: AuditLog,
        authority: Authority,
        clock: Clock,
        *,
        policy_dir: str | os.PathLike[str],
        request_ttl: timedelta | None = None,
    ) -> None:
        """Approvals on ``log`` whose settings come from the risk policy in ``policy_dir``."""
        if authority.log is not log:
            raise ApprovalError("approvals and their authority must share one audit log")
        self.log = log
        self.authority = authority
        self.clock = clock
        self.policy_dir = Path(policy_dir)
        self.policy: RiskPolicy = load_policy(self.policy_dir)
        self.expiry = timedelta(seconds=self.policy.approval.token_expiry_seconds)
        if not timedelta(0) < self.expiry <= MAX_EXPIRY:
            raise ApprovalError(f"token expiry must be within (0, {MAX_EXPIRY}], got {self.expiry}")
        self.second_approver_above = self.policy.approval.second_approver_min_notional
        self.request_ttl = request_ttl
        db.migrate(log.conn, "approval", MIGRATIONS)

    def __repr__(self) -> str:
        return f"Approvals(log={self.log.path}, expiry={self.expiry})"

    # -- approve / reject ----------------------------------------------------------------------

    def approve(
        self,
        proposal_id: str,
        credential: Credential,
        *,
        override_reason: str | None = None,
        second: Credential | None = None,
    ) -> ApprovalGrant:
        """Verify the credential(s), then mint a one-time token and record ApprovalGranted."""
        _check_proposal_id(proposal_id)
        self.authority.require_private("approve")
        credentials = [credential] if second is None else [credential, second]
        names = self.authority.verify_all(credentials, action="approve", proposal_id=proposal_id)
        reason = _clean_reason(override_reason)
        key = self.authority.key.load()
        with self.log.transaction() as tx:
            judged = _load(tx.log, proposal_id)
            self._check_approvable(proposal_id, judged, reason, names)
            claims = self._claims(proposal_id, judged)
            token = _sign(key, claims)
            grant = _grant(key, proposal_id, claims, token, names, reason, judged, auto=False)
            _advance(tx, proposal_id, EventType.APPROVAL_GRANTED, grant, actor=names[0])
        expires = datetime.fromisoformat(claims.expires_at)
        return ApprovalGrant(proposal_id, claims.nonce, expires, names, token)

    def auto_approve(self, proposal_id: str) -> ApprovalGrant:
        """Mint a token with no person, only when the auto-commit policy allows this proposal.

        The rules are read from the risk policy file now, and that policy must be the one the
        gate judged the proposal under (same hash). Everything judged is read back from the audit
        log inside the transaction (intent, simulation, gate verdict, verified trading state),
        never taken from the caller. The grant is recorded with approver ``auto-commit``.
        """
        _check_proposal_id(proposal_id)
        self.authority.require_private("auto-commit")
        policy = load_policy(self.policy_dir)
        if not policy.approval.auto_commit.enabled:
            raise ApprovalError("auto-commit is off", proposal_id=proposal_id)
        self.authority.key.create()  # a home may auto-commit before its first approver enrols
        key = self.authority.key.load()
        with self.log.transaction() as tx:
            judged = _load(tx.log, proposal_id)
            self._check_approvable(proposal_id, judged, None, [AUTO_COMMIT])
            why = self._auto_commit_refusal(policy, judged)
            if why is not None:
                raise ApprovalError(f"auto-commit refused: {why}", proposal_id=proposal_id)
            claims = self._claims(proposal_id, judged)
            token = _sign(key, claims)
            names = (AUTO_COMMIT,)
            grant = _grant(key, proposal_id, claims, token, names, None, judged, auto=True)
            _advance(tx, proposal_id, EventType.APPROVAL_GRANTED, grant, actor=AUTO_COMMIT)
        expires = datetime.fromisoformat(claims.expires_at)
        return ApprovalGrant(proposal_id, claims.nonce, expires, names, token)

    def _auto_commit_refusal(self, policy: RiskPolicy, judged: _Judged) -> str | None:
        if policy.digest != judged.policy_hash:
            return "the gate judged it under another policy than the one on file"
        sim = judged.record.sim
        return autocommit.refusal(
            policy.approval.auto_commit,
            judged.record.intent,
            decision=judged.decision.decision.value,
            severities=[v.severity.value for v in judged.decision.violations],
            notional=judged.record.notional,
            nav=None if sim is None else sim.nav_before,
            state=trading_state.current_state(self.log, self.authority.key),
            now=self.clock.now(),
        )

    def reject(self, proposal_id: str, credential: Credential, reason: str) -> None:
        """Verify the credential, then record ApprovalDenied with the approver's reason."""
        _check_proposal_id(proposal_id)
        name = self.authority.verify(credential, action="reject", proposal_id=proposal_id)
        text = _clean_reason(reason)
        if text is None:
            raise ApprovalError("a rejection needs a reason", proposal_id=proposal_id)
        with self.log.transaction() as tx:
            denied = ApprovalDenied(approver=name, reason=text)
            _advance(tx, proposal_id, EventType.APPROVAL_DENIED, denied, actor=name)

    def _check_approvable(
        self, proposal_id: str, judged: _Judged, reason: str | None, names: Sequence[str]
    ) -> None:
        def refuse(why: str) -> ApprovalError:
            return ApprovalError(why, proposal_id=proposal_id)

        state, decision = judged.record.state, judged.decision.decision
        if state is not OrderState.APPROVAL_REQUESTED:
            raise refuse(f"not awaiting approval (state {state.value})")
        if decision is Decision.REJECT:
            raise refuse("the risk gate rejected this proposal; it can never be approved")
        if decision is Decision.REVIEW and reason is None:
            raise refuse("the risk gate asked for review: an override reason is required")
        if self._needs_second(judged.record.notional) and len(names) < 2:
            raise refuse(f"notional {judged.record.notional} needs a second approver")

    def _needs_second(self, notional: Decimal | None) -> bool:
        limit = self.second_approver_above
        return limit is not None and (notional is None or notional > limit)

    def _claims(self, proposal_id: str, judged: _Judged) -> TokenClaims:
        expires = canonical.utc_iso(self.clock.now() + self.expiry)
        return TokenClaims(
            v=1,
            proposal_id=proposal_id,
            intent_hash=judged.record.intent_hash,
            account=judged.record.intent.account,
            policy_hash=judged.policy_hash,
            nonce=secrets.token_hex(16),
            expires_at=expires,
        )

    # -- consume -------------------------------------------------------------------------------

    def check_token(self, proposal_id: str, token: str) -> ProposalRecord:
        """Refuse a token that could not be spent on ``proposal_id`` now — malformed, a bad MAC,
        another proposal's, already used, expired, not the latest grant's, issued under another
        policy than the one on file, or the proposal not approved and unused — reading only:
        nothing is recorded. Returns the proposal's record. :meth:`consume` checks it all again
        under the write lock."""
        _check_proposal_id(proposal_id)
        self.authority.require_private("submit")
        key = self.authority.key.load()
        claims, judged, _ = self._spendable(proposal_id, token, key, self.clock.now())
        if claims.policy_hash != policy_hash(self.policy):
            raise ApprovalError(
                "token refused: the risk policy changed since the approval", proposal_id=proposal_id
            )
        return judged.record

    def _spendable(
        self, proposal_id: str, token: str, key: bytes, now: datetime
    ) -> tuple[TokenClaims, _Judged, ApprovalGranted]:
        """The token's claims, the proposal and its grant, when the token may be spent at
        ``now``; an ApprovalError saying why not otherwise. Reads only."""
        claims = _verify(key, token, proposal_id)
        used = self.log.conn.execute("SELECT 1 FROM token_uses WHERE token_id = ?", (claims.nonce,))
        if used.fetchone() is not None:
            raise ApprovalError("token refused: already used", proposal_id=proposal_id)
        judged = _load(self.log, proposal_id)
        grant = self._check_consumable(proposal_id, judged, claims, token, key, now)
        return claims, judged, grant

    def consume(
        self, tx: Transaction, proposal_id: str, token: str, *, order_ref: str, actor: str = ACTOR
    ) -> SubmitPermit:
        """Spend ``token`` on ``proposal_id`` in ``tx``: record OrderSubmitted, return a permit."""
        _check_proposal_id(proposal_id)
        if tx.log is not self.log or not tx.conn.in_transaction:
            raise ApprovalError("consume must run inside this log's open transaction")
        if not isinstance(order_ref, str) or not 0 < len(order_ref) <= 128:
            raise ApprovalError("order_ref must be 1 to 128 characters", proposal_id=proposal_id)
        self.authority.require_private("submit")
        key = self.authority.key.load()
        now = self.clock.now()  # the one instant the token is checked and recorded as spent at
        claims, judged, grant = self._spendable(proposal_id, token, key, now)
        change = trading_state.read_state(tx.log, self.authority.key)
        if change.state is TradingState.HALTED:
            raise ApprovalError(f"trading is HALTED ({change.reason})", proposal_id=proposal_id)
        submitted = OrderSubmitted(
            token_id=claims.nonce,
            intent_hash=claims.intent_hash,
            order_ref=order_ref,
            approvers=grant.approvers,
            spent_at=now,
        )
        event = _advance(tx, proposal_id, EventType.ORDER_SUBMITTED, submitted, actor=actor)
        _record_use(tx, claims.nonce, proposal_id, now, event.seq)
        intent = judged.record.intent
        return SubmitPermit(
            proposal_id=proposal_id,
            intent=intent,
            intent_hash=claims.intent_hash,
            submitted_seq=event.seq,
            order_ref=order_ref,
            protective_stop=intent.protective_stop,
        )

    def _check_consumable(
        self,
        proposal_id: str,
        judged: _Judged,
        claims: TokenClaims,
        token: str,
        key: bytes,
        now: datetime,
    ) -> ApprovalGranted:
        def refuse(why: str) -> ApprovalError:
            return ApprovalError(f"token refused: {why}", proposal_id=proposal_id)

        record = judged.record
        if record.state is not OrderState.APPROVAL_GRANTED or record.grant is None:
            raise refuse(f"proposal is not approved and unused (state {record.state.value})")
        granted = record.grant.data
        if not grant_verifies(key, proposal_id, granted):
            raise refuse("the recorded approval does not verify with the approval key")
        # The latest gate verdict (a submit-time re-check included) must still allow the order.
        decision = judged.decision.decision
        if decision is Decision.REJECT:
            raise refuse("the latest risk decision (re-checked at submit) is REJECT")
        if decision is Decision.REVIEW and granted.override_reason is None:
            raise refuse("the latest risk decision is REVIEW and no override reason was recorded")
        if judged.policy_hash != claims.policy_hash:
            raise refuse("the risk policy changed since the approval")
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        if not hmac.compare_digest(digest, granted.token_digest):
            raise refuse("it is not the token issued by the latest approval")
        expected = (granted.token_id, granted.intent_hash, granted.policy_hash)
        if expected != (claims.nonce, claims.intent_hash, claims.policy_hash):
            raise refuse("it does not match the recorded approval")
        if (record.intent_hash, record.intent.account) != (claims.intent_hash, claims.account):
            raise refuse("it was issued for a different intent or account")
        if now >= datetime.fromisoformat(claims.expires_at):
            raise refuse(f"it expired at {claims.expires_at}")
        return granted

    # -- expiry --------------------------------------------------------------------------------

    def expire_stale(self, now: datetime | None = None) -> list[str]:
        """Record ApprovalExpired for unused tokens past expiry (and requests past their TTL)."""
        when = now if now is not None else self.clock.now()
        expired: list[str] = []
        with self.log.transaction() as tx:
            for pid in _pending_ids(tx.log):
                reason = self._stale_reason(records.load(tx.log, pid), when)
                if reason is not None:
                    payload = ApprovalExpired(reason=reason, at=when)
                    advance(tx, pid, EventType.APPROVAL_EXPIRED, payload, actor=ACTOR)
                    expired.append(pid)
        return expired

    def _stale_reason(self, record: ProposalRecord, when: datetime) -> str | None:
        granted = record.state is OrderState.APPROVAL_GRANTED
        if granted and (record.grant is None or when >= record.grant.data.expires_at):
            return "approval token expired unused"
        if record.state is OrderState.APPROVAL_REQUESTED and self.request_ttl is not None:
            requested = _requested_at(self.log, record.proposal_id)
            if requested is not None and when >= requested + self.request_ttl:
                return f"approval request older than {self.request_ttl}"
        return None


def grant_verifies(key: bytes | None, proposal_id: str, grant: ApprovalGranted) -> bool:
    """Whether the grant's MAC is the approval key's over its fields and ``proposal_id``."""
    return keys.verify(key, GRANT_DOMAIN, grant.signed(proposal_id), grant.mac)


# -- helpers -----------------------------------------------------------------------------------


def _check_proposal_id(proposal_id: object) -> None:
    if not isinstance(proposal_id, str) or PROPOSAL_ID_RE.fullmatch(proposal_id) is None:
        raise ApprovalError(f"malformed proposal id {proposal_id!r:.80}")


def _clean_reason(reason: object) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApprovalError(f"a reason is text of at most {MAX_REASON} characters")
    return reason.strip() or None


# -- tokens ----------------------------------------------------------------------------------


def _mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _sign(key: bytes, claims: TokenClaims) -> str:
    body = canonical.dumps(claims).encode("ascii")
    return f"{base64.urlsafe_b64encode(body).rstrip(b'=').decode('ascii')}.{_mac(key, body)}"


def _verify(key: bytes, token: object, proposal_id: str) -> TokenClaims:
    """The claims of a well-formed token with a valid MAC for ``proposal_id``; raise otherwise."""

    def refuse(why: str) -> ApprovalError:
        return ApprovalError(f"token refused: {why}", proposal_id=proposal_id)

    match = TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise refuse("malformed token")
    encoded, mac = match.groups()
    body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    if base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii") != encoded:
        raise refuse("malformed token")
    if not hmac.compare_digest(_mac(key, body), mac):
        raise refuse("bad signature (tampered, or signed with another key)")
    try:
        claims = TokenClaims.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise refuse("malformed claims") from exc
    if claims.proposal_id != proposal_id:
        raise refuse(f"it was issued for proposal {claims.proposal_id}")
    return claims


def _grant(
    key: bytes,
    proposal_id: str,
    claims: TokenClaims,
    token: str,
    names: tuple[str, ...],
    reason: str | None,
    judged: _Judged,
    *,
    auto: bool,
) -> ApprovalGranted:
    """The ApprovalGranted payload, MAC'd with the approval key over its fields."""
    fields = {
        "approvers": names,
        "token_id": claims.nonce,
        "token_digest": hashlib.sha256(token.encode("ascii")).hexdigest(),
        "expires_at": datetime.fromisoformat(claims.expires_at),
        "override_reason": reason,
        "decision": judged.decision.decision,
        "policy_hash": claims.policy_hash,
        "intent_hash": claims.intent_hash,
        "account": claims.account,
        "notional": judged.record.notional,
        "auto_commit": auto,
    }
    draft = ApprovalGranted.model_validate({**fields, "mac": "0" * 64})
    return draft.model_copy(update={"mac": keys.mac(key, GRANT_DOMAIN, draft.signed(proposal_id))})


def _record_use(tx: Transaction, token_id: str, proposal_id: str, now: datetime, seq: int) -> None:
    try:
        tx.execute(
            "INSERT INTO token_uses (token_id, proposal_id, used_at, submitted_seq)"
            " VALUES (?, ?, ?, ?)",
            (token_id, proposal_id, canonical.utc_iso(now), seq),
        )
    except sqlite3.IntegrityError as exc:
        raise ApprovalError("token refused: already used", proposal_id=proposal_id) from exc


# -- reading the log -------------------------------------------------------------------------


def _load(log: AuditLog, proposal_id: str) -> _Judged:
    """The proposal's record and latest gate decision, which must name the same intent hash."""
    try:
        record = records.load(log, proposal_id)
    except KeyError:
        raise ApprovalError("no proposal with a risk decision", proposal_id=proposal_id) from None
    if record.decision is None:
        raise ApprovalError("no proposal with a risk decision", proposal_id=proposal_id)
    decision = record.decision.data
    if decision.fault is None and decision.intent_hash != record.intent_hash:
        raise ApprovalError("the intent does not match its recorded hash", proposal_id=proposal_id)
    return _Judged(record, decision)


def _requested_at(log: AuditLog, proposal_id: str) -> datetime | None:
    found = log.events(
        proposal_id=proposal_id, types=(EventType.APPROVAL_REQUESTED,), newest_first=True, limit=1
    )
    return datetime.fromisoformat(found[0].ts) if found else None


def _pending_ids(log: AuditLog) -> list[str]:
    types = (EventType.APPROVAL_GRANTED, EventType.APPROVAL_REQUESTED)
    return sorted({e.proposal_id for e in log.events(types=types) if e.proposal_id})


def _advance(
    tx: Transaction, proposal_id: str, type_: EventType, payload: Payload, *, actor: str
) -> Event:
    try:
        return advance(tx, proposal_id, type_, payload, actor=actor)
    except IllegalTransitionError as exc:
        why = f"illegal transition {exc.current} -> {exc.target}"
        raise ApprovalError(f"{type_.value} refused: {why}", proposal_id=proposal_id) from exc
