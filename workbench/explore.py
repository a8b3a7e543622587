"""The quant's what-if lab behind ``notebooks/explore.ipynb``.

It loads the rebalance targets or a signals table, lets the quant scale sizes and loosen or tighten
policy limits on an in-memory copy, and shows how the gate's decisions change. Nothing is written
to the audit log unless :meth:`Lab.propose_all` is called; the policy files are never edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from workbench.clock import Clock, SystemClock
from workbench.daily import propose_intents
from workbench.errors import ConfigError
from workbench.home import resolve_policy_dir
from workbench.models import OrderIntent
from workbench.policy import RiskPolicy
from workbench.replay import NEW_YORK, replay_at
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
    "violations",
]


@dataclass
class Lab:
    """Intents under study, the policy copy they are judged by, and the workbench they use."""

    wb: Workbench
    base_intents: list[OrderIntent]
    policy: RiskPolicy
    scale: Decimal = Decimal(1)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        *,
        home: str = "",
        broker: str = "paper",
        policy_dir: str = "",
        signals_path: str | None = None,
        clock_at: str = "",
    ) -> Lab:
        """Open the home read-mostly and build today's intents from targets or signals (a
        replay time ``clock_at`` opens that day's replay sandbox, never the live home)."""
        policies = resolve_policy_dir(policy_dir or None)
        clock: Clock = SystemClock()
        where: str | Path | None = home or None
        if clock_at:
            where, clock = replay_at(clock_at, home or None)
        wb = Workbench.open(where, broker, policy_dir=policies, clock=clock)
        day = clock.now().astimezone(NEW_YORK).date()
        intents = propose_intents(
            wb,
            wb.portfolio(record=False),
            as_of=day,
            proposer="signals" if signals_path else "rebalance",
            policy_dir=policies,
            signals_path=Path(signals_path) if signals_path else None,
            record=False,
        )
        return cls(wb, intents, wb.policy)

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
        self.notes.append(f"{name} = {value}")

    def scale_sizes(self, factor: float | Decimal) -> None:
        """Multiply every intent's quantity by ``factor`` (whole shares, at least one)."""
        scale = Decimal(str(factor))
        if not scale.is_finite() or scale <= 0:
            raise ConfigError(f"size factor must be a positive number, got {factor!r}")
        self.scale = scale
        self.notes.append(f"sizes x {scale}")

    def intents(self) -> list[OrderIntent]:
        """The base intents with the current size factor applied."""
        scaled = []
        for intent in self.base_intents:
            qty = max((intent.quantity * self.scale).to_integral_value(ROUND_DOWN), Decimal(1))
            scaled.append(intent.model_copy(update={"quantity": qty}))
        return [OrderIntent.model_validate(i.model_dump()) for i in scaled]

    # -- views -------------------------------------------------------------------------------

    def decisions(self) -> pd.DataFrame:
        """Each intent's simulated notional, post-trade weight and the gate's decision."""
        rows = []
        for r in self.wb.what_if(self.intents(), policy=self.policy):
            if r.decision is None:
                decision, violations = "REJECT", r.fault or ""
            else:
                decision = r.decision.decision.value
                violations = "; ".join(
                    f"{v.rule_id.value}: {v.message}" for v in r.decision.violations
                )
            rows.append(
                {
                    "symbol": r.intent.symbol,
                    "side": r.intent.side.value,
                    "quantity": r.intent.quantity,
                    "limit_price": r.intent.limit_price,
                    "notional": r.sim.notional if r.sim else None,
                    "weight_after": r.sim.weight_after if r.sim else None,
                    "decision": decision,
                    "violations": violations,
                }
            )
        frame = pd.DataFrame(rows, columns=_COLUMNS)
        print(self.summary(frame))
        return frame

    def summary(self, frame: pd.DataFrame) -> str:
        """One plain-text line: what was changed and how the decisions came out."""
        counts = frame["decision"].value_counts().to_dict() if len(frame) else {}
        changes = ", ".join(self.notes) or "policy as filed"
        return f"{len(frame)} intents on {self.wb.label} in {self.wb.home} ({changes}): {counts}"

    def controls(self) -> Any:
        """Sliders for the notional limit, the weight limit and the size factor."""
        import ipywidgets as widgets
        from IPython.display import display

        limits = self.policy.limits
        notional = widgets.FloatSlider(
            value=float(limits.max_notional_per_trade),
            min=1000,
            max=200000,
            step=1000,
            description="max notional",
        )
        weight = widgets.FloatSlider(
            value=float(limits.max_position_weight),
            min=0.01,
            max=1.0,
            step=0.01,
            description="max weight",
        )
        size = widgets.FloatSlider(
            value=float(self.scale), min=0.1, max=3, step=0.1, description="size x"
        )
        out = widgets.Output()

        def redraw(_: object = None) -> None:
            self.set_limit("max_notional_per_trade", Decimal(str(notional.value)))
            self.set_limit("max_position_weight", Decimal(str(weight.value)))
            self.scale_sizes(size.value)
            with out:
                out.clear_output()
                display(self.decisions())

        for slider in (notional, weight, size):
            slider.observe(redraw, names="value")
        redraw()
        print(
            f"Controls start at max notional {notional.value:,.0f}, max weight "
            f"{weight.value:.2f}, size x{size.value}; the table below them follows the sliders."
        )
        return widgets.VBox([notional, weight, size, out])

    def propose_all(self) -> list[Outcome]:
        """Record the current intents as real proposals, judged by the policy as filed (not the
        in-memory copy), and still needing a person's approval."""
        stamp = datetime.now(NEW_YORK).strftime("%Y%m%dT%H%M%S")
        return self.wb.run_cycle(self.intents(), actor=ACTOR, correlation_id=f"explore:{stamp}")
