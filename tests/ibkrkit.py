"""The IBKR adapter in tests: the loopback gateway, a real audit log and the adapter connected to
it over a socket, with the gateway's clock and synthetic market moving with the test's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import TracebackType

from helpers import POLICIES

from workbench.audit import AuditLog
from workbench.broker_policy import IbkrSettings, load_broker_policy
from workbench.brokers.ibkr import IbkrBroker
from workbench.clock import FixedClock
from workbench.keys import ApprovalKey
from workbench.marketdata import MarketData
from workbench.sessions import xnys
from workbench.testing import Gateway, GatewayConfig

CENT = Decimal("0.01")


def settings_for(gateway: Gateway, client_id: int = 1, **changes: object) -> IbkrSettings:
    """The repository's broker settings, pointed at ``gateway``."""
    base = load_broker_policy(POLICIES).ibkr.with_overrides(port=gateway.port, client_id=client_id)
    return IbkrSettings.model_validate({**base.model_dump(), **changes}) if changes else base


def gateway_pause(gateway: Gateway) -> Callable[[float], Awaitable[None]]:
    """The adapter's reconnect waits as time on the gateway's clock: a wait of N seconds moves
    the gateway N seconds on (releasing its downtime, delays, refused connects), at once."""

    async def pause(seconds: float) -> None:
        await asyncio.get_running_loop().run_in_executor(None, gateway.advance, seconds)

    return pause


def connect(
    log: AuditLog, gateway: Gateway, *, key: ApprovalKey | None, client_id: int = 1,
    **changes: object,
) -> IbkrBroker:  # fmt: skip
    """The adapter on ``log``, connected to ``gateway``; its reconnect waits move the gateway's
    clock (no wall-clock sleep)."""
    policy = load_broker_policy(POLICIES)
    settings = settings_for(gateway, client_id, **changes)
    return IbkrBroker.connect(log, settings, key=key, config_hash=policy.digest,
                              pause=gateway_pause(gateway))  # fmt: skip


class IbkrWorld:
    """A started gateway (clock at the test clock's now) and the adapter on a home, both closed
    on exit. ``move_to`` moves both clocks and walks the gateway's prices through the seeded
    synthetic sessions in between (relative to where each symbol started), as the paper
    broker's market moves."""

    def __init__(self, home: Path, clock: FixedClock, config: GatewayConfig | None = None) -> None:
        self.home, self.clock = home, clock
        self.gateway = Gateway(config or GatewayConfig(), start=clock.now())
        self.market = MarketData()
        self._anchor: dict[str, tuple[Decimal, Decimal]] = {}
        self._start = clock.now()
        self.log: AuditLog
        self.broker: IbkrBroker

    def __enter__(self) -> IbkrWorld:
        self.gateway.start()
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.broker.close()
            self.log.close()
        finally:
            self.gateway.stop()

    def open(self) -> None:
        self.log = AuditLog(self.home / "workbench.sqlite", clock=self.clock)
        try:
            self.broker = connect(self.log, self.gateway, key=ApprovalKey(self.home))
        except BaseException:
            self.log.close()
            raise

    def restart(self) -> None:
        """Close the adapter and the log, and open them again (the gateway keeps running)."""
        self.broker.close()
        self.log.close()
        self.open()

    def move_to(self, when: datetime) -> None:
        """Both clocks to ``when``; each session closing on the way moves the symbols of the
        working orders to that session's low, then its close; then the adapter catches up."""
        before = self.clock.now()
        self.clock.set(when)
        self.gateway.advance(max(0.0, (when - self.gateway.now()).total_seconds()))
        symbols = sorted({o.instrument.symbol for o in self.broker.open_orders()})
        for session in xnys().between(before, when):
            if before < session.close <= when:
                for symbol in symbols:
                    bar = self.market.bar(symbol, session.day)
                    for price in (bar.low, bar.close):
                        self.gateway.set_price(symbol, self._scaled(symbol, price))
        self.broker.settle()

    def _scaled(self, symbol: str, synthetic: Decimal) -> Decimal:
        if symbol not in self._anchor:
            quote = self.gateway.quote(symbol)
            assert quote is not None and quote.last is not None
            base = self.market.bar(symbol, xnys().last_closed(self._start).day).close
            self._anchor[symbol] = (quote.last, base)
        start, base = self._anchor[symbol]
        return (start * synthetic / base).quantize(CENT, ROUND_HALF_UP)
