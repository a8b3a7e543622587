"""The quant's what-if lab behind ``notebooks/explore.ipynb``.

It loads the rebalance targets or a signals table, lets the quant scale sizes and loosen or tighten
policy limits on an in-memory copy, and shows how the gate's decisions change. Nothing is written
to the audit log unless :meth:`Lab.propose_all` is called; the policy files are never edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from workbench import fmt, report_style
from workbench.clock import SystemClock
from workbench.daily import propose_intents
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import resolve_policy_dir
from workbench.models import OrderIntent, RiskDecision
from workbench.policy import RiskPolicy
from workbench.replay import market_today, notebook_home
from workbench.workbench import Outcome, Workbench

ACTOR = "explore"
_COLUMNS = [
    "symbol",
    "side",
    "quantity",
    "limit_price",
    "notional",
    "weight_after",
    "decision",
    "findings",
]
CENT = Decimal("0.01")
BASIS_POINT = Decimal("0.0001")


@dataclass
class Lab:
    """Intents under study, the policy copy they are judged by, and the workbench they use."""

    wb: Workbench
    base_intents: list[OrderIntent]
    policy: RiskPolicy
    scale: Decimal = Decimal(1)
    currency: str = "USD"
    changes: dict[str, str] = field(default_factory=dict)  # knob -> its value, as set

    @classmethod
    def open(
        cls,
        *,
        home: str = "",
        broker: str = "paper",
        policy_dir: str = "",
        signals_path: str | None = None,
        clock_at: str = "",
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
    ) -> Lab:
        """Open the home read-mostly and build today's intents from targets or signals (a
        replay time ``clock_at`` opens that day's replay sandbox, never the live home)."""
        policies = resolve_policy_dir(policy_dir or None)
        where, clock = notebook_home(home, clock_at)
        wb = Workbench.open(where, broker, policy_dir=policies, clock=clock,
                            host=host, port=port, client_id=client_id)  # fmt: skip
        day = market_today(clock.now())
        portfolio = wb.portfolio(record=False)
        intents = propose_intents(
            wb,
            portfolio,
            as_of=day,
            proposer="signals" if signals_path else "rebalance",
            policy_dir=policies,
            signals_path=Path(signals_path) if signals_path else None,
            record=False,
        )
        return cls(wb, intents, wb.policy, currency=portfolio.currency)

    # -- knobs (in memory only) --------------------------------------------------------------

    def set_limit(self, name: str, value: Any) -> None:
        """Change one ``limits`` key of the in-memory policy; an invalid value is refused."""
        limits = self.policy.limits.model_dump()
        if name not in limits:
            raise ConfigError(f"unknown limit {name!r}; known: {sorted(limits)}")
        limits[name] = value
        try:
            data = self.policy.model_dump()
            data["limits"] = limits
            self.policy = RiskPolicy.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"limit {name}: {exc.errors()[0]['msg']}") from None
        self.changes[name] = _plain(value)

    def scale_sizes(self, factor: float | Decimal) -> None:
        """Multiply every intent's quantity by ``factor`` (whole shares, at least one)."""
        scale = Decimal(str(factor))
        if not scale.is_finite() or scale <= 0:
            raise ConfigError(f"size factor must be a positive number, got {factor!r}")
        self.scale = scale
        self.changes["size factor"] = _plain(scale)

    def intents(self) -> list[OrderIntent]:
        """The base intents with the current size factor applied."""
        scaled = []
        for intent in self.base_intents:
            qty = max((intent.quantity * self.scale).to_integral_value(ROUND_DOWN), Decimal(1))
            scaled.append(intent.model_copy(update={"quantity": qty}))
        return [OrderIntent.model_validate(i.model_dump()) for i in scaled]

    # -- views -------------------------------------------------------------------------------

    def decisions(self) -> pd.DataFrame:
        """Each intent's simulated notional (to the cent), post-trade weight (to the basis
        point), the gate's decision and every finding with its severity, blockers first."""
        rows = []
        for r in self.wb.what_if(self.intents(), policy=self.policy):
            rows.append(
                {
                    "symbol": r.intent.symbol,
                    "side": r.intent.side.value,
                    "quantity": r.intent.quantity,
                    "limit_price": r.intent.limit_price,
                    "notional": r.sim.notional.quantize(CENT) if r.sim else None,
                    "weight_after": r.sim.weight_after.quantize(BASIS_POINT) if r.sim else None,
                    "decision": r.decision.decision.value if r.decision else "REJECT",
                    "findings": _findings(r.decision, r.fault),
                }
            )
        frame = pd.DataFrame(rows, columns=_COLUMNS)
        print(self.summary(frame))
        return frame

    def view(self, frame: pd.DataFrame | None = None) -> Any:
        """The decisions as a formatted table (money, percentages, findings in full)."""
        shown = self.decisions() if frame is None else frame
        return report_style.table(
            shown.rename(columns={"limit_price": "limit", "weight_after": "weight after"}),
            currency=self.currency,
            money=["notional"],
            prices=["limit"],
            quantities=["quantity"],
            percents=["weight after"],
            text=["findings"],
        )

    def summary(self, frame: pd.DataFrame) -> str:
        """One plain-text line: what was changed and how the decisions came out."""
        counts = frame["decision"].value_counts() if len(frame) else pd.Series(dtype=int)
        outcome = ", ".join(f"{n} {d}" for d, n in counts.items()) or "no intents"
        changes = ", ".join(f"{k} {v}" for k, v in self.changes.items()) or "policy as filed"
        return f"{len(frame)} intents on {self.wb.label} in {self.wb.home} ({changes}): {outcome}"

    def controls(self) -> Any:
        """Sliders for the notional limit, the weight limit and the size factor."""
        import ipywidgets as widgets
        from IPython.display import display

        limits = self.policy.limits
        notional, weight, size = (
            widgets.FloatSlider(
                value=float(value), min=low, max=high, step=step, description=label,
                readout_format=readout, style={"description_width": "initial"},
            ).add_class(css)
            for value, low, high, step, label, readout, css in (
                (limits.max_notional_per_trade, 1000, 200000, 1000,
                 f"max notional ({self.currency})", ",.0f", "wb-max-notional"),
                (limits.max_position_weight, 0.01, 1.0, 0.01, "max weight", ".0%",
                 "wb-max-weight"),
                (self.scale, 0.1, 3, 0.1, "size ×", ".1f", "wb-size"),
            )
        )  # fmt: skip
        out = widgets.Output()
        out.add_class("wb-explore-table")

        def redraw(_: object = None) -> None:
            with out:
                out.clear_output(wait=True)
                try:
                    self.set_limit("max_notional_per_trade", snap(notional.value, "1000"))
                    self.set_limit("max_position_weight", snap(weight.value, "0.01"))
                    self.scale_sizes(snap(size.value, "0.1"))
                    display(self.view())
                except WorkbenchError as exc:  # said in the table's place, never a traceback
                    print(f"Cannot judge these settings: {exc}")

        for slider in (notional, weight, size):
            slider.observe(redraw, names="value")
        redraw()
        print(
            f"Controls start at max notional {fmt.amount(snap(notional.value, '1000'), 0)}, "
            f"max weight {fmt.pct(snap(weight.value, '0.01'), 0)}, size "
            f"×{snap(size.value, '0.1')}; the table below them follows the sliders."
        )
        return widgets.VBox([notional, weight, size, out])

    def propose_all(self) -> list[Outcome]:
        """Record the current intents as real proposals, judged by the policy as filed (not the
        in-memory copy), and still needing a person's approval."""
        stamp = SystemClock().now().astimezone(fmt.NEW_YORK).strftime("%Y%m%dT%H%M%S")
        return self.wb.run_cycle(self.intents(), actor=ACTOR, correlation_id=f"explore:{stamp}")


def snap(value: float, step: str) -> Decimal:
    """A slider's float as the Decimal on its step grid (0.30000000000000004 → 0.3)."""
    grid = Decimal(step)
    steps = (Decimal(repr(value)) / grid).to_integral_value(ROUND_HALF_EVEN)
    return (steps * grid).quantize(grid)


def _plain(value: Any) -> str:
    """A knob's value as a person reads it: 10000 → "10,000", 0.10 → "0.1"."""
    number = Decimal(str(value))
    return fmt.quantity(number) if number.is_finite() else str(value)


def _findings(decision: RiskDecision | None, fault: str | None) -> str:
    """Every finding with its severity, blockers first, each whole on its own line."""
    if decision is None:
        return f"FAULT BLOCKER: {fault or 'not judged'}"
    order = ("BLOCKER", "MAJOR", "MINOR")
    found = sorted(decision.violations, key=lambda v: order.index(v.severity.value))
    return "\n".join(
        f"{v.rule_id.value.split('_', 1)[0]} {v.severity.value}: {v.message}" for v in found
    )
