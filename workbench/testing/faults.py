"""Fault hooks: what can go wrong, and where in an order's life (the chaos schedule is in chaos.py).

A :class:`FaultRule` says *where* (a :class:`Step` of an order matched by :class:`OrderMatch`),
*what* (an effect: :class:`Drop`, :class:`Delay`, :class:`Duplicate`, :class:`Reorder`,
:class:`PartialFill`, :class:`Reject`, :class:`SendError`, :class:`Restart`,
:class:`RefuseConnections`) and *how often* (``times``; None = every match). The gateway asks the
:class:`FaultPlan` at each step; this module does no I/O.

Steps (each order's messages at a step form one batch):
- ``RECEIVED``: placeOrder decoded, before the gateway acts. Drop → the order is lost (never at
  the gateway); Reject → refused with the code; Delay → processed later.
- ``HELD``: a transmit=0 leg is held waiting for the rest of its bracket. Drop → the held legs are
  discarded with the connection.
- ``ACK``: the order is accepted; batch = openOrder + orderStatus (Submitted/PreSubmitted).
  Drop BEFORE → accepted and working, the client hears nothing.
- ``FILL``: an execution; batch = execDetails, openOrder, orderStatus, commissionReport. Delay →
  the execution itself happens later; PartialFill → it happens in pieces.
- ``CANCEL``: a cancel takes effect; batch = openOrder, orderStatus (Cancelled), error 202.
- ``REJECT``: batch = the error (201, 103, ...).
Phases of a Drop on a batch: BEFORE (nothing of the batch is sent), MID (only its first message),
AFTER (all of it). Effects on a batch run in this order: Duplicate/Reorder, the batch (with a
Drop's phase), SendError, Restart, RefuseConnections.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from workbench.testing.orders import WorkingOrder


class Step(StrEnum):
    RECEIVED = "received"
    HELD = "held"
    ACK = "ack"
    FILL = "fill"
    CANCEL = "cancel"
    REJECT = "reject"


class Phase(StrEnum):
    BEFORE = "before"
    MID = "mid"
    AFTER = "after"


BATCH_STEPS = frozenset({Step.ACK, Step.FILL, Step.CANCEL, Step.REJECT})
MESSAGE_NAMES = ("openOrder", "orderStatus", "execDetails", "commissionReport", "error")
DEFAULT_REJECT_REASON = "rejected by a fault rule of the test gateway"


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the order's client connection at the step (see the phases)."""

    phase: Phase = Phase.AFTER


@dataclass(frozen=True, slots=True)
class Delay:
    """The step happens ``seconds`` later on the gateway's clock (released by ``advance``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Send these messages of the step's batch twice (all of them when empty)."""

    messages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reorder:
    """Send the batch's messages in this order of names (reversed when empty)."""

    order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PartialFill:
    """Fill ``shares`` at a time; the next piece ``interval`` seconds later (0 = at once)."""

    shares: Decimal
    interval: float = 0.0


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the order with ``code`` (201 reject, 103 duplicate id, ...)."""

    code: int = 201
    reason: str = DEFAULT_REJECT_REASON
    then_inactive: bool = False


@dataclass(frozen=True, slots=True)
class SendError:
    """Send error ``code`` after the step (reqId = the order id when ``to_order``, else -1)."""

    code: int
    message: str | None = None
    to_order: bool = True


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart the gateway after the step: every connection closes; state is kept."""

    downtime: float = 0.0


@dataclass(frozen=True, slots=True)
class RefuseConnections:
    """Stop listening for ``seconds`` (gateway clock) after the step."""

    seconds: float


Effect = (
    Drop
    | Delay
    | Duplicate
    | Reorder
    | PartialFill
    | Reject
    | SendError
    | Restart
    | RefuseConnections
)

_ALLOWED: dict[type, frozenset[Step]] = {
    Drop: frozenset(Step),
    Delay: frozenset({Step.RECEIVED, Step.ACK, Step.FILL, Step.CANCEL, Step.REJECT}),
    Duplicate: BATCH_STEPS,
    Reorder: BATCH_STEPS,
    PartialFill: frozenset({Step.FILL}),
    Reject: frozenset({Step.RECEIVED}),
    SendError: frozenset(Step),
    Restart: frozenset(Step),
    RefuseConnections: frozenset(Step),
}


@dataclass(frozen=True, slots=True)
class OrderMatch:
    """Which orders a rule applies to; every given field must match (none given = any order).

    ``seq`` is the 1-based count of new orders the gateway has received (all clients).
    ``order_ref`` matches when it is contained in the order's orderRef.
    """

    seq: int | None = None
    order_id: int | None = None
    client_id: int | None = None
    symbol: str | None = None
    order_ref: str | None = None
    order_type: str | None = None
    child: bool | None = None

    def matches(self, order: WorkingOrder) -> bool:
        checks = (
            (self.seq, order.seq),
            (self.order_id, order.order_id),
            (self.client_id, order.client_id),
            (self.symbol, order.instrument.symbol),
            (self.order_type, order.order_type),
            (self.child, order.is_child),
        )
        if any(want is not None and want != have for want, have in checks):
            return False
        return self.order_ref is None or self.order_ref in order.order_ref


ANY = OrderMatch()


@dataclass(slots=True)
class FaultRule:
    """Apply ``effect`` at ``at`` to orders matching ``match``, ``times`` times (None = always)."""

    at: Step
    effect: Effect
    match: OrderMatch = ANY
    times: int | None = 1
    fired: int = 0

    def __post_init__(self) -> None:
        if self.at not in _ALLOWED[type(self.effect)]:
            raise ValueError(f"{type(self.effect).__name__} cannot apply at step {self.at.value}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for every match)")
        if isinstance(self.effect, Delay | RefuseConnections | Restart):
            _check_seconds(self.effect)
        if isinstance(self.effect, PartialFill) and self.effect.shares <= 0:
            raise ValueError("PartialFill.shares must be positive")

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def describe(self) -> str:
        """One line for people: where, what, to which orders, how often."""
        times = "every time" if self.times is None else f"{self.times}x"
        what = describe_effect(self.at, self.effect)
        return f"at {self.at.value}: {what} ({self.match}, {times})"


def describe_effect(step: Step, effect: Effect) -> str:
    """What an effect does, in words."""
    if isinstance(effect, Drop):
        if step is Step.RECEIVED:
            return "lose the order and drop the connection"
        if step is Step.HELD:
            return "drop the connection (the held legs are lost)"
        return {
            Phase.BEFORE: "drop the connection before its messages",
            Phase.MID: "drop the connection after its first message",
            Phase.AFTER: "drop the connection after its messages",
        }[effect.phase]
    if isinstance(effect, Duplicate):
        return f"send {', '.join(effect.messages) or 'its messages'} twice"
    if isinstance(effect, Reorder):
        return f"send its messages as {', '.join(effect.order) or 'reversed'}"
    if isinstance(effect, PartialFill):
        every = f" every {effect.interval:g} s" if effect.interval else ""
        return f"fill {effect.shares} shares at a time{every}"
    return _describe_other(effect)


def _describe_other(effect: Effect) -> str:
    if isinstance(effect, Delay):
        return f"happen {effect.seconds:g} s later"
    if isinstance(effect, Reject):
        return f"reject the order with error {effect.code}"
    if isinstance(effect, SendError):
        return f"send error {effect.code}"
    if isinstance(effect, Restart):
        return f"restart the gateway ({effect.downtime:g} s down)"
    if isinstance(effect, RefuseConnections):
        return f"refuse connections for {effect.seconds:g} s"
    return str(effect)


def _check_seconds(effect: Delay | RefuseConnections | Restart) -> None:
    value = effect.downtime if isinstance(effect, Restart) else effect.seconds
    if not 0 <= value <= 86_400:
        raise ValueError(f"{type(effect).__name__}: seconds must be within 0..86400")


@dataclass(frozen=True, slots=True)
class Fired:
    """A record of one fault applied: which rule, at which step, to which order."""

    step: Step
    effect: Effect
    order_seq: int
    order_id: int
    client_id: int


@dataclass(slots=True)
class ReplyDelay:
    request: str
    seconds: float
    times: int | None = 1
    fired: int = 0


@dataclass
class FaultPlan:
    """The rules a gateway consults; thread-safe (tests add rules while the gateway runs)."""

    rules: list[FaultRule] = field(default_factory=list)
    reply_delays: list[ReplyDelay] = field(default_factory=list)
    log: list[Fired] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def install(self, rules: Iterable[FaultRule]) -> None:
        for rule in rules:
            self.add(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.reply_delays.clear()

    def pending(self) -> list[FaultRule]:
        with self._lock:
            return [r for r in self.rules if not r.spent]

    def fired(self) -> list[Fired]:
        with self._lock:
            return list(self.log)

    def take(self, step: Step, order: WorkingOrder, skip: tuple[type, ...] = ()) -> list[Effect]:
        """The effects of every live rule matching ``order`` at ``step``; spends one use each."""
        effects: list[Effect] = []
        with self._lock:
            for rule in self.rules:
                if rule.spent or rule.at is not step or isinstance(rule.effect, skip):
                    continue
                if rule.match.matches(order):
                    rule.fired += 1
                    effects.append(rule.effect)
                    self.log.append(
                        Fired(step, rule.effect, order.seq, order.order_id, order.client_id)
                    )
        return effects

    def take_reply_delay(self, request: str) -> float | None:
        with self._lock:
            for delay in self.reply_delays:
                spent = delay.times is not None and delay.fired >= delay.times
                if not spent and delay.request == request:
                    delay.fired += 1
                    return delay.seconds
        return None

    # -- conveniences: one line per hook -------------------------------------------------------

    def drop(
        self, at: Step, phase: Phase = Phase.AFTER, match: OrderMatch = ANY, times: int | None = 1
    ) -> FaultRule:
        """Close the client's connection at ``at`` (``phase`` of that step's batch)."""
        return self.add(FaultRule(at, Drop(phase), match, times))

    def delay(
        self, at: Step, seconds: float, match: OrderMatch = ANY, times: int | None = 1
    ) -> FaultRule:
        """Make step ``at`` happen ``seconds`` later on the gateway clock."""
        return self.add(FaultRule(at, Delay(seconds), match, times))

    def duplicate(
        self,
        at: Step = Step.FILL,
        messages: tuple[str, ...] = (),
        match: OrderMatch = ANY,
        times: int | None = 1,
    ) -> FaultRule:
        """Send (some of) the step's messages twice."""
        return self.add(FaultRule(at, Duplicate(messages), match, times))

    def reorder(
        self,
        at: Step = Step.FILL,
        order: tuple[str, ...] = (),
        match: OrderMatch = ANY,
        times: int | None = 1,
    ) -> FaultRule:
        """Send the step's messages in another order (reversed by default)."""
        return self.add(FaultRule(at, Reorder(order), match, times))

    def partial_fills(
        self,
        shares: Decimal | int,
        interval: float = 0.0,
        match: OrderMatch = ANY,
        times: int | None = 1,
    ) -> FaultRule:
        """Fill matching orders ``shares`` at a time."""
        return self.add(FaultRule(Step.FILL, PartialFill(Decimal(shares), interval), match, times))

    def reject(
        self,
        code: int = 201,
        reason: str = DEFAULT_REJECT_REASON,
        match: OrderMatch = ANY,
        times: int | None = 1,
        then_inactive: bool = False,
    ) -> FaultRule:
        """Refuse matching orders with ``code`` (201 reject, 103 duplicate order id, ...)."""
        return self.add(FaultRule(Step.RECEIVED, Reject(code, reason, then_inactive), match, times))

    def error_at(
        self,
        at: Step,
        code: int,
        message: str | None = None,
        to_order: bool = True,
        match: OrderMatch = ANY,
        times: int | None = 1,
    ) -> FaultRule:
        """Send error ``code`` after step ``at`` (e.g. 10349 after the ack)."""
        return self.add(FaultRule(at, SendError(code, message, to_order), match, times))

    def restart_at(
        self, at: Step, downtime: float = 0.0, match: OrderMatch = ANY, times: int | None = 1
    ) -> FaultRule:
        """Restart the gateway after step ``at`` (all connections close; state is kept)."""
        return self.add(FaultRule(at, Restart(downtime), match, times))

    def refuse_at(
        self, at: Step, seconds: float, match: OrderMatch = ANY, times: int | None = 1
    ) -> FaultRule:
        """Stop accepting connections for ``seconds`` after step ``at``."""
        return self.add(FaultRule(at, RefuseConnections(seconds), match, times))

    def delay_reply(self, request: str, seconds: float, times: int | None = 1) -> ReplyDelay:
        """Answer the next ``request`` (e.g. ``"reqAccountSummary"``) ``seconds`` later."""
        if not 0 <= seconds <= 86_400:
            raise ValueError("seconds must be within 0..86400")
        delay = ReplyDelay(request, seconds, times)
        with self._lock:
            self.reply_delays.append(delay)
        return delay
