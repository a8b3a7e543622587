"""Test doubles for the outside world: a loopback TWS-protocol gateway the real ib_async client
talks to over a socket (synthetic prices, never IBKR). See docs/gateway.md.

Nothing here imports ib_async: the gateway writes the wire format itself.
"""

from workbench.testing.book import Instrument, Quote
from workbench.testing.chaos import chaos_schedule
from workbench.testing.config import GatewayConfig
from workbench.testing.faults import (
    ANY,
    Delay,
    Drop,
    Duplicate,
    FaultPlan,
    FaultRule,
    Fired,
    OrderMatch,
    PartialFill,
    Phase,
    RefuseConnections,
    Reject,
    Reorder,
    Restart,
    SendError,
    Step,
)
from workbench.testing.gateway import Gateway, GatewayError
from workbench.testing.orders import Execution
from workbench.testing.records import OrderView, PositionView, Received, Sent

__all__ = [
    "ANY",
    "Delay",
    "Drop",
    "Duplicate",
    "Execution",
    "FaultPlan",
    "FaultRule",
    "Fired",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "Instrument",
    "OrderMatch",
    "OrderView",
    "PartialFill",
    "Phase",
    "PositionView",
    "Quote",
    "Received",
    "RefuseConnections",
    "Reject",
    "Reorder",
    "Restart",
    "SendError",
    "Sent",
    "Step",
    "chaos_schedule",
]
