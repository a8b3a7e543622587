"""Approvers and their credentials: enrolment anchored in existing approvers, checked in library.

A :class:`Credential` is a name and a passphrase. Every call that raises authority takes one and
:meth:`Authority.verify` checks it here, in the library (the CLI and the panel only collect it):
approve, reject, override, resume, and enrolment itself. A passphrase is kept only as a scrypt
hash, in a row MAC'd with the approval key (``keys``), so a row written behind the workbench's back
does not verify. Enrolment is anchored:

- the first approver of a home that never had one bootstraps it (recorded as such);
- every later enrolment needs a current approver's credential;
- replacing a passphrase needs the old one, or two other approvers;
- removing an approver needs a current approver's credential; the last one is never removed.

Each is an ``ApproverAdded``/``ApproverRemoved`` event written through the enrolment table in
``workbench.lifecycle`` together with the row. A refused credential is audited with its reason;
the caller hears only "wrong approver name or passphrase".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import db, keys, privacy
from workbench.audit import AuditLog, Transaction
from workbench.clock import Clock, SystemClock
from workbench.errors import ApprovalError, IllegalTransitionError
from workbench.events import ApprovalCredentialRefused, ApproverAdded, ApproverRemoved, EventType
from workbench.home import db_path
from workbench.keys import ApprovalKey
from workbench.lifecycle import record_enrolment

NAME_RE = re.compile(r"[a-z][a-z0-9_.\-]{1,31}")
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
SCRYPT_MAXMEM = 64 * 1024 * 1024
ACTOR = "approval"
AUTO_COMMIT = "auto-commit"  # the approver name of auto-committed grants; no person may take it
ROW_DOMAIN = "approver"

MIGRATIONS: list[db.Migration] = [
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
    ),
    (
        "002_anchored_enrolment",
        [
            "ALTER TABLE approvers ADD COLUMN bootstrap INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE approvers ADD COLUMN enrolled_seq INTEGER",
            "ALTER TABLE approvers ADD COLUMN mac TEXT",
        ],
    ),
]
_ROW = "name, salt, hash, n, r, p, added_at, added_by, bootstrap, enrolled_seq, mac"


@dataclass(frozen=True, slots=True)
class Credential:
    """An approver's name and passphrase, as a person typed them (the passphrase never shows)."""

    name: str
    passphrase: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Approver:
    """One enrolled approver as ``approver list`` shows them (never their hash): who enrolled
    them and when, their latest passphrase replacement, and whether their record verifies."""

    name: str
    enrolled_at: str
    enrolled_by: tuple[str, ...]
    bootstrap: bool
    verified: bool  # the row's MAC verifies with this home's approval key
    replaced_at: str | None = None
    replaced_by: tuple[str, ...] = ()


class Authority:
    """The approvers of one home, and the check of every credential that raises authority."""

    def __init__(self, log: AuditLog, home: str | os.PathLike[str], clock: Clock) -> None:
        self.log = log
        self.home = Path(home)
        self.clock = clock
        self.key = ApprovalKey(home)
        self._owns_log = False
        db.migrate(log.conn, "approval", MIGRATIONS)

    @classmethod
    def open(cls, home: str | os.PathLike[str], clock: Clock | None = None) -> Authority:
        """The approvers of the home ``home`` (closing this closes its log)."""
        clock = clock or SystemClock()
        authority = cls(AuditLog(db_path(home), clock), home, clock)
        authority._owns_log = True
        return authority

    def close(self) -> None:
        if self._owns_log:
            self.log.close()

    def __enter__(self) -> Authority:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Authority(home={self.home})"

    # -- checking credentials ------------------------------------------------------------------

    def verify(self, credential: Credential, *, action: str, proposal_id: str | None = None) -> str:
        """The approver's name if ``credential`` is right; else audit why and raise ApprovalError.

        One answer for an unknown name and a wrong passphrase: the caller cannot tell which names
        exist. The audit event keeps the precise reason for the reviewer.
        """
        if not isinstance(credential, Credential):
            raise ApprovalError(f"{action} needs an approver's Credential", proposal_id=proposal_id)
        problem = self._problem(credential)
        if problem is None:
            return credential.name
        name = credential.name if _valid_name(credential.name) else None
        refused = ApprovalCredentialRefused(approver=name, action=action[:200], reason=problem)
        self.log.append(
            EventType.APPROVAL_CREDENTIAL_REFUSED, refused, actor=ACTOR, proposal_id=proposal_id
        )
        raise ApprovalError(
            f"{action} refused: wrong approver name or passphrase", proposal_id=proposal_id
        )

    def verify_all(
        self, credentials: Sequence[Credential], *, action: str, proposal_id: str | None = None
    ) -> tuple[str, ...]:
        """:meth:`verify` each credential; they must name different people."""
        names = [c.name if isinstance(c, Credential) else None for c in credentials]
        if len(set(names)) != len(names):
            raise ApprovalError(
                "the second approver must be a different person", proposal_id=proposal_id
            )
        return tuple(self.verify(c, action=action, proposal_id=proposal_id) for c in credentials)

    def require_private(self, action: str) -> None:
        """Refuse ``action`` while the home, its database or key can be read by other users."""
        problems = privacy.problems(self.home)
        if problems:
            raise ApprovalError(
                f"{action} refused until the home is private: {'; '.join(problems)}"
                f" (run `workbench doctor --fix-permissions --home {self.home}`)"
            )

    def _problem(self, credential: Credential) -> str | None:
        """None if the credential is right; else why not. Unknown names cost a hash too."""
        name, passphrase = credential.name, credential.passphrase
        if not _valid_name(name) or not isinstance(passphrase, str):
            return "malformed approver name or passphrase"
        if not passphrase or len(passphrase) > MAX_PASSPHRASE:
            return "wrong passphrase"
        row = self._row(name)
        salt, stored, n, r, p = (
            (row["salt"], row["hash"], row["n"], row["r"], row["p"])
            if row
            else ("00" * 16, "", SCRYPT_N, SCRYPT_R, SCRYPT_P)
        )
        try:
            actual = _scrypt(passphrase, bytes.fromhex(salt), int(n), int(r), int(p)).hex()
        except ValueError:
            return "the stored credential is unusable"
        if row is None:
            return f"unknown approver {name!r}"
        if not hmac.compare_digest(actual, stored):
            return "wrong passphrase"
        if not self._row_verifies(row):
            return "the approver's record does not verify (written outside the workbench)"
        return None

    # -- enrolment -----------------------------------------------------------------------------

    def bootstrap(self, first: Credential) -> Approver:
        """Enrol the first approver of a home that never had one; creates the approval key."""
        self._check_new(first)
        self.key.create()
        with self.log.transaction() as tx:
            if self.approvers():
                raise ApprovalError("this home already has approvers: ask one of them to enrol you")
            added = ApproverAdded(name=first.name, by=(), bootstrap=True, replaced=False)
            self._write(tx, first, added)
        return self._approver(first.name)

    def enrol(self, new: Credential, *, by: Credential) -> Approver:
        """Enrol ``new`` with the consent of ``by``, a current approver (verified here)."""
        self._check_new(new)
        consenting = self.verify(by, action=f"enrol approver {new.name}")
        with self.log.transaction() as tx:
            if self._row(new.name) is not None:
                raise ApprovalError(f"approver {new.name!r} already exists (replace rotates)")
            added = ApproverAdded(name=new.name, by=(consenting,), bootstrap=False, replaced=False)
            self._write(tx, new, added)
        return self._approver(new.name)

    def replace(self, new: Credential, *, by: Sequence[Credential]) -> Approver:
        """Rotate ``new.name``'s passphrase: ``by`` is their old credential, or two others'."""
        self._check_new(new)
        names = self.verify_all(by, action=f"replace approver {new.name}")
        if names != (new.name,) and (len(names) < 2 or new.name in names):
            raise ApprovalError("a replacement needs the old passphrase, or two other approvers")
        with self.log.transaction() as tx:
            if self._row(new.name) is None:
                raise ApprovalError(f"approver {new.name!r} does not exist, nothing to replace")
            added = ApproverAdded(name=new.name, by=names, bootstrap=False, replaced=True)
            self._write(tx, new, added)
        return self._approver(new.name)

    def remove(self, name: str, *, by: Credential) -> None:
        """Remove ``name`` with the consent of ``by``; the last approver is never removed."""
        _check_name(name)
        consenting = self.verify(by, action=f"remove approver {name}")
        with self.log.transaction() as tx:
            if self._row(name) is None:
                raise ApprovalError(f"approver {name!r} does not exist")
            if len(self.approvers()) <= 1:
                raise ApprovalError(f"{name!r} is the last approver and cannot be removed")
            removed = ApproverRemoved(name=name, by=(consenting,))
            _enrol_event(tx, removed, actor=consenting)
            tx.execute("DELETE FROM approvers WHERE name = ?", (name,))

    def _check_new(self, new: Credential) -> None:
        if not isinstance(new, Credential):
            raise ApprovalError("enrolment needs the new approver's Credential")
        _check_name(new.name)
        if new.name == AUTO_COMMIT:
            raise ApprovalError(f"{AUTO_COMMIT!r} is reserved for auto-committed grants")
        _check_passphrase(new.passphrase)

    def _write(self, tx: Transaction, new: Credential, added: ApproverAdded) -> None:
        """The enrolment event and the approver's row (MAC'd, bound to the event), together."""
        event = _enrol_event(tx, added, actor=added.by[0] if added.by else new.name)
        salt = secrets.token_bytes(16)
        row: dict[str, Any] = {
            "name": new.name,
            "salt": salt.hex(),
            "hash": _scrypt(new.passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex(),
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "added_at": event.ts,
            "added_by": json.dumps(list(added.by)),
            "bootstrap": int(added.bootstrap),
            "enrolled_seq": event.seq,
        }
        row["mac"] = keys.mac(self.key.load(), ROW_DOMAIN, _signed(row))
        tx.execute("DELETE FROM approvers WHERE name = ?", (new.name,))
        tx.execute(
            f"INSERT INTO approvers ({_ROW}) VALUES ({', '.join('?' for _ in row)})",
            tuple(row.values()),
        )

    # -- reading -------------------------------------------------------------------------------

    def approvers(self) -> list[str]:
        """Enrolled approver names (never their hashes)."""
        rows = self.log.conn.execute("SELECT name FROM approvers ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def roster(self) -> list[Approver]:
        """Every enrolled approver: who enrolled them, when, and whether their record verifies."""
        return [self._approver(name) for name in self.approvers()]

    def _approver(self, name: str) -> Approver:
        row = self._row(name)
        if row is None:
            raise ApprovalError(f"approver {name!r} does not exist")
        enrolled = replaced = None
        for event in self.log.events(types=(EventType.APPROVER_ADDED, EventType.APPROVER_REMOVED)):
            data = event.data
            if isinstance(data, ApproverRemoved) and data.name == name:
                enrolled = replaced = None
            elif isinstance(data, ApproverAdded) and data.name == name:
                if data.replaced:
                    replaced = (event.ts, data.by)
                else:
                    enrolled, replaced = (event.ts, data.by), None
        at, by = enrolled or (str(row["added_at"]), tuple(_enrolled_by(row)))
        return Approver(
            name=name,
            enrolled_at=at,
            enrolled_by=by,
            bootstrap=bool(row["bootstrap"]),
            verified=self._row_verifies(row),
            replaced_at=None if replaced is None else replaced[0],
            replaced_by=() if replaced is None else replaced[1],
        )

    def _row(self, name: str) -> dict[str, Any] | None:
        found = self.log.conn.execute(
            f"SELECT {_ROW} FROM approvers WHERE name = ?", (name,)
        ).fetchone()
        return None if found is None else dict(zip(_ROW.split(", "), found, strict=True))

    def _row_verifies(self, row: dict[str, Any]) -> bool:
        given = row.get("mac")
        if not isinstance(given, str) or row.get("enrolled_seq") is None:
            return False
        return keys.verify(self.key.load_if_present(), ROW_DOMAIN, _signed(row), given)


def _enrol_event(tx: Transaction, payload: ApproverAdded | ApproverRemoved, *, actor: str) -> Any:
    try:
        return record_enrolment(tx, payload, actor=actor)
    except IllegalTransitionError as exc:
        raise ApprovalError(f"enrolment refused: {exc.target}") from exc


def _signed(row: dict[str, Any]) -> dict[str, Any]:
    """What an approver row's MAC covers: every column but the MAC."""
    return {k: v for k, v in row.items() if k != "mac"}


def _enrolled_by(row: dict[str, Any]) -> list[str]:
    try:
        names = json.loads(str(row["added_by"]))
    except ValueError:
        return [str(row["added_by"])]
    return [str(n) for n in names] if isinstance(names, list) else [str(names)]


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def _check_name(name: object) -> None:
    if not _valid_name(name):
        raise ApprovalError(f"approver name must match {NAME_RE.pattern} (got {name!r:.40})")


def _check_passphrase(passphrase: object) -> None:
    if not isinstance(passphrase, str) or len(passphrase) > MAX_PASSPHRASE:
        raise ApprovalError(f"a passphrase is text of at most {MAX_PASSPHRASE} characters")
    if len(passphrase) < MIN_PASSPHRASE:
        raise ApprovalError(f"a passphrase needs at least {MIN_PASSPHRASE} characters")


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    secret = passphrase.encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=SCRYPT_LEN, maxmem=SCRYPT_MAXMEM)
