"""The pure risk core: rules, the gate, history, trading-state folding and the breaker's judgment.

It never imports the audit log or a broker: it is handed snapshots, history and the time.
"""

from workbench.risk.gate import decide, evaluate
from workbench.risk.history import History, NavPoint, Submission, WorkingOrder
from workbench.risk.rules import RULES, Context
from workbench.risk.state import BreakerCheck, StateChange, judge_breaker

__all__ = [
    "RULES",
    "BreakerCheck",
    "Context",
    "History",
    "NavPoint",
    "StateChange",
    "Submission",
    "WorkingOrder",
    "decide",
    "evaluate",
    "judge_breaker",
]
