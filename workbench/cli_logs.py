"""Which library log lines reach the terminal of a ``workbench`` command.

ib_async logs what it sees (a refused connection, a lost socket, IB's error codes) while the
workbench turns the same fault into its own typed error and one line of its own. So its lines
are held while a command runs: an expected failure drops them (the command's one line says it
all), and otherwise they are written when the command ends, or from the moment a long-running
command lets them through (``workbench mcp`` once its broker is open), named as ib_async's. IB's
order answers that the workbench reports itself are never written twice. Public ``logging`` API
only: a handler and a filter on the ``ib_async`` logger.
"""

from __future__ import annotations

import logging
import re
import sys

HELD_AT_MOST = 1_000  # lines held during one command; later ones are dropped until let through

# IB's answers about an order that ib_async logs as errors while the workbench reports them itself,
# in its words (a cancel confirmed, IB's reject, a TIF preset note).
_SAID_BY_THE_WORKBENCH = re.compile(
    r"^(?:(?:Error|Warning) (?:201|202|10349), |Canceled order: |IBKR API validation warning: )"
)


def _not_said_twice(record: logging.LogRecord) -> bool:
    return _SAID_BY_THE_WORKBENCH.match(record.getMessage()) is None


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line comes (as logging's last resort does)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class LibraryLines(logging.Handler):
    """ib_async's lines of one command: held, then dropped or written (see the module)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(_not_said_twice)
        self._out = _Stderr()
        self._out.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        self._held: list[logging.LogRecord] = []
        self._through = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._through:
            self._out.handle(record)
        elif len(self._held) < HELD_AT_MOST:
            self._held.append(record)

    def hold(self) -> LibraryLines:
        """Start a command: hold its lines (nothing held from an earlier one)."""
        self.acquire()
        try:
            self._held.clear()
            self._through = False
        finally:
            self.release()
        return self

    def let_through(self) -> None:
        """Write what is held, and every later line as it comes."""
        self.acquire()
        try:
            self._through = True
            for record in self._held:
                self._out.handle(record)
            self._held.clear()
        finally:
            self.release()

    def drop_held(self) -> None:
        """Forget what is held: an expected failure said it in one line of its own."""
        self.acquire()
        try:
            self._held.clear()
        finally:
            self.release()


def library_lines() -> LibraryLines:
    """The ``ib_async`` logger's terminal handler (one per process, added on first use); its
    lines go nowhere else."""
    logger = logging.getLogger("ib_async")
    for existing in logger.handlers:
        if isinstance(existing, LibraryLines):
            return existing
    handler = LibraryLines()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return handler
