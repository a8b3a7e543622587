"""Tests only: a `workbench` process and its papermill kernel on a wall clock fixed at
``$WORKBENCH_TEST_WALL_CLOCK`` (ISO with a zone), as in-process tests fix ``SystemClock``.

The time of day is the outside world: this is how a test runs ``workbench daily`` live on a
Wednesday morning or a Saturday, whatever day CI runs on. Python imports this module at start-up
only when a test puts this folder on ``PYTHONPATH``; nothing else of the workbench is replaced.
"""

from __future__ import annotations

import os

_AT = os.environ.get("WORKBENCH_TEST_WALL_CLOCK")

if _AT:
    from datetime import datetime

    import workbench.clock

    _FIXED = workbench.clock.require_aware(datetime.fromisoformat(_AT))

    def _now(self: workbench.clock.SystemClock) -> datetime:
        return _FIXED

    workbench.clock.SystemClock.now = _now  # type: ignore[method-assign]
