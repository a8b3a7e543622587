"""Approvers and one-time approval tokens, consumed atomically with ``OrderSubmitted``.

An approver's passphrase is kept only as a scrypt hash. ``approve`` checks the credential first,
then mints a token: ``base64url(claims) + "." + hex(HMAC-SHA256(key, claims))`` where the claims are
the canonical JSON of (proposal_id, intent_hash, account, policy_hash, nonce, expires_at) and the
32-byte key lives in a 0600 file in the home folder. Only ``sha256(token)`` is written down.
``consume`` runs inside the caller's audit transaction and is the only producer of a
:class:`~workbench.models.SubmitPermit`. Nothing is held in memory: tokens survive a restart.
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
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from workbench import autocommit, canonical, db, trading_state
from workbench.audit import AuditLog, Event, EventType, Transaction
from workbench.clock import Clock
from workbench.errors import ApprovalError, IllegalTransitionError
from workbench.lifecycle import OrderState, advance, derive_state
from workbench.models import AccountId, OrderIntent, Sha256Hex, SubmitPermit
from workbench.policy import AutoCommitRules

NAME_RE = re.compile(r"[a-z][a-z0-9_.\-]{1,31}")
PROPOSAL_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
TOKEN_RE = re.compile(r"([A-Za-z0-9_\-]{1,1024})\.([0-9a-f]{64})")
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024
MAX_REASON = 2000
KEY_FILE = "approval.key"
KEY_BYTES = 32
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
SCRYPT_MAXMEM = 64 * 1024 * 1024
MAX_EXPIRY = timedelta(hours=1)
ACTOR = "approval"
AUTO_COMMIT = "auto-commit"  # the approver name of auto-committed grants; no person may take it

_MIGRATIONS: list[db.Migration] = [
    (
        "001_approvers_and_token_uses",
        [
            "CREATE TABLE approvers ("
            " name TEXT PRIMARY KEY, salt TEXT NOT NULL, hash TEXT NOT NULL,"
            " n INTEGER NOT NULL, r INTEGER NOT NULL, p INTEGER NOT NULL,"
            " added_at TEXT NOT NULL, added_by TEXT NOT NULL)",
            "CREATE TABLE token_uses ("
            " token_id TEXT NOT NULL UNIQUE, proposal_id TEXT NOT NULL,"
            " used_at TEXT NOT NULL, submitted_seq INTEGER NOT NULL)",
        ],
    )
]


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
class _Proposal:
    """What the log says about one proposal awaiting or holding an approval."""

    state: OrderState | None
    intent: OrderIntent
    decision: str
    policy_hash: str
    notional: Decimal | None
    grant: Event | None


class Approvals:
    """Approvers, token minting and atomic consumption over one audit log and home folder."""

    def __init__(
        self,
        log: AuditLog,
        home: str | os.PathLike[str],
        clock: Clock,
        *,
        expiry: timedelta = timedelta(minutes=5),
        second_approver_above: Decimal | None = None,
        request_ttl: timedelta | None = None,
        auto_commit: AutoCommitRules | None = None,
    ) -> None:
        if not timedelta(0) < expiry <= MAX_EXPIRY:
            raise ApprovalError(f"token expiry must be within (0, {MAX_EXPIRY}], got {expiry}")
        self.log = log
        self.clock = clock
        self.expiry = expiry
        self.second_approver_above = second_approver_above
        self.request_ttl = request_ttl
        self.auto_commit = auto_commit
        self._key_path = Path(home) / KEY_FILE
        db.migrate(log.conn, "approval", _MIGRATIONS)

    def __repr__(self) -> str:
        return f"Approvals(log={self.log.path}, expiry={self.expiry})"

    # -- approvers ---------------------------------------------------------------------------

    def add_approver(
        self, name: str, passphrase: str, *, added_by: str, replace: bool = False
    ) -> None:
        """Register ``name`` (``replace`` rotates its passphrase) and record ApproverAdded."""
        _check_name(name)
        if name == AUTO_COMMIT:
            raise ApprovalError(f"{AUTO_COMMIT!r} is reserved for auto-committed grants")
        _check_passphrase(passphrase, strict=True)
        if not isinstance(added_by, str) or not 0 < len(added_by) <= 64:
            raise ApprovalError("added_by must name who adds the approver (1 to 64 characters)")
        salt = secrets.token_bytes(16)
        digest = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        row = (name, salt.hex(), digest.hex(), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        with self.log.transaction() as tx:
            exists = tx.execute("SELECT 1 FROM approvers WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise ApprovalError(f"approver {name!r} already exists (use --replace to rotate)")
            if not exists and replace:
                raise ApprovalError(f"approver {name!r} does not exist, nothing to replace")
            stamp = canonical.utc_iso(self.clock.now())
            tx.execute("DELETE FROM approvers WHERE name = ?", (name,))
            tx.execute(
                "INSERT INTO approvers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*row, stamp, added_by)
            )
            payload = {"name": name, "added_by": added_by, "replaced": bool(exists)}
            tx.append(EventType.APPROVER_ADDED, payload, actor=added_by)

    def approvers(self) -> list[str]:
        """Registered approver names (never their hashes)."""
        rows = self.log.conn.execute("SELECT name FROM approvers ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def authenticate(self, name: str, passphrase: str, *, action: str) -> None:
        """Check a credential for an action outside a proposal (e.g. resuming trading)."""
        self._authenticate(None, name, passphrase, action)

    def _authenticate(
        self, proposal_id: str | None, name: str, passphrase: str, action: str
    ) -> None:
        """Raise ApprovalError (after auditing the refusal) unless the credential is right."""
        problem = _credential_problem(self.log.conn, name, passphrase)
        if problem is None:
            return
        payload = {"approver": name if _valid_name(name) else None, "action": action}
        self.log.append(
            EventType.APPROVAL_CREDENTIAL_REFUSED,
            {**payload, "reason": problem},
            actor=ACTOR,
            proposal_id=proposal_id,
        )
        # One answer for an unknown name and a wrong passphrase: the caller cannot tell which names
        # exist. The audit event keeps the precise reason for the reviewer.
        raise ApprovalError(
            f"{action} refused: wrong approver name or passphrase", proposal_id=proposal_id
        )

    # -- approve / reject --------------------------------------------------------------------

    def approve(
        self,
        proposal_id: str,
        approver: str,
        passphrase: str,
        *,
        override_reason: str | None = None,
        second_approver: str | None = None,
        second_passphrase: str | None = None,
    ) -> ApprovalGrant:
        """Check the credential(s), then mint a one-time token and record ApprovalGranted."""
        _check_proposal_id(proposal_id)
        self._authenticate(proposal_id, approver, passphrase, "approve")
        names = [approver]
        if second_approver is not None or second_passphrase is not None:
            if second_approver is None or second_passphrase is None:
                raise ApprovalError("a second approver needs a name and a passphrase")
            if second_approver == approver:
                raise ApprovalError("the second approver must be a different person")
            self._authenticate(proposal_id, second_approver, second_passphrase, "approve")
            names.append(second_approver)
        reason = _clean_reason(override_reason)
        with self.log.transaction() as tx:
            prop = _load(tx.log, proposal_id)
            self._check_approvable(proposal_id, prop, reason, names)
            claims = self._claims(proposal_id, prop)
            token = _sign(self._key(create=True), claims)
            payload = _grant_payload(claims, token, names, reason, prop)
            _advance(tx, proposal_id, EventType.APPROVAL_GRANTED, payload, actor=approver)
        expires = datetime.fromisoformat(claims.expires_at)
        return ApprovalGrant(proposal_id, claims.nonce, expires, tuple(names), token)

    def auto_approve(self, proposal_id: str) -> ApprovalGrant:
        """Mint a token with no person, only when the auto-commit policy allows this proposal.

        Everything it judges is read back from the audit log inside the transaction (intent,
        simulation, gate verdict, trading state), never taken from the caller. The grant is
        recorded with approver ``auto-commit`` and ``auto_commit: true``.
        """
        _check_proposal_id(proposal_id)
        rules = self.auto_commit
        if rules is None or not rules.enabled:
            raise ApprovalError("auto-commit is off", proposal_id=proposal_id)
        with self.log.transaction() as tx:
            prop = _load(tx.log, proposal_id)
            self._check_approvable(proposal_id, prop, None, [AUTO_COMMIT])
            why = self._auto_commit_refusal(rules, proposal_id, prop)
            if why is not None:
                raise ApprovalError(f"auto-commit refused: {why}", proposal_id=proposal_id)
            claims = self._claims(proposal_id, prop)
            token = _sign(self._key(create=True), claims)
            payload = {
                **_grant_payload(claims, token, [AUTO_COMMIT], None, prop),
                "auto_commit": True,
            }
            _advance(tx, proposal_id, EventType.APPROVAL_GRANTED, payload, actor=AUTO_COMMIT)
        expires = datetime.fromisoformat(claims.expires_at)
        return ApprovalGrant(proposal_id, claims.nonce, expires, (AUTO_COMMIT,), token)

    def _auto_commit_refusal(
        self, rules: AutoCommitRules, proposal_id: str, prop: _Proposal
    ) -> str | None:
        events = self.log.events(proposal_id=proposal_id)
        gate = _latest(events, EventType.RISK_GATE_EVALUATED)
        simulated = _latest(events, EventType.ORDER_SIMULATED)
        result = simulated.payload.get("result", {}) if simulated else {}
        nav = result.get("nav_before")
        return autocommit.refusal(
            rules,
            prop.intent,
            decision=prop.decision,
            severities=[
                str(v.get("severity")) for v in (gate.payload if gate else {}).get("violations", [])
            ],
            notional=prop.notional,
            nav=Decimal(str(nav)) if nav is not None else None,
            state=trading_state.current_state(self.log),
            now=self.clock.now(),
        )

    def reject(self, proposal_id: str, approver: str, passphrase: str, reason: str) -> None:
        """Check the credential, then record ApprovalDenied with the approver's reason."""
        _check_proposal_id(proposal_id)
        self._authenticate(proposal_id, approver, passphrase, "reject")
        text = _clean_reason(reason)
        if text is None:
            raise ApprovalError("a rejection needs a reason", proposal_id=proposal_id)
        with self.log.transaction() as tx:
            payload = {"approver": approver, "reason": text}
            _advance(tx, proposal_id, EventType.APPROVAL_DENIED, payload, actor=approver)

    def _check_approvable(
        self, proposal_id: str, prop: _Proposal, reason: str | None, names: Sequence[str]
    ) -> None:
        def refuse(why: str) -> ApprovalError:
            return ApprovalError(why, proposal_id=proposal_id)

        if prop.state is not OrderState.APPROVAL_REQUESTED:
            raise refuse(f"not awaiting approval (state {_state_name(prop.state)})")
        if prop.decision == "REJECT":
            raise refuse("the risk gate rejected this proposal; it can never be approved")
        if prop.decision == "REVIEW" and reason is None:
            raise refuse("the risk gate asked for review: an override reason is required")
        if self._needs_second(prop.notional) and len(names) < 2:
            raise refuse(f"notional {prop.notional} needs a second approver")

    def _needs_second(self, notional: Decimal | None) -> bool:
        limit = self.second_approver_above
        return limit is not None and (notional is None or notional > limit)

    def _claims(self, proposal_id: str, prop: _Proposal) -> TokenClaims:
        expires = canonical.utc_iso(self.clock.now() + self.expiry)
        return TokenClaims(
            v=1,
            proposal_id=proposal_id,
            intent_hash=prop.intent.intent_hash,
            account=prop.intent.account,
            policy_hash=prop.policy_hash,
            nonce=secrets.token_hex(16),
            expires_at=expires,
        )

    # -- consume -----------------------------------------------------------------------------

    def consume(
        self, tx: Transaction, proposal_id: str, token: str, *, order_ref: str, actor: str = ACTOR
    ) -> SubmitPermit:
        """Spend ``token`` on ``proposal_id`` in ``tx``: record OrderSubmitted, return a permit."""
        _check_proposal_id(proposal_id)
        if tx.log is not self.log or not tx.conn.in_transaction:
            raise ApprovalError("consume must run inside this log's open transaction")
        if not isinstance(order_ref, str) or not 0 < len(order_ref) <= 128:
            raise ApprovalError("order_ref must be 1 to 128 characters", proposal_id=proposal_id)
        claims = _verify(self._key(create=False), token, proposal_id)
        used = tx.execute("SELECT 1 FROM token_uses WHERE token_id = ?", (claims.nonce,))
        if used.fetchone() is not None:
            raise ApprovalError("token refused: already used", proposal_id=proposal_id)
        prop = _load(tx.log, proposal_id)
        grant = self._check_consumable(proposal_id, prop, claims, token)
        now = self.clock.now()
        payload = {
            "token_id": claims.nonce,
            "intent_hash": claims.intent_hash,
            "order_ref": order_ref,
            "approvers": grant.payload.get("approvers"),
        }
        event = _advance(tx, proposal_id, EventType.ORDER_SUBMITTED, payload, actor=actor)
        _record_use(tx, claims.nonce, proposal_id, now, event.seq)
        return SubmitPermit(
            proposal_id=proposal_id,
            intent=prop.intent,
            intent_hash=claims.intent_hash,
            submitted_seq=event.seq,
            order_ref=order_ref,
            protective_stop=prop.intent.protective_stop,
        )

    def _check_consumable(
        self, proposal_id: str, prop: _Proposal, claims: TokenClaims, token: str
    ) -> Event:
        def refuse(why: str) -> ApprovalError:
            return ApprovalError(f"token refused: {why}", proposal_id=proposal_id)

        if prop.state is not OrderState.APPROVAL_GRANTED or prop.grant is None:
            raise refuse(f"proposal is not approved and unused (state {_state_name(prop.state)})")
        granted = prop.grant.payload
        # The latest gate verdict (a submit-time re-check included) must still allow the order.
        if prop.decision == "REJECT":
            raise refuse("the latest risk decision (re-checked at submit) is REJECT")
        if prop.decision == "REVIEW" and not granted.get("override_reason"):
            raise refuse("the latest risk decision is REVIEW and no override reason was recorded")
        if prop.policy_hash != claims.policy_hash:
            raise refuse("the risk policy changed since the approval")
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        if not hmac.compare_digest(digest, str(granted.get("token_digest", ""))):
            raise refuse("it is not the token issued by the latest approval")
        expected = (granted.get("token_id"), granted.get("intent_hash"), granted.get("policy_hash"))
        if expected != (claims.nonce, claims.intent_hash, claims.policy_hash):
            raise refuse("it does not match the recorded approval")
        intent = prop.intent
        if (intent.intent_hash, intent.account) != (claims.intent_hash, claims.account):
            raise refuse("it was issued for a different intent or account")
        if self.clock.now() >= datetime.fromisoformat(claims.expires_at):
            raise refuse(f"it expired at {claims.expires_at}")
        return prop.grant

    # -- expiry ------------------------------------------------------------------------------

    def expire_stale(self, now: datetime | None = None) -> list[str]:
        """Record ApprovalExpired for unused tokens past expiry (and requests past their TTL)."""
        when = now if now is not None else self.clock.now()
        expired: list[str] = []
        with self.log.transaction() as tx:
            for pid in _pending_ids(tx.log):
                reason = self._stale_reason(tx.log.events(proposal_id=pid), when)
                if reason is not None:
                    payload = {"reason": reason, "at": canonical.utc_iso(when)}
                    advance(tx, pid, EventType.APPROVAL_EXPIRED, payload, actor=ACTOR)
                    expired.append(pid)
        return expired

    def _stale_reason(self, events: list[Event], when: datetime) -> str | None:
        state = derive_state(events)
        if state is OrderState.APPROVAL_GRANTED:
            grant = _latest(events, EventType.APPROVAL_GRANTED)
            expires = grant.payload.get("expires_at") if grant else None
            if not isinstance(expires, str) or when >= datetime.fromisoformat(expires):
                return "approval token expired unused"
        if state is OrderState.APPROVAL_REQUESTED and self.request_ttl is not None:
            request = _latest(events, EventType.APPROVAL_REQUESTED)
            if request and when >= datetime.fromisoformat(request.ts) + self.request_ttl:
                return f"approval request older than {self.request_ttl}"
        return None

    # -- key file ----------------------------------------------------------------------------

    def _key(self, *, create: bool) -> bytes:
        if create and not self._key_path.exists():
            try:
                _create_key(self._key_path)
            except OSError as exc:
                raise ApprovalError(f"cannot create approval key {self._key_path}: {exc}") from exc
        return _read_key(self._key_path)


# -- credentials -----------------------------------------------------------------------------


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def _check_name(name: object) -> None:
    if not _valid_name(name):
        raise ApprovalError(f"approver name must match {NAME_RE.pattern} (got {name!r:.40})")


def _check_proposal_id(proposal_id: object) -> None:
    if not isinstance(proposal_id, str) or PROPOSAL_RE.fullmatch(proposal_id) is None:
        raise ApprovalError(f"malformed proposal id {proposal_id!r:.80}")


def _check_passphrase(passphrase: object, *, strict: bool) -> None:
    if not isinstance(passphrase, str) or len(passphrase) > MAX_PASSPHRASE:
        raise ApprovalError(f"a passphrase is text of at most {MAX_PASSPHRASE} characters")
    if strict and len(passphrase) < MIN_PASSPHRASE:
        raise ApprovalError(f"a passphrase needs at least {MIN_PASSPHRASE} characters")


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    secret = passphrase.encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=SCRYPT_LEN, maxmem=SCRYPT_MAXMEM)


def _credential_problem(conn: sqlite3.Connection, name: str, passphrase: str) -> str | None:
    """None if ``passphrase`` is ``name``'s; else why not. Unknown names cost a hash too."""
    if not _valid_name(name) or not isinstance(passphrase, str):
        return "malformed approver name or passphrase"
    if not passphrase or len(passphrase) > MAX_PASSPHRASE:
        return "wrong passphrase"
    row = conn.execute(
        "SELECT salt, hash, n, r, p FROM approvers WHERE name = ?", (name,)
    ).fetchone()
    salt, stored, n, r, p = row or ("00" * 16, "", SCRYPT_N, SCRYPT_R, SCRYPT_P)
    try:
        actual = _scrypt(passphrase, bytes.fromhex(salt), int(n), int(r), int(p)).hex()
    except ValueError:
        return "the stored credential is unusable"
    if row is None:
        return f"unknown approver {name!r}"
    return None if hmac.compare_digest(actual, stored) else "wrong passphrase"


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


def _grant_payload(
    claims: TokenClaims, token: str, names: list[str], reason: str | None, prop: _Proposal
) -> dict[str, Any]:
    return {
        "approvers": names,
        "token_id": claims.nonce,
        "token_digest": hashlib.sha256(token.encode("ascii")).hexdigest(),
        "expires_at": claims.expires_at,
        "override_reason": reason,
        "decision": prop.decision,
        "policy_hash": claims.policy_hash,
        "intent_hash": claims.intent_hash,
        "account": claims.account,
        "notional": None if prop.notional is None else canonical.decimal_str(prop.notional),
    }


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


def _latest(events: list[Event], type_: EventType) -> Event | None:
    return next((e for e in reversed(events) if e.type == type_.value), None)


def _load(log: AuditLog, proposal_id: str) -> _Proposal:
    """The proposal's state, intent (re-validated), latest gate verdict and latest grant."""
    events = log.events(proposal_id=proposal_id)
    proposed = _latest(events, EventType.ORDER_PROPOSED)
    gate = _latest(events, EventType.RISK_GATE_EVALUATED)
    if proposed is None or gate is None:
        raise ApprovalError("no proposal with a risk decision", proposal_id=proposal_id)
    try:
        intent = OrderIntent.model_validate(proposed.payload.get("intent"))
    except ValidationError as exc:
        raise ApprovalError(
            "the proposed intent does not validate", proposal_id=proposal_id
        ) from exc
    recorded = proposed.payload.get("intent_hash", intent.intent_hash)
    gate_hash = gate.payload.get("intent_hash", intent.intent_hash)
    if intent.intent_hash != recorded or intent.intent_hash != gate_hash:
        raise ApprovalError("the intent does not match its recorded hash", proposal_id=proposal_id)
    policy_hash = gate.payload.get("policy_hash")
    if not isinstance(policy_hash, str) or re.fullmatch(r"[0-9a-f]{64}", policy_hash) is None:
        raise ApprovalError("the risk decision has no valid policy hash", proposal_id=proposal_id)
    decision = str(gate.payload.get("decision"))
    notional = _notional(intent, _latest(events, EventType.ORDER_SIMULATED))
    grant = _latest(events, EventType.APPROVAL_GRANTED)
    return _Proposal(derive_state(events), intent, decision, policy_hash, notional, grant)


def _notional(intent: OrderIntent, simulated: Event | None) -> Decimal | None:
    """The larger of the simulated notional and quantity × limit/stop price; None if unknown."""
    found: list[Decimal] = []
    sim = simulated.payload.get("result", simulated.payload) if simulated else {}
    value = sim.get("notional") if isinstance(sim, dict) else None
    if value is not None:
        try:
            found.append(Decimal(str(value)))
        except ArithmeticError:
            return None
    price = intent.limit_price or intent.stop_price
    if price is not None:
        found.append(intent.quantity * price)
    if not found or not all(v.is_finite() for v in found):
        return None
    return max(found)


def _pending_ids(log: AuditLog) -> list[str]:
    types = (EventType.APPROVAL_GRANTED, EventType.APPROVAL_REQUESTED)
    return sorted({e.proposal_id for e in log.events(types=types) if e.proposal_id})


def _state_name(state: OrderState | None) -> str:
    return "none" if state is None else state.value


def _advance(
    tx: Transaction, proposal_id: str, type_: EventType, payload: dict[str, Any], *, actor: str
) -> Event:
    try:
        return advance(tx, proposal_id, type_, payload, actor=actor)
    except IllegalTransitionError as exc:
        why = f"illegal transition {exc.current} -> {exc.target}"
        raise ApprovalError(f"{type_.value} refused: {why}", proposal_id=proposal_id) from exc


# -- key file --------------------------------------------------------------------------------


def _create_key(path: Path) -> None:
    """Write a fresh random key to ``path`` atomically (0600); a concurrent creator may win."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _read_key(path: Path) -> bytes:
    """The key, if ``path`` is a regular file of ours, mode 0600 or narrower, of the right size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ApprovalError(f"approval key {path} cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ApprovalError(f"approval key {path} is not a regular file owned by this user")
        if mode & 0o077:
            raise ApprovalError(
                f"approval key {path} has mode {mode:04o}, wider than 0600: refusing to use it"
                f" (check who could read it, then chmod 600 {path})"
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise ApprovalError(f"approval key {path} is corrupt (expected {KEY_BYTES} bytes)")
    return key
