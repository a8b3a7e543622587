"""The state of the link to IB, and how it is brought back: reconnects with backoff (tenacity).

A session is READY only once IB's orders and executions have been reconciled with the log on the
current connection; until then (CONNECTING, RECONCILING), while IB says its own link is lost
(1100: LINK_LOST), while reconnecting (RECONNECTING) and after giving up (GAVE_UP) no order is
sent. :class:`Link` keeps that state (thread-safe: the IB thread changes it, callers read it,
the recorder thread marks a reconciliation done) and runs the reconnect loop on the IB thread's
loop: waits growing exponentially (``policies/broker.yaml`` ``reconnect``), tried again while the
failure is "unavailable", given up after ``max_attempts``, or after ``clash_attempts`` refusals
of the client id (326) — said clearly, never retried forever. Waiting is ``pause`` (asyncio's
sleep; tests hand it the gateway's clock). No ib_async here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from workbench.broker_policy import IbkrReconnect
from workbench.errors import BrokerError, BrokerUnavailableError, ClientIdInUseError

log = logging.getLogger("workbench.brokers.ibkr")

Pause = Callable[[float], Awaitable[None]]


class LinkState(StrEnum):
    CONNECTING = "connecting"
    RECONCILING = "reconciling"  # connected; IB's orders being matched to the log
    READY = "ready"
    LINK_LOST = "link lost"  # IB's 1100: TWS/IB Gateway lost its own link to IB's servers
    RECONNECTING = "reconnecting"
    GAVE_UP = "gave up"
    CLOSED = "closed"


CONNECTED = frozenset({LinkState.RECONCILING, LinkState.READY, LinkState.LINK_LOST})


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """What ``workbench status`` says about the connection."""

    state: LinkState
    connected_since: datetime | None  # when the current connection was reconciled
    connections: int  # how many times it connected (1 + reconnects)
    attempts: int  # failed tries of the reconnect under way
    problem: str  # why it is not ready (empty when it is)


class ClashLimit(stop_base):
    """Stop once the client id has been refused as in use (326) ``attempts`` times."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        clash = isinstance(failure, ClientIdInUseError)
        return clash and retry_state.attempt_number >= self.attempts


class Link:
    """The link's state and its reconnect loop (see the module's docstring)."""

    def __init__(self, policy: IbkrReconnect, pause: Pause, now: Callable[[], datetime]) -> None:
        self.policy = policy
        self._pause = pause
        self._now = now
        self._lock = threading.Lock()
        self._state = LinkState.CONNECTING
        self._generation = 0
        self._since: datetime | None = None
        self._attempts = 0
        self._problem = ""

    # -- reading (any thread) ----------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def generation(self) -> int:
        """Counts connections: a connection that drops and comes back is a new generation."""
        return self._generation

    @property
    def ready(self) -> bool:
        return self._state is LinkState.READY

    def status(self) -> LinkStatus:
        with self._lock:
            return LinkStatus(self._state, self._since, self._generation, self._attempts,
                              self._problem)  # fmt: skip

    def refusal(self) -> str:
        """Why no order may go now (empty when READY)."""
        with self._lock:
            state, problem = self._state, self._problem
        if state is LinkState.READY:
            return ""
        return f"the IB connection is {state.value}{': ' + problem if problem else ''}"

    # -- changing (the IB thread; the recorder for ``reconciled``) ----------------------------

    def connected(self) -> int:
        """A connection is up (handshake and synchronisation done): reconcile it next."""
        with self._lock:
            self._generation += 1
            self._state, self._attempts, self._problem = LinkState.RECONCILING, 0, ""
            return self._generation

    def reconciling(self) -> None:
        """IB lost data (1101): reconcile again before the next order."""
        with self._lock:
            if self._state in CONNECTED:
                self._state = LinkState.RECONCILING

    def reconciled(self, generation: int) -> bool:
        """The reconciliation of connection ``generation`` is recorded: READY, unless the
        connection has changed since (or IB's link is lost)."""
        with self._lock:
            if generation != self._generation or self._state is not LinkState.RECONCILING:
                return False
            self._state, self._since = LinkState.READY, self._now()
            return True

    def link_lost(self, message: str) -> bool:
        with self._lock:
            if self._state not in CONNECTED:
                return False
            self._state, self._problem = LinkState.LINK_LOST, f"IB 1100: {message}"
            return True

    def link_restored(self) -> None:
        """IB's 1102 (data kept): back to READY if this connection was reconciled."""
        with self._lock:
            if self._state is LinkState.LINK_LOST:
                self._state, self._problem = LinkState.READY, ""

    def dropped(self) -> bool:
        """The socket dropped: True when a reconnect should start (it was connected)."""
        with self._lock:
            if self._state not in CONNECTED:
                return False
            self._state, self._problem = LinkState.RECONNECTING, "the connection dropped"
            return True

    def closed(self) -> None:
        with self._lock:
            self._state, self._problem = LinkState.CLOSED, "closed"

    def _gave_up(self, why: str) -> None:
        with self._lock:
            if self._state is not LinkState.CLOSED:
                self._state, self._problem = LinkState.GAVE_UP, why

    # -- reconnecting (on the IB thread's loop) ----------------------------------------------

    async def reconnect(self, connect: Callable[[], Awaitable[None]], endpoint: str) -> bool:
        """Call ``connect`` until it succeeds (True) or the policy gives up (False, said)."""
        p = self.policy
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=float(p.first_wait_seconds),
                                  max=float(p.max_wait_seconds)),
            stop=stop_any(stop_after_attempt(p.max_attempts), ClashLimit(p.clash_attempts)),
            retry=retry_if_exception_type(BrokerUnavailableError),
            sleep=self._pause,
            before_sleep=self._failed,
            reraise=True,
        )  # fmt: skip
        try:
            async for attempt in retrying:
                with attempt:
                    await connect()
        except ClientIdInUseError as exc:
            self._give_up(f"{exc} (tried {p.clash_attempts} times; not retried further)")
            return False
        except BrokerError as exc:  # unavailable after every attempt, or refused for good
            self._give_up(f"reconnecting to {endpoint} failed: {exc}")
            return False
        return True

    def _failed(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        with self._lock:
            self._attempts = state.attempt_number
            self._problem = f"attempt {state.attempt_number} failed: {failure}"
        log.warning("reconnecting to IB: attempt %d failed (%s)", state.attempt_number, failure)

    def _give_up(self, why: str) -> None:
        self._gave_up(why)
        log.error("the IBKR adapter gave up reconnecting: %s", why)
