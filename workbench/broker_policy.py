"""How the workbench reaches IB Gateway or TWS: ``policies/broker.yaml``, frozen and hashed.

Loaded strictly like the other policies (every key required, unknown keys refused); its digest is
stamped on every ``BrokerConnected`` event. Only paper trading exists: :func:`paper_only` refuses
the live ports (7496 TWS, 4001 IB Gateway) and any account that is not a paper ``DU…`` account,
naming the live gate, before anything connects. No I/O beyond reading the file.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, StrictBool, StrictInt, ValidationError, model_validator

from workbench.errors import ConfigError, LiveTradingRefusedError, problems
from workbench.models import Currency
from workbench.policy import Config, load_config

BROKER_FILE = "broker.yaml"
LIVE_PORTS = {7496: "TWS live", 4001: "IB Gateway live"}
PAPER_PORTS = {7497: "TWS paper", 4002: "IB Gateway paper"}
IB_MESSAGES_PER_SECOND = 50  # IB's limit on messages from one API client (error 100 beyond)
PAPER_ACCOUNT = re.compile(r"^DU[0-9]{1,12}$")
LIVE_GATE = (
    "live trading is not available: the workbench trades IBKR paper accounts (DU…) only, until"
    " the live gate (a later issue: evidence of the paper record and a second approval) exists"
)

Host = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-:]{0,99}$")]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
ClientId = Annotated[StrictInt, Field(ge=0, le=2_147_483_647)]
AccountCode = Annotated[str, Field(pattern=r"^[A-Z]{1,4}[0-9]{1,12}$")]
Timeout = Annotated[StrictInt, Field(ge=1, le=600)]
Seconds = Annotated[Decimal, Field(gt=0, le=3600, allow_inf_nan=False)]


class IbkrTimeouts(Config):
    """How long to wait for IB, in seconds (a wait that runs out is an error, never a guess)."""

    connect_seconds: Timeout  # the handshake and the start-up synchronisation
    request_seconds: Timeout  # one request: contract, quote, bars, account, positions
    order_seconds: Timeout  # IB's acknowledgement of an order or a cancel; a market order's fill


class IbkrReconnect(Config):
    """How the adapter reconnects after a drop, a nightly restart or a long 1100: waits growing
    exponentially from ``first_wait_seconds`` to ``max_wait_seconds``, ``max_attempts`` tries,
    then it gives up and says so; a clientId clash (326) is given up after ``clash_attempts``."""

    first_wait_seconds: Seconds
    max_wait_seconds: Seconds
    max_attempts: Annotated[StrictInt, Field(ge=1, le=1000)]
    clash_attempts: Annotated[StrictInt, Field(ge=1, le=10)]
    link_lost_seconds: Seconds  # IB's 1100 lasting this long: drop the socket and reconnect


class IbkrPacing(Config):
    """One limiter for every message the client sends (ib_async's own throttle): at most
    ``max_messages`` in any ``per_seconds``; more are queued, never dropped. IB allows about 50
    messages a second; small steps keep every second well under it even when messages bunch."""

    max_messages: Annotated[StrictInt, Field(ge=1, le=45)]
    per_seconds: Annotated[Decimal, Field(ge=Decimal("0.05"), le=10, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _below_ibs_rate(self) -> Self:
        if Decimal(self.max_messages) / self.per_seconds >= IB_MESSAGES_PER_SECOND:
            raise ValueError(
                f"max_messages / per_seconds must stay under IB's {IB_MESSAGES_PER_SECOND}"
                " messages a second"
            )
        return self


class IbkrSettings(Config):
    """One IB Gateway / TWS session: where it listens, which client and accounts, how it reads."""

    host: Host
    port: Port
    client_id: ClientId
    accounts: tuple[AccountCode, ...]  # the paper accounts it may trade; () = the one the login has
    read_only: StrictBool  # connect read-only: reads and reports; every submit is refused
    currency: Currency  # the account's base currency (money is read in it)
    market_data_type: Literal[1, 2, 3, 4]  # IB's reqMarketDataType: 1 live, 2 frozen, 3 delayed…
    timeouts: IbkrTimeouts
    reconnect: IbkrReconnect
    pacing: IbkrPacing

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def with_overrides(
        self, *, host: str | None = None, port: int | None = None, client_id: int | None = None
    ) -> IbkrSettings:
        """These settings with the given connection fields replaced (validated again)."""
        changes = {"host": host, "port": port, "client_id": client_id}
        data = {**self.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
        return IbkrSettings.model_validate(data)


class BrokerPolicy(Config):
    """``policies/broker.yaml``: the IBKR connection (the paper broker needs none)."""

    version: Annotated[StrictInt, Field(ge=1)]
    ibkr: IbkrSettings


def load_broker_policy(path: Path) -> BrokerPolicy:
    """Load ``broker.yaml`` (a file path, or a folder holding it); faults are ConfigErrors."""
    path = Path(path)
    return load_config(BrokerPolicy, path / BROKER_FILE if path.is_dir() else path)


def connection_settings(
    policy_dir: Path, *, host: str | None, port: int | None, client_id: int | None
) -> tuple[IbkrSettings, str]:
    """The IBKR settings of ``broker.yaml`` with the given connection over them, checked paper
    only, and the file's hash; a bad value is a ConfigError, a live one a refusal."""
    policy = load_broker_policy(policy_dir)
    try:
        settings = policy.ibkr.with_overrides(host=host, port=port, client_id=client_id)
    except ValidationError as exc:
        raise ConfigError(f"bad IBKR connection: {problems(exc)}") from None
    paper_only(settings)
    return settings, policy.digest


def paper_only(settings: IbkrSettings) -> None:
    """Refuse a live port or a non-paper account in the settings (before any socket)."""
    if settings.port in LIVE_PORTS:
        raise LiveTradingRefusedError(
            f"port {settings.port} is the {LIVE_PORTS[settings.port]} port: {LIVE_GATE}."
            " Use 4002 (IB Gateway paper) or 7497 (TWS paper)"
        )
    for account in settings.accounts:
        check_paper_account(account)


def check_paper_account(account: str) -> None:
    """Refuse an account that is not a paper (``DU…``) account."""
    if not PAPER_ACCOUNT.match(account):
        raise LiveTradingRefusedError(
            f"account {account} is not a paper (DU…) account: {LIVE_GATE}"
        )
