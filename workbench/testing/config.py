"""The loopback gateway's configuration: one frozen model, every knob named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]


class GatewayConfig(BaseModel):
    """What the test gateway pretends to be: loopback only; defaults look like a new paper account.

    ``account`` accepts any IB-style id so that an adapter can be shown a live-looking account
    (``U…``) and refuse it; the ``workbench gateway`` command only runs paper (``DU…``) accounts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: Literal["127.0.0.1"] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    account: Annotated[str, Field(pattern=r"^[A-Z]{1,3}\d{1,9}$")] = "DU1234567"
    server_version: Annotated[int, Field(ge=176, le=178)] | None = 176
    universe_path: Path | None = None
    currency: Literal["USD"] = "USD"
    starting_cash: Money = Decimal(1_000_000)
    commission_per_share: Money = Decimal("0.005")
    commission_min: Money = Decimal("1.00")
    commission_max_pct: Rate = Decimal("0.01")
    initial_margin_rate: Rate = Decimal("0.5")
    maintenance_margin_rate: Rate = Decimal("0.25")
    buying_power_multiplier: Annotated[Decimal, Field(ge=1, le=10)] = Decimal(4)
    delayed_by_seconds: Annotated[int, Field(ge=0, le=86400)] = 900
    pacing_limit: Annotated[int, Field(ge=1, le=10_000)] | None = None
    margin_check: bool = True
    read_only: bool = False
    tif_preset_warning: bool = False
    announce: bool = True
    seed_prices: bool = True
