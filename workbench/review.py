"""The reviewer's view behind ``notebooks/review.ipynb``: the audit log over a date range.

Read-only: it opens the log read-only (an archived, read-only copy works too), verifies the chain
and summarises events, gate decisions by rule, fills with realised P&L, and the trading-state
history. It never writes an event, and never creates a home.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pandas as pd

from workbench.audit import AuditLog, EventType, VerifyResult
from workbench.errors import ConfigError
from workbench.home import DB_NAME, require_home

FILL_TYPES = (
    EventType.ORDER_FILLED,
    EventType.ORDER_PARTIALLY_FILLED,
    EventType.BROKER_ORDER_UPDATED,
)
STATE_TYPES = (
    EventType.KILL_SWITCH_ACTIVATED,
    EventType.KILL_SWITCH_RELEASED,
    EventType.CIRCUIT_BREAKER_TRIPPED,
)


def _day(text: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"dates must be YYYY-MM-DD, got {text!r}") from None


@dataclass
class Review:
    """The audit log between ``since`` (inclusive) and ``until`` (exclusive), UTC days."""

    log: AuditLog
    since: datetime
    until: datetime

    @classmethod
    def open(cls, *, home: str = "", since: str = "", until: str = "") -> Review:
        today = datetime.now(UTC).date()
        start = _day(since, today - timedelta(days=30))
        end = _day(until, today + timedelta(days=1))
        if end <= start:
            raise ConfigError(f"until ({end}) must be after since ({start})")
        lower = datetime.combine(start, time(), tzinfo=UTC)
        upper = datetime.combine(end, time(), tzinfo=UTC)
        path = require_home(home or None)  # never creates one; a read-only copy is fine
        return cls(AuditLog(path / DB_NAME, read_only=True), lower, upper)

    def close(self) -> None:
        self.log.close()

    def chain(self) -> VerifyResult:
        """Verify the whole chain (not just the range) and print the verdict in plain text."""
        print(f"Home: {self.log.path.parent}")
        result = self.log.verify()
        if result.ok:
            print(
                f"Audit chain OK: {result.checked} events, head seq {result.head_seq} "
                f"{result.head_hash}"
            )
        else:
            print(f"AUDIT CHAIN BROKEN at seq {result.first_bad_seq}: {result.reason}")
        return result

    def events_by_type(self) -> pd.DataFrame:
        """How many events of each type fell in the range."""
        frame = self.log.between(self.since, self.until)
        counts = frame["type"].value_counts().rename_axis("type").reset_index(name="events")
        print(f"{len(frame)} events from {self.since:%Y-%m-%d} to {self.until:%Y-%m-%d}")
        return counts

    def rejects_by_rule(self) -> pd.DataFrame:
        """Gate decisions in the range, and how often each rule stopped or flagged an order."""
        decisions = self.log.events(
            types=(EventType.RISK_GATE_EVALUATED,), since=self.since, until=self.until
        )
        total = len(decisions)
        by_rule: Counter[tuple[str, str]] = Counter()
        outcomes: Counter[str] = Counter()
        for event in decisions:
            payload = event.payload
            outcomes[str(payload.get("decision"))] += 1
            for v in payload.get("violations", []):
                by_rule[(v["rule_id"], v["severity"])] += 1
            if payload.get("fault"):
                by_rule[("FAULT", "BLOCKER")] += 1
        rows = [
            {"rule_id": rule, "severity": sev, "count": n, "rate": n / total if total else 0.0}
            for (rule, sev), n in sorted(by_rule.items())
        ]
        print(f"{total} decisions: {dict(outcomes)}")
        return pd.DataFrame(rows, columns=["rule_id", "severity", "count", "rate"])

    def fills(self) -> pd.DataFrame:
        """Every fill in the range with its commission and realised P&L, and the totals."""
        rows = []
        for event in self.log.events(types=FILL_TYPES, since=self.since, until=self.until):
            fill = event.payload.get("fill")
            if not fill:
                continue
            rows.append(
                {
                    "time": fill["time"],
                    "proposal_id": fill.get("proposal_id"),
                    "symbol": fill["instrument"]["symbol"],
                    "side": fill["side"],
                    "quantity": Decimal(fill["quantity"]),
                    "price": Decimal(fill["price"]),
                    "commission": Decimal(fill["commission"]),
                    "realized_pnl": Decimal(fill["realized_pnl"]),
                    "broker": event.payload.get("broker", ""),
                }
            )
        frame = pd.DataFrame(
            rows,
            columns=[
                "time",
                "proposal_id",
                "symbol",
                "side",
                "quantity",
                "price",
                "commission",
                "realized_pnl",
                "broker",
            ],
        )
        pnl = sum(frame["realized_pnl"], Decimal(0))
        fees = sum(frame["commission"], Decimal(0))
        print(f"{len(frame)} fills; realised P&L {pnl} net of {fees} commissions")
        return frame

    def trading_states(self) -> pd.DataFrame:
        """Every trading-state change in the range: when, to what, by whom and why."""
        rows = [
            {
                "ts": e.ts,
                "event": e.type,
                "state": e.payload.get("state", "HALTED"),
                "by": e.payload.get("by", e.actor),
                "reason": e.payload.get("reason", ""),
            }
            for e in self.log.events(types=STATE_TYPES, since=self.since, until=self.until)
        ]
        print(f"{len(rows)} trading-state changes")
        return pd.DataFrame(rows, columns=["ts", "event", "state", "by", "reason"])
