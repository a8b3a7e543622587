"""One look for every report (the daily cycle and the review): matplotlib charts and pandas
Styler tables.

Tables: no index column, money to the cent with thousands separators and the currency, weights
as percentages, quantities as whole shares, long text wrapped (never cut). Charts: one
matplotlib style, legends outside the data, thousands separators on money axes. Display only:
nothing here changes a value.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd

from workbench import fmt
from workbench.ticket_view import badge

# The matplotlib style every chart is drawn in (rcParams; applied per figure, never globally).
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#888888",
    "axes.grid": True,
    "axes.grid.axis": "both",
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.family": "DejaVu Sans",
    "axes.prop_cycle": (
        "cycler('color', ['#1f5f99', '#e07b00', '#1b7f3b', '#b3261e', '#6b4c9a', '#6b6b6b'])"
    ),
}
COLOURS = {"blue": "#1f5f99", "orange": "#e07b00", "green": "#1b7f3b", "red": "#b3261e"}
WARN = "#e07b00"
LIMIT = "#b3261e"

_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 12px; margin: 4px 0 12px 0"},
    {
        "selector": "th",
        "props": "text-align: left; padding: 4px 10px; border-bottom: 1px solid #999; "
        "white-space: nowrap; background: #f4f4f4",
    },
    {"selector": "td", "props": "padding: 3px 10px; border-bottom: 1px solid #eee"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold"},
]
_NUMBER = {
    "text-align": "right",
    "white-space": "nowrap",
    "font-variant-numeric": "tabular-nums",
}
_TEXT = {"text-align": "left", "white-space": "pre-line", "min-width": "14em", "max-width": "44em"}
_PLAIN = {"text-align": "left", "white-space": "nowrap"}


@contextmanager
def style() -> Iterator[None]:
    """Draw inside this block to get the reports' look (matplotlib rc_context)."""
    # A first import on a fresh machine logs "building the font cache": not the report's news.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt

    with plt.rc_context(cast(Any, STYLE)):
        yield


def figure(width: float = 8.0, height: float = 3.2) -> tuple[Any, Any]:
    """A new (figure, axes) in the report style; call inside :func:`style`."""
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def money_axis(ax: Any, axis: str = "y") -> None:
    """Thousands separators on a money axis."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def pct_axis(ax: Any, axis: str = "y", places: int = 1) -> None:
    """Fractions shown as percentages on an axis."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _: f"{v * 100:.{places}f}%")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


@dataclass(frozen=True)
class Chart:
    """A drawn figure and the words that describe it (the image's alternative text)."""

    figure: Any
    alt: str


@dataclass(frozen=True)
class Html:
    """A piece of report HTML, with display metadata (e.g. the page title) and, for what a
    text-only reader sees (a console, ``nbconvert --to markdown``), its plain-text twin."""

    body: str
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def card_text(title: str, rows: Iterable[tuple[str, str]]) -> str:
    """A header card in plain text: the title, then one ``Key: value`` line per row."""
    return "\n".join([title, *(f"{key}: {value}" for key, value in rows)])


# The trading states' colours in every report and panel.
STATE_COLOURS = {"ACTIVE": "#1b7f3b", "REDUCING": "#b36b00", "HALTED": "#b3261e"}
_CARD = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;line-height:1.5;"
    "border:1px solid #c8c8c8;border-radius:6px;padding:10px 14px;max-width:980px"
)
_TH = "text-align:left;padding:2px 14px 2px 0;color:#555;white-space:nowrap;vertical-align:top"
_TD = "text-align:left;padding:2px 0;vertical-align:top"

CardRow = tuple[str, str, str]  # the key, the value as HTML, the value as plain text


def header_card(
    title: str, rows: Sequence[CardRow], css_class: str, metadata: dict[str, Any] | None = None
) -> Html:
    """A report's header card: the title over one row per (key, HTML, text), as HTML with its
    plain-text twin (:func:`card_text`)."""
    body = "".join(
        f'<tr style="background:transparent"><th style="{_TH}">{key}</th>'
        f'<td style="{_TD}">{value}</td></tr>'
        for key, value, _ in rows
    )
    card = (
        f'<div class="{css_class}" style="{_CARD}"><div style="font-size:18px;'
        f'font-weight:700;margin-bottom:6px">{html.escape(title)}</div>'
        f'<table style="border-collapse:collapse">{body}</table></div>'
    )
    text = card_text(title, ((key, plain) for key, _, plain in rows))
    return Html(card, dict(metadata or {}), text)


def chain_row(ok: bool, head: str, head_hash: str, problem: str) -> CardRow:
    """The header card's "Audit chain" row: verified OK with its head (``head`` and its hash),
    or BROKEN with ``problem`` (where it breaks)."""
    if ok:
        return (
            "Audit chain",
            f"{badge('verified OK', '#1b7f3b')} {head} <code>{head_hash}</code>",
            f"verified OK, {head} {head_hash}",
        )
    return (
        "Audit chain",
        f"{badge('BROKEN', '#b3261e')} {html.escape(problem)}",
        f"BROKEN {problem}",
    )


def done(fig: Any, alt: str) -> Chart:
    """Close the figure in pyplot (it is displayed once, by the caller) and describe it."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Chart(fig, alt)


def show(items: Iterable[object]) -> None:
    """Display report parts: text (Markdown, or HTML when it starts with "<"), HTML with
    metadata, charts with their alternative text, tables."""
    from IPython.display import HTML, Markdown, display

    for item in items:
        if isinstance(item, Chart):
            display(item.figure, metadata={"image/png": {"alt": item.alt}})
        elif isinstance(item, Html):
            if item.text:
                bundle = {"text/html": item.body, "text/plain": item.text}
                display(bundle, raw=True, metadata=item.metadata)
            else:
                display(HTML(item.body), metadata=item.metadata)
        elif isinstance(item, str):
            display(HTML(item) if item.startswith("<") else Markdown(item))
        else:
            display(item)


def _cols(frame: pd.DataFrame, names: Iterable[str]) -> list[str]:
    return [c for c in names if c in frame.columns]


def _na(render: Callable[[Any], str]) -> Callable[[Any], str]:
    def safe(value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return fmt.DASH
        return render(value)

    return safe


def table(
    frame: pd.DataFrame,
    *,
    currency: str = "USD",
    money: Iterable[str] = (),
    prices: Iterable[str] = (),
    quantities: Iterable[str] = (),
    percents: Iterable[str] = (),
    counts: Iterable[str] = (),
    text: Iterable[str] = (),
    caption: str | None = None,
) -> Any:
    """``frame`` as a pandas Styler: formats by column kind, no index column, text wrapped."""
    money, prices, quantities = _cols(frame, money), _cols(frame, prices), _cols(frame, quantities)
    percents, counts, text = _cols(frame, percents), _cols(frame, counts), _cols(frame, text)
    formats: dict[str, Callable[[Any], str]] = {}
    formats.update({c: _na(lambda v: fmt.money(v, currency)) for c in money})
    formats.update({c: _na(fmt.price) for c in prices})
    formats.update({c: _na(fmt.quantity) for c in quantities})
    formats.update({c: _na(fmt.pct) for c in percents})
    formats.update({c: _na(lambda v: f"{int(v):,}") for c in counts})
    numbers = [*money, *prices, *quantities, *percents, *counts]
    plain = [c for c in frame.columns if c not in numbers and c not in text]
    styler = frame.style.hide(axis="index").format(formats, na_rep=fmt.DASH)
    styler = styler.set_table_styles(_TABLE_CSS)
    if numbers:
        styler = styler.set_properties(subset=numbers, **_NUMBER)
    if text:
        styler = styler.set_properties(subset=text, **_TEXT)
    if plain:
        styler = styler.set_properties(subset=plain, **_PLAIN)
    if caption:
        styler = styler.set_caption(caption)
    return styler
