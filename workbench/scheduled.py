"""The scheduled run behind ``workbench daily``: every argument checked before a kernel starts,
then the daily-cycle notebook executed with papermill, never over a good report.

:func:`check_arguments` resolves and checks everything — the day (a replay is a past session),
the home, the policies, the proposer and its signals, the universe, the bars — and writes
nothing: a bad argument is a :class:`ConfigError` (exit 2) with no file, no event and no kernel.
Relative paths are resolved against the caller's folder, not the kernel's.

:func:`run_notebook` executes into a temporary file beside the report and renames it only at the
end: a success replaces the day's report; a failed run is kept beside it as
``daily_cycle.failed.ipynb`` (and ``.html``); a run that could not be written at all (a full disk)
leaves nothing half-written behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from workbench import privacy
from workbench.broker_policy import connection_settings
from workbench.daily import NOTEBOOK_NAME, TITLE_KEY, Proposer, parse_as_of, parse_universe
from workbench.errors import ConfigError, MarketDataError, WorkbenchError
from workbench.home import check_creatable, resolve_policy_dir
from workbench.marketdata import CsvBars, universe
from workbench.policy import bars_file, load_policy, load_strategy_params
from workbench.proposers import ProposalError, load_targets, read_signals
from workbench.replay import DayPlan, plan_day
from workbench.sessions import xnys

FAILED_NAME = "daily_cycle.failed.ipynb"


@dataclass(frozen=True)
class DailyRun:
    """A checked ``workbench daily``: where and when it runs and every input, resolved."""

    plan: DayPlan
    policy_dir: Path
    broker: str
    proposer: Proposer
    signals_path: Path | None
    universe: tuple[str, ...]
    bars_path: Path | None  # --bars as given; None: the policy's market_data.bars (or synthetic)
    host: str | None = None  # the IBKR connection over policies/broker.yaml (None: the file's)
    port: int | None = None
    client_id: int | None = None


def _resolve(text: str | None, cwd: Path) -> Path | None:
    if not text:
        return None
    path = Path(text).expanduser()
    return (path if path.is_absolute() else cwd / path).resolve()


def check_arguments(
    *,
    as_of: str | None,
    home: str | None,
    policy_dir: str | None = None,
    broker: str = "paper",
    proposer: str = "rebalance",
    signals: str | None = None,
    universe_text: str = "",
    bars: str | None = None,
    cwd: Path | None = None,
    today: date | None = None,
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
) -> DailyRun:
    """Every argument of a daily run, resolved and checked; nothing is written (and, for IBKR,
    nothing connects: a live port or account is refused here)."""
    cwd = cwd or Path.cwd()
    plan = plan_day(parse_as_of(as_of), _resolve(home, cwd), today=today)
    for folder in {plan.home, plan.run_home}:
        check_creatable(folder)
    policies = _resolve(policy_dir, cwd) or resolve_policy_dir(None)
    if not policies.is_dir():
        raise ConfigError(f"no policies folder at {policies}")
    load_policy(policies)
    params = load_strategy_params(policies)
    symbols = parse_universe(universe_text)
    connection = (host, port, client_id)
    if broker == "ibkr":
        _check_ibkr(plan, policies, bars, connection)
        chosen = _proposer(proposer)
        _traded(chosen, _resolve(signals, cwd), policies, symbols)  # IB knows which symbols
        return DailyRun(plan, policies, broker, chosen, _resolve(signals, cwd), symbols, None,
                        host, port, client_id)  # fmt: skip
    if broker != "paper":
        raise ConfigError(f"unknown broker {broker!r}: choose 'paper' or 'ibkr'")
    if any(v is not None for v in connection):
        raise ConfigError("--host, --port and --client-id are for --broker ibkr")
    bars_path = _resolve(bars, cwd)
    known = _bar_symbols(bars_path or bars_file(params, policies))
    chosen = _proposer(proposer)
    traded = _traded(chosen, _resolve(signals, cwd), policies, symbols)
    unknown = sorted((set(symbols) | set(traded)) - known)
    if unknown:
        listed = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ConfigError(f"unknown symbols (no bars for them): {listed}")
    _check_bars_cover(bars_path or bars_file(params, policies), plan, traded)
    return DailyRun(plan, policies, broker, chosen, _resolve(signals, cwd), symbols, bars_path)


def _check_ibkr(
    plan: DayPlan, policies: Path, bars: str | None, connection: tuple[str | None, int | None,
                                                                         int | None]
) -> None:  # fmt: skip
    """An IBKR run is today's, live, with IB's own bars, on a paper port and account."""
    if plan.replay:
        raise ConfigError(
            f"--as-of {plan.day}: a replay runs in a sandbox on the paper broker only"
        )
    if bars:
        raise ConfigError("--bars is for the paper broker: IBKR's daily bars come from IB")
    host, port, client_id = connection
    connection_settings(policies, host=host, port=port, client_id=client_id)


def _proposer(name: str) -> Proposer:
    if name == "rebalance":
        return "rebalance"
    if name == "signals":
        return "signals"
    raise ConfigError(f"unknown proposer {name!r}: choose 'rebalance' or 'signals'")


def _traded(
    proposer: Proposer, signals: Path | None, policies: Path, symbols: tuple[str, ...]
) -> tuple[str, ...]:
    """The symbols the run will trade (and so needs bars for)."""
    if proposer == "signals":
        if signals is None:
            raise ConfigError("--proposer signals needs --signals CSV")
        try:
            tickers = tuple(s.ticker for s in read_signals(signals))
        except ProposalError as exc:
            text = str(exc)
            raise ConfigError(text if str(signals) in text else f"{signals}: {text}") from None
        return tuple(t for t in tickers if t in symbols) if symbols else tickers
    if signals is not None:
        raise ConfigError("--signals is read only with --proposer signals")
    return symbols or tuple(load_targets(policies).weights)


def _bar_symbols(bars: Path | None) -> frozenset[str]:
    return frozenset(universe()) if bars is None else CsvBars(bars).symbols()


def _check_bars_cover(bars: Path | None, plan: DayPlan, traded: tuple[str, ...]) -> None:
    """The user's bars hold every traded symbol's bar for the session the run marks at."""
    if bars is None:
        return
    source, cal = CsvBars(bars), xnys()
    now = plan.clock().now()
    session = cal.session_at(now) or cal.last_closed(now)
    for symbol in traded:
        try:
            source.bar(symbol, session)
        except MarketDataError as exc:
            raise ConfigError(f"{bars}: {exc}") from None


# -- running the notebook ------------------------------------------------------------------------


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (``$WORKBENCH_NOTEBOOKS`` overrides it)."""
    override = os.environ.get("WORKBENCH_NOTEBOOKS")
    folder = Path(override) if override else Path(__file__).resolve().parents[1] / "notebooks"
    if not (folder / NOTEBOOK_NAME).is_file():
        raise ConfigError(f"{NOTEBOOK_NAME} not found in {folder}")
    return folder


@dataclass(frozen=True)
class NotebookRun:
    """Where a scheduled run left its report, and whether it succeeded (a failed run's report
    is ``daily_cycle.failed.ipynb``, beside the day's good one, which it never replaces)."""

    notebook: Path
    html: Path | None
    ok: bool
    error: str | None = None


def parameters(run: DailyRun) -> dict[str, str | int | None]:
    """The notebook's papermill parameters: absolute paths, the main home (the notebook finds
    a replay's sandbox from the day), the IBKR connection (None: policies/broker.yaml)."""
    return {
        "host": run.host,
        "port": run.port,
        "client_id": run.client_id,
        "as_of": run.plan.day.isoformat(),
        "broker": run.broker,
        "home": str(run.plan.home),
        "policy_dir": str(run.policy_dir),
        "proposer": run.proposer,
        "signals_path": str(run.signals_path) if run.signals_path else "",
        "universe": ",".join(run.universe),
        "bars_path": str(run.bars_path) if run.bars_path else "",
    }


def run_notebook(run: DailyRun, *, progress: bool = False) -> NotebookRun:
    """Execute the daily notebook for a checked run; see the module doc for what is kept.
    ``progress`` shows a bar of the cells run (on stderr)."""
    import papermill as pm

    out_dir = run.plan.report_dir
    for home in (run.plan.home, run.plan.run_home):  # a home made here is private (0700)
        privacy.make_home(home)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".running-{os.getpid()}-{NOTEBOOK_NAME}"
    error = None
    try:
        pm.execute_notebook(
            str(notebooks_dir() / NOTEBOOK_NAME),
            str(partial),
            parameters=parameters(run),
            kernel_name="python3",
            cwd=str(out_dir),
            progress_bar=progress,
            # The kernel's own log (start-up notices; "KeyboardInterrupt caught" when
            # jupyter_client interrupts it on shutdown) is not the report's business: a failing
            # cell is in the notebook and fails the run.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except (OSError, KeyboardInterrupt):
        partial.unlink(missing_ok=True)  # half-written: no evidence worth keeping
        raise
    except Exception as exc:  # the kernel died or timed out: keep what was written, if any
        error = f"{type(exc).__name__}: {exc}"
        if not partial.is_file():
            raise WorkbenchError(
                f"the daily run failed before writing its report: {error}"
            ) from exc
    target = out_dir / (NOTEBOOK_NAME if error is None else FAILED_NAME)
    try:
        html = write_html(partial, target.with_suffix(".html"), title=f"Daily cycle {run.plan.day}")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return NotebookRun(target, html, error is None, error)


def write_html(notebook: Path, target: Path | None = None, *, title: str = "") -> Path:
    """An HTML copy of an executed notebook without its code cells (beside it, or ``target``),
    titled by the title its report cell recorded (else ``title``), written whole or not at all."""
    import nbformat
    from nbconvert import HTMLExporter

    target = target or notebook.with_suffix(".html")
    nb = nbformat.read(notebook, as_version=4)
    recorded = [
        str(o["metadata"][TITLE_KEY])
        for c in nb.cells
        for o in c.get("outputs", [])
        if TITLE_KEY in o.get("metadata", {})
    ]
    if recorded or title:
        nb.metadata["title"] = recorded[0] if recorded else title
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    body = _alt_texts(nb, body)
    partial = target.with_name(f".{target.name}.writing-{os.getpid()}")
    try:
        partial.write_text(body, encoding="utf-8")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


_NO_ALT = 'alt="No description has been provided for this image"'


def _alt_texts(nb: object, body: str) -> str:
    """Give each chart its recorded alternative text (``image/png`` ``alt`` metadata, which the
    lab template leaves out), in order; images without one keep nbconvert's placeholder."""
    import html

    alts = [
        out.get("metadata", {}).get("image/png", {}).get("alt")
        for cell in getattr(nb, "cells", [])
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    pieces = body.split(_NO_ALT)
    if len(pieces) != len(alts) + 1:  # not one placeholder per chart: leave the page as it is
        return body
    out = [pieces[0]]
    for alt, rest in zip(alts, pieces[1:], strict=True):
        out.append(f'alt="{html.escape(alt, quote=True)}"' if alt else _NO_ALT)
        out.append(rest)
    return "".join(out)
