"""How money, quantities, ratios and times read to a person: one place, used by every face.

Pure text functions, no I/O. Money is shown to the cent with thousands separators and its
currency ("19,967.05 USD"); ratios as percentages; times in New York (where the market keeps its
calendar) with the zone ("2026-11-18 10:30:00 EST"). Nothing here rounds a value that is stored:
only what is shown.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
DASH = "—"
CENT = Decimal("0.01")
SEVERITIES = ("BLOCKER", "MAJOR", "MINOR")
# The proposals view joins findings as "R11_TRADING_WINDOW (BLOCKER): message; R8_… (MINOR): …".
_FINDING = re.compile(r"(R\d{1,2})_[A-Z0-9_]+ \((BLOCKER|MAJOR|MINOR)\): ")


def _dec(value: Decimal | int | float | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def amount(value: Decimal | int | float | str | None, places: int = 2) -> str:
    """A number with thousands separators and ``places`` decimals (half-up): "19,967.05"; what
    rounds to zero reads "0.00", never "-0.00"."""
    if value is None:
        return DASH
    number = _dec(value)
    if not number.is_finite():
        return str(number)
    exponent = Decimal(1).scaleb(-places)
    rounded = number.quantize(exponent, rounding=ROUND_HALF_UP)
    return f"{rounded.copy_abs() if rounded.is_zero() else rounded:,.{places}f}"


def money(value: Decimal | int | float | str | None, currency: str, *, signed: bool = False) -> str:
    """Money to the cent with its currency: "19,967.05 USD" (``signed``: "+1.00 USD")."""
    if value is None:
        return DASH
    text = amount(value)
    if signed and _dec(value) > 0:
        text = "+" + text
    return f"{text} {currency}"


def price(value: Decimal | int | float | str | None) -> str:
    """A price: at least two decimals, up to four when the price has them ("645.25", "1.2345")."""
    if value is None:
        return DASH
    number = _dec(value)
    places = 4 if number.quantize(CENT) != number else 2
    text = amount(number, places)
    return text.rstrip("0") if places == 4 else text


def quantity(value: Decimal | int | float | str | None, *, signed: bool = False) -> str:
    """Shares: whole numbers without decimals ("1,250"), fractional ones trimmed ("0.5")."""
    if value is None:
        return DASH
    number = _dec(value)
    if number == number.to_integral_value():
        text = f"{int(number):,}"
    else:
        text = f"{number.normalize():,f}"
    return "+" + text if signed and number > 0 else text


def pct(value: Decimal | int | float | str | None, places: int = 2, *, signed: bool = False) -> str:
    """A fraction as a percentage: 0.0199 → "1.99%"."""
    if value is None:
        return DASH
    text = amount(_dec(value) * 100, places) + "%"
    return "+" + text if signed and _dec(value) > 0 else text


def ny(when: datetime | None, *, seconds: bool = True) -> str:
    """An instant in New York time with the zone: "2026-11-18 10:30:00 EST"."""
    if when is None:
        return DASH
    local = when.astimezone(NEW_YORK)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def ny_day(when: datetime) -> str:
    """The New York calendar day with its weekday: "Wed 2026-11-18"."""
    return when.astimezone(NEW_YORK).strftime("%a %Y-%m-%d")


def duration(seconds: float | None) -> str:
    """A duration in the two largest units: "4 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"."""
    if seconds is None:
        return DASH
    sign = "-" if seconds < 0 else ""
    left = round(abs(seconds))
    units = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if left >= size or (name == "s" and not parts):
            count, left = divmod(left, size)
            parts.append(f"{count} {name}")
        if len(parts) == 2:
            break
    return sign + " ".join(parts)


def ago(seconds: float | None) -> str:
    """How long ago: "3 min 5 s ago" ("in 4 s" for a time in the future)."""
    if seconds is None:
        return DASH
    return f"in {duration(-seconds)}" if seconds < 0 else f"{duration(seconds)} ago"


def short_hash(digest: str | None, n: int = 12) -> str:
    """The first ``n`` hex digits of a hash ("ff4149b09f83…")."""
    if not digest:
        return DASH
    return digest[:n] + "…" if len(digest) > n else digest


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` wrapped to ``width`` columns (continuation lines indented); never truncated."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=True,
        break_on_hyphens=False,
    ) or [indent]


def columns(
    rows: Iterable[tuple[str, ...]], *, gap: str = "  ", right: Iterable[int] = ()
) -> list[str]:
    """Rows of text cells aligned in columns (each as wide as its widest cell); the columns
    numbered in ``right`` (numbers) are right-aligned."""
    table = [tuple(r) for r in rows]
    if not table:
        return []
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    flush = set(right)
    return [
        gap.join(
            c.rjust(w) if i in flush else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in table
    ]


def findings(text: str) -> list[tuple[str, str, str]]:
    """(rule, severity, message) from the proposals view's violations text, blockers first.

    Text that is not a list of findings (a simulation fault) is one BLOCKER with rule "FAULT".
    """
    if not text:
        return []
    marks = list(_FINDING.finditer(text))
    if not marks or marks[0].start() != 0:
        return [("FAULT", "BLOCKER", text)]
    found = []
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        end = after.start() - 2 if after is not None else len(text)  # drop the "; " joiner
        found.append((mark.group(1), mark.group(2), text[mark.end() : end]))
    return sorted(found, key=lambda f: SEVERITIES.index(f[1]))
