"""Typed faults. Denials by the risk gate are data (see ``models.Violation``); these are faults.

Every exception subclasses :class:`WorkbenchError` and the builtin it resembles, and carries the
fields a caller needs to act on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def problems(exc: ValidationError, whole: str = "") -> str:
    """A pydantic validation error as one line: ``where: what`` for each problem, joined by
    "; " (``whole`` names the place of a problem with the whole value)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in exc.errors())


class WorkbenchError(Exception):
    """Base of every fault the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A policy or configuration file is missing, corrupt or has unknown keys."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class HomeError(ConfigError):
    """The workbench home is missing, is a file, or cannot be written; ``path`` is where it was
    looked for. Nothing was created."""

    def __init__(self, message: str, *, path: object) -> None:
        super().__init__(message)
        self.path = str(path)


class CanonicalizationError(WorkbenchError, TypeError):
    """A value cannot be written as canonical JSON (a float NaN, an unknown type)."""


class AuditError(WorkbenchError, RuntimeError):
    """The audit log could not be written or read."""


class GuardedEventError(AuditError):
    """An event that carries authority or state was offered to the generic ``append``."""

    def __init__(self, event_type: str, write_path: str) -> None:
        super().__init__(
            f"{event_type} carries authority or state: the generic append refuses it; it is"
            f" written only through {write_path}"
        )
        self.event_type = event_type
        self.write_path = write_path


class ChainBrokenError(AuditError):
    """The hash chain does not verify; ``seq`` is the first bad event."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit chain broken at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class IllegalTransitionError(WorkbenchError, ValueError):
    """A lifecycle transition that the table does not allow; nothing was written."""

    def __init__(self, proposal_id: str, current: str | None, target: str) -> None:
        super().__init__(f"proposal {proposal_id}: illegal transition {current} -> {target}")
        self.proposal_id = proposal_id
        self.current = current
        self.target = target


class UnknownProposalError(WorkbenchError, KeyError):
    """No proposal with this id exists in the audit log."""

    def __init__(self, proposal_id: str) -> None:
        super().__init__(proposal_id)
        self.proposal_id = proposal_id

    def __str__(self) -> str:
        return f"unknown proposal {self.proposal_id!r}"


class MarketDataError(WorkbenchError, LookupError):
    """Market data is missing, stale or unusable for this instrument."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


class UnknownSymbolError(MarketDataError):
    """The symbol is not in the universe the broker or data source knows."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol, "unknown symbol")


class SimulationError(WorkbenchError, ValueError):
    """The simulator cannot compute an impact (zero or negative NAV, missing quote)."""


class BrokerError(WorkbenchError, RuntimeError):
    """The broker refused or failed a request."""


class BrokerUnavailableError(BrokerError, ConnectionError):
    """The broker cannot be reached; no order was sent."""


class ClientIdInUseError(BrokerUnavailableError):
    """IB refused the API client id: another connection holds it (error 326)."""


class OrderRejectedError(BrokerError):
    """The broker rejected an order; ``reason`` says why."""

    def __init__(self, reason: str, *, proposal_id: str | None = None) -> None:
        super().__init__(reason if proposal_id is None else f"{proposal_id}: {reason}")
        self.reason = reason
        self.proposal_id = proposal_id


class ApprovalError(WorkbenchError, PermissionError):
    """An approval, credential or token was refused."""

    def __init__(self, reason: str, *, proposal_id: str | None = None) -> None:
        super().__init__(reason if proposal_id is None else f"{proposal_id}: {reason}")
        self.reason = reason
        self.proposal_id = proposal_id


class TradingHaltedError(WorkbenchError, PermissionError):
    """Trading state forbids this action (HALTED, or REDUCING and the order adds exposure)."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(f"trading state {state}: {reason}")
        self.state = state
        self.reason = reason


class PermitRefusedError(BrokerError, PermissionError):
    """A broker refused a SubmitPermit whose OrderSubmitted event is missing or does not match."""

    def __init__(self, reason: str, *, proposal_id: str) -> None:
        super().__init__(f"{proposal_id}: permit refused: {reason}")
        self.reason = reason
        self.proposal_id = proposal_id


class DuplicateOrderError(BrokerError):
    """The broker already holds an order for this proposal (or order_ref); nothing was sent."""

    def __init__(self, proposal_id: str, order_id: str) -> None:
        super().__init__(f"{proposal_id}: already submitted as order {order_id}")
        self.proposal_id = proposal_id
        self.order_id = order_id


class UnknownOrderError(BrokerError, KeyError):
    """The broker has no order with this id (or none for this proposal)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"unknown order {self.key!r}"


class OrderNotWorkingError(BrokerError):
    """The order is already done (filled, cancelled or rejected), so it cannot be cancelled."""

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(f"order {order_id} is {status}: nothing to cancel")
        self.order_id = order_id
        self.status = status


class UnknownAccountError(BrokerError, KeyError):
    """The broker does not hold this account."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account

    def __str__(self) -> str:
        return f"unknown account {self.account!r}"


class BarsFormatError(WorkbenchError, ValueError):
    """A user's bars file breaks the schema date,symbol,open,high,low,close,volume."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class RiskInputError(WorkbenchError, ValueError):
    """The risk gate was handed inputs that do not belong together (another intent's simulation,
    another account's portfolio, another symbol's quote); no decision was made."""


class ListenError(WorkbenchError, OSError):
    """A server cannot listen where it was asked (the port is taken, the address is not this
    machine's); nothing was served."""


class LiveTradingRefusedError(BrokerError, PermissionError):
    """A live IBKR port or a non-paper account was asked for: refused before anything connects
    (live trading waits for the live gate)."""


class OrderOutcomeUnknownError(BrokerError):
    """An order was sent but the broker's answer did not come (the connection dropped, or no
    acknowledgement in time): it may be working. Nothing is re-sent; reconcile it."""

    def __init__(self, reason: str, *, proposal_id: str) -> None:
        super().__init__(f"{proposal_id}: {reason}")
        self.reason = reason
        self.proposal_id = proposal_id


class UnresolvedOrderError(WorkbenchError, RuntimeError):
    """An order of unknown outcome (its token spent, no broker acknowledgement) asked to do what
    only a resolution may (a cancel), or a resolution the broker contradicts or that does not
    apply (the order's outcome is known)."""

    def __init__(self, reason: str, *, proposal_id: str) -> None:
        super().__init__(f"{proposal_id}: {reason}")
        self.proposal_id = proposal_id
        self.reason = reason
