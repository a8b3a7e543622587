"""The ``workbench`` command. It holds no logic: every action is one library call.

Exit codes: 0 done; 1 refused (a credential, token, trading state or the gate said no; a report
notebook failed) or a fault (a full disk, a corrupt database); 2 bad input or configuration
(nothing was done); 130 interrupted (Ctrl-C). Every expected failure is one line on stderr,
never a traceback.

Every command that works on a home first prints it. Only ``daily`` and ``init`` create a home;
every other command refuses a missing one (exit 2), naming the path it looked at. An argument
mistake is caught by argparse (types, choices) before anything is opened; library log lines reach
the terminal only through ``cli_logs``.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from workbench import __version__, cli_format, fmt, privacy, trading_state
from workbench.audit import AuditLog
from workbench.authority import NAME_RE, Authority, Credential
from workbench.cli_logs import library_lines
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import (
    DB_NAME,
    HOME_ENV,
    POLICY_ENV,
    check_creatable,
    create_home,
    require_home,
    require_writable,
    resolve_home,
    resolve_policy_dir,
)
from workbench.lifecycle import OrderState
from workbench.models import TradingState
from workbench.orders import PROPOSAL_ID_RE

if TYPE_CHECKING:
    from workbench.workbench import Workbench

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's 128 + SIGINT


class _Parser(argparse.ArgumentParser):
    """argparse with a wrong, missing or absurd argument said in one line (exit 2), naming the
    command's --help instead of printing its whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _fails_cleanly(handler: Handler) -> Handler:
    """Marks a handler whose faults :func:`run_command` maps to one line and an exit code (the
    mapping lives there, once, for every command)."""
    return handler


def _open_log(args: argparse.Namespace, *, read_only: bool = False) -> AuditLog:
    return AuditLog(resolve_home(args.home) / DB_NAME, read_only=read_only)


def _can_ask_secret(from_stdin: bool) -> None:
    """Refuse (exit 2, one line) when a secret can be neither piped in nor typed at a terminal:
    checked before anything is opened, shown or read, never an echoing fallback."""
    if not from_stdin and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError(
            "no terminal to ask for a passphrase: pass --passphrase-stdin and pipe it in"
        )


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    """The IBKR connection the command line gives (None: as policies/broker.yaml says)."""
    return {"host": args.host, "port": args.port, "client_id": args.client_id}


def _secret(prompt: str, from_stdin: bool) -> str:
    """One secret: a line of stdin, or typed at a prompt that does not echo (a terminal is
    required: without one, say how to pipe it instead of falling back to an echoing read)."""
    _can_ask_secret(from_stdin)
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    return getpass.getpass(prompt)


def _credential(name: str, from_stdin: bool, prompt: str | None = None) -> Credential:
    """A credential as typed (the library verifies it; the CLI only collects it)."""
    return Credential(name, _secret(prompt or f"Passphrase for {name}: ", from_stdin))


def _new_passphrase(name: str, from_stdin: bool) -> Credential:
    """A new passphrase for ``name``: typed twice at a prompt, or one line of stdin."""
    passphrase = _secret(f"New passphrase for {name}: ", from_stdin)
    if not from_stdin and getpass.getpass("Repeat the passphrase: ") != passphrase:
        raise ValueError("the two passphrases differ")
    return Credential(name, passphrase)


def _os_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


# -- the audit log -------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """Create a workbench home (the folder and its database) if there is none."""
    home = resolve_home(args.home)
    existed = (home / DB_NAME).is_file()
    create_home(home)
    print("already a workbench home: nothing changed" if existed else "created")
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the hash chain; exit 1 naming the first bad seq when it does not hold."""
    with _open_log(args, read_only=True) as log:
        result = log.verify()
    if result.ok:
        print(f"audit chain OK: {result.checked} events, head {result.head_seq} {result.head_hash}")
        return EXIT_OK
    print(
        f"audit chain BROKEN at seq {result.first_bad_seq}: {result.reason}"
        f" ({result.checked} events verified before it)",
        file=sys.stderr,
    )
    return EXIT_REFUSED


def cmd_audit_tail(args: argparse.Namespace) -> int:
    """Print the newest events, oldest first."""
    with _open_log(args, read_only=True) as log:
        events = log.tail(args.n)
    for e in events:
        who = f" {e.proposal_id}" if e.proposal_id else ""
        print(f"{e.seq:>8} {e.ts} {e.type:<26} {e.actor}{who} {e.payload_json}")
    return EXIT_OK


# -- status and trading state --------------------------------------------------------------------


def _whole(what: str, low: int, high: int, outside: str) -> Callable[[str], int]:
    """An argument type: a whole number from ``low`` to ``high``; anything else is reported by
    argparse, as "'x' is not a {what}" or "{n} is not {outside}"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not {outside}")
        return value

    return parse


_count = _whole("whole number", 1, 1_000_000, "between 1 and 1,000,000")
_port = _whole("port number", 1, 65_535, "a port (1 to 65535)")


def _proposal_id(text: str) -> str:
    """A proposal id argument (letters, digits, _ and -, up to 64), checked before anything is
    opened or asked."""
    if PROPOSAL_ID_RE.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r:.40} is not a proposal id (letters, digits, _ and -; 1 to 64)"
        )
    return text


def _approver(text: str) -> str:
    """An approver name argument, in the form every approver name has (whether it is enrolled
    is for the library to say, with the passphrase)."""
    if NAME_RE.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r:.40} is not an approver name (a lowercase letter, then 1 to 31 of"
            " a-z 0-9 _ . -)"
        )
    return text


def _state(text: str) -> str:
    """A proposal state argument, in any case (argparse lists the states when it is none)."""
    return text.upper()


def _path(text: str | None) -> Path | None:
    """A path argument resolved against the caller's folder (None when not given)."""
    return Path(text).expanduser().resolve() if text else None


def _open(args: argparse.Namespace) -> Workbench:
    """The facade on the command's home, broker, policies and bars (``--bars`` or the policy's);
    for IBKR, the connection in policies/broker.yaml with --host, --port and --client-id over it."""
    from workbench.workbench import Workbench

    return Workbench.open(
        args.home,
        args.broker,
        policy_dir=args.policy_dir,
        bars_path=_path(args.bars),
        **_connection(args),
    )


@_fails_cleanly
def cmd_status(args: argparse.Namespace) -> int:
    """Print the home, the broker, the trading state, the chain head, proposals by state, the
    connection (since when, the last reconciliation) and the orders of unknown outcome."""

    with _open(args) as wb:
        status = wb.status()
    print(f"broker: {status['broker']} (account {status['account']})")
    print(
        f"trading state: {status['trading_state']} by {status['trading_state_by']}:"
        f" {status['trading_state_reason']}"
    )
    print(f"audit log: {status['audit_head_seq']} events, head {status['audit_head_hash']}")
    counts = status["proposals_by_state"] or {}
    print("proposals: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    print(cli_format.link_text(status["link"], status["unknown_orders"]))
    return EXIT_OK


def _restrict(args: argparse.Namespace, state: TradingState) -> int:
    with _open_log(args) as log:
        change = trading_state.set_state(log, state, reason=args.reason, by=args.by or _os_user())
    print(f"trading state: {change.state.value} by {change.by}: {change.reason}")
    return EXIT_OK


@_fails_cleanly
def cmd_halt(args: argparse.Namespace) -> int:
    """Halt all trading (HALTED: every order is refused, cancels still go) until resumed."""
    return _restrict(args, TradingState.HALTED)


@_fails_cleanly
def cmd_reduce(args: argparse.Namespace) -> int:
    """Allow only risk-reducing orders (REDUCING) until resumed."""
    return _restrict(args, TradingState.REDUCING)


@_fails_cleanly
def cmd_resume(args: argparse.Namespace) -> int:
    """Return trading to ACTIVE: a registered approver, with their passphrase, and a reason."""

    credential = _credential(args.approver, args.passphrase_stdin)
    with _open(args) as wb:
        wb.resume(args.reason, credential)
        state = wb.trading_state()
    print(f"trading state: {state.value} by {args.approver}: {args.reason}")
    return EXIT_OK


# -- approvers and the order path ----------------------------------------------------------------


@_fails_cleanly
def cmd_approver_add(args: argparse.Namespace) -> int:
    """Enrol an approver: the first of an empty home bootstraps it; every later one, and every
    --replace, needs a current approver's passphrase (--by), or for --replace the old one."""
    if len(args.by) > (2 if args.replace else 1):
        raise ValueError("--by names one current approver (two for --replace)")
    new = _new_passphrase(args.name, args.passphrase_stdin)
    consent = [_credential(name, args.passphrase_stdin) for name in args.by]
    with Authority.open(resolve_home(args.home)) as authority:
        if args.replace:
            old = consent or [_credential(args.name, args.passphrase_stdin, "Current passphrase: ")]
            authority.replace(new, by=old)
        elif consent:
            authority.enrol(new, by=consent[0])
        else:
            authority.bootstrap(new)
    print(f"approver {args.name} {'replaced' if args.replace else 'added'}")
    return EXIT_OK


@_fails_cleanly
def cmd_approver_remove(args: argparse.Namespace) -> int:
    """Remove an approver with a current approver's passphrase (never the last one)."""
    consent = _credential(args.by, args.passphrase_stdin)
    with Authority.open(resolve_home(args.home)) as authority:
        authority.remove(args.name, by=consent)
    print(f"approver {args.name} removed")
    return EXIT_OK


@_fails_cleanly
def cmd_approver_list(args: argparse.Namespace) -> int:
    """List the approvers: who enrolled whom and when, and whether each record verifies."""
    with Authority.open(resolve_home(args.home)) as authority:
        roster = authority.roster()
    if not roster:
        print("no approvers: the first `workbench approver add NAME` bootstraps this home")
    for a in roster:
        by = "bootstrap (first approver)" if a.bootstrap else "by " + ", ".join(a.enrolled_by)
        if a.replaced_at is not None:
            by += f"; passphrase replaced {a.replaced_at} by {', '.join(a.replaced_by)}"
        mark = "" if a.verified else "  RECORD DOES NOT VERIFY: not usable"
        print(f"{a.name:<32} enrolled {a.enrolled_at} {by}{mark}")
    return EXIT_OK


@_fails_cleanly
def cmd_proposals(args: argparse.Namespace) -> int:
    """List proposals with their decision, blocking reasons and state (fits 100 columns)."""
    states = [OrderState(args.state)] if args.state else None
    with _open(args) as wb:
        frame = wb.proposals(states=states)
        currency = wb.portfolio(record=False).currency
    if args.wide:
        print(cli_format.proposals_wide(frame))
    else:
        print(cli_format.proposals_text(frame, currency, width=cli_format.terminal_width()))
    return EXIT_OK


@_fails_cleanly
def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a proposal with your passphrase; prints the one-time token once."""
    from workbench.ticket_source import ticket_for
    from workbench.ticket_view import to_text

    _can_ask_secret(args.passphrase_stdin)  # no way to ask: refused before the ticket
    with _open(args) as wb:
        # The order as the approver must see it, before anything is asked of them.
        print(to_text(ticket_for(wb, args.proposal_id), cli_format.terminal_width()), flush=True)
        credential = _credential(args.approver, args.passphrase_stdin)
        second = None
        if args.second_approver:
            second = _credential(args.second_approver, args.passphrase_stdin)
        grant = wb.approve(args.proposal_id, credential, override_reason=args.reason, second=second)
    print(f"approved {grant.proposal_id} by {', '.join(grant.approvers)}")
    print(f"token (shown once, expires {fmt.ny(grant.expires_at)}):")
    print(grant.token)
    return EXIT_OK


@_fails_cleanly
def cmd_reject(args: argparse.Namespace) -> int:
    """Reject a proposal with your passphrase and a reason."""

    credential = _credential(args.approver, args.passphrase_stdin)
    with _open(args) as wb:
        wb.reject(args.proposal_id, credential, args.reason)
    print(f"rejected {args.proposal_id}")
    return EXIT_OK


@_fails_cleanly
def cmd_submit(args: argparse.Namespace) -> int:
    """Send an approved proposal with its one-time token (``--token -`` reads it from stdin)."""
    from workbench.ticket_source import ticket_for

    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    with _open(args) as wb:
        state = wb.submit(args.proposal_id, token)
        done = ticket_for(wb, args.proposal_id).execution
        print(cli_format.submit_text(args.proposal_id, wb.label, state.value, done))
    return EXIT_OK


@_fails_cleanly
def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a working order, or withdraw a proposal not yet sent (allowed while HALTED)."""

    with _open(args) as wb:
        state = wb.cancel(args.proposal_id, actor=args.by or _os_user())
    print(f"{args.proposal_id}: {state.value}")
    return EXIT_OK


@_fails_cleanly
def cmd_reconcile(args: argparse.Namespace) -> int:
    """List orders of unknown outcome (a token spent, no broker acknowledgement): each is
    recorded UNKNOWN, never re-sent, and blocks its symbol until an approver resolves it."""

    with _open(args) as wb:
        found = wb.reconcile()
        broker = wb.label
    if not found:
        print("reconciled: the broker holds the order of every spent token")
        return EXIT_OK
    print(cli_format.orphans_text(found, broker, width=cli_format.terminal_width()))
    return EXIT_REFUSED


@_fails_cleanly
def cmd_reconcile_resolve(args: argparse.Namespace) -> int:
    """Resolve an order of unknown outcome, as an approver, after looking at the broker:
    --not-sent (it holds no order with the proposal's orderRef) or --sent-as BROKER_ORDER_ID
    (it holds that order, with that orderRef). Checked against the broker; recorded."""
    from workbench.events import Resolution

    outcome = Resolution.NOT_SENT if args.not_sent else Resolution.SENT
    credential = _credential(args.approver, args.passphrase_stdin)
    with _open(args) as wb:
        state = wb.resolve(
            args.proposal_id, credential, outcome, broker_order_id=args.sent_as, reason=args.reason
        )
    print(f"{args.proposal_id}: {state.value} (resolved by {args.approver}: {outcome.value})")
    return EXIT_OK


# -- the home's health --------------------------------------------------------------------------


@_fails_cleanly
def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the home: private modes, the audit chain, that every event validates, approver
    records, and releases of the kill switch that do not verify."""
    home = resolve_home(args.home)
    if not home.is_dir():
        raise ConfigError(f"no workbench home at {home}")
    for change in privacy.fix(home) if args.fix_permissions else []:
        print(f"fixed: {change}")
    problems = [f"not private: {p}" for p in privacy.problems(home)]
    with Authority.open(home) as authority:
        chain = authority.log.verify()
        if not chain.ok:
            problems.append(f"audit chain broken at seq {chain.first_bad_seq}: {chain.reason}")
        problems += _unreadable_events(authority.log)
        problems += [
            f"approver {a.name}: record does not verify"
            for a in authority.roster()
            if not a.verified
        ]
        state = trading_state.read_state(authority.log, authority.key)
        problems += [f"release at seq {seq} does not verify: ignored" for seq in state.refused]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        modes = any(p.startswith("not private") for p in problems)
        hint = " (modes: workbench doctor --fix-permissions)" if modes else ""
        print(f"doctor: {len(problems)} problem(s){hint}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"doctor: {home} is private, its chain holds ({chain.checked} events), records verify")
    return EXIT_OK


def _unreadable_events(log: AuditLog, shown: int = 5) -> list[str]:
    """The events whose payload does not validate as its type's model (the first few)."""
    found = []
    for event in log.events():
        try:
            event.data  # noqa: B018  (parsing is the check)
        except WorkbenchError as exc:
            found.append(str(exc))
    more = [f"... and {len(found) - shown} more unreadable events"] if len(found) > shown else []
    return found[:shown] + more


# -- the daily cycle -----------------------------------------------------------------------------


@_fails_cleanly
def cmd_daily(args: argparse.Namespace) -> int:
    """Run the daily-cycle notebook with papermill into <home>/<as_of>/ (+ HTML without code);
    --as-of a past session replays it in its sandbox <home>/replay/<as_of>/."""
    from workbench.scheduled import check_arguments, run_notebook

    run = check_arguments(  # every argument, before a kernel starts; writes nothing
        as_of=args.as_of,
        home=args.home,
        policy_dir=args.policy_dir,
        broker=args.broker,
        proposer=args.proposer,
        signals=args.signals,
        universe_text=args.universe,
        bars=args.bars,
        **_connection(args),
    )
    if run.plan.replay:
        print(f"replay home: {run.plan.run_home} (paper broker, market time {run.plan.day} 10:30)")
    result = run_notebook(run, progress=sys.stderr.isatty())
    print(f"report: {result.notebook}")
    if result.html:
        print(f"html:   {result.html}")
    if not result.ok:
        print(
            f"FAILED: {result.error} (the failed run is {result.notebook.name};"
            " an earlier good report beside it is untouched)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return EXIT_OK


# -- the loopback test gateway -------------------------------------------------------------------


@_fails_cleanly
def cmd_gateway(args: argparse.Namespace) -> int:
    """Run the loopback TEST gateway (TWS protocol, synthetic prices, not IBKR) until Ctrl-C."""
    from workbench.testing.demo import run

    return run(port=args.port, account=args.account, chaos=args.chaos, out=_say,
               record=_path(args.record), upstream=args.upstream,
               replay=_path(args.replay))  # fmt: skip


def _say(text: str) -> None:
    print(text, flush=True)


# -- the MCP server ------------------------------------------------------------------------------


@_fails_cleanly
def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the MCP tools (read and propose only) on stdio, or with --http on 127.0.0.1."""
    from contextlib import AbstractContextManager, nullcontext

    import anyio

    from workbench import mcp_http
    from workbench.mcp_policy import load_mcp_policy
    from workbench.mcp_server import build_server
    from workbench.proposer import Proposer

    if not args.http and (args.bind or args.http_port or args.allow_remote or args.allowed_host):
        raise ConfigError("--bind, --http-port, --allow-remote and --allowed-host need --http")
    host = args.bind or "127.0.0.1"
    port = args.http_port if args.http_port is not None else mcp_http.DEFAULT_PORT
    if args.http:
        mcp_http.check_bind(host, allow_remote=args.allow_remote)
    folder = resolve_policy_dir(args.policy_dir)
    limits = load_mcp_policy(folder)
    home = resolve_home(args.home)
    verifier = mcp_http.HomeTokenVerifier(home) if args.http else None
    # A port in use is refused before the home or the broker is opened.
    sockets_cm: AbstractContextManager[list[Any]] = (
        mcp_http.listening(host, port) if args.http else nullcontext([])
    )
    with (
        sockets_cm as sockets,
        Proposer.open(
            home, args.broker, policy_dir=folder, bars_path=_path(args.bars), **_connection(args)
        ) as proposer,
    ):
        library_lines().let_through()  # open: from now on its lines are news, said as they come
        server = build_server(
            proposer, limits, transport="http" if args.http else "stdio",
            auth=mcp_http.auth_settings() if args.http else None, token_verifier=verifier,
        )  # fmt: skip
        where = mcp_http.url(host, port) if args.http else "stdio"
        print(f"workbench MCP server (read and propose only) on {where}: {proposer.label}",
              file=sys.stderr, flush=True)  # fmt: skip
        try:
            if not args.http:
                server.run("stdio")
                return EXIT_OK
            body = limits.payload.max_argument_chars + 16_384  # room for the JSON-RPC envelope
            app = mcp_http.http_app(
                server, host=host, port=port, extra_hosts=tuple(args.allowed_host), max_body=body
            )
            anyio.run(lambda: mcp_http.serve(app, sockets, host=host, port=port))
        except KeyboardInterrupt:
            pass
    return EXIT_OK


@_fails_cleanly
def cmd_mcp_token(args: argparse.Namespace) -> int:
    """Issue the bearer token of the MCP server's HTTP mode; it is printed once, never again."""
    from workbench.mcp_http import issue_token, token_path

    home = resolve_home(args.home)
    token = issue_token(home, rotate=args.rotate)
    print(token)
    print(f"(shown once; only its digest is kept in {token_path(home)}. Give it to your MCP host"
          " as the header  Authorization: Bearer <token>)", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _add_mcp(
    sub: argparse._SubParsersAction[_Parser],
    home: _Parser,
    full: _Parser,
) -> None:
    """``mcp`` serves (its broker opened read-and-propose only); ``mcp token`` issues the HTTP
    mode's token."""
    mcp = _add(sub, "mcp", cmd_mcp, full)
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--bind", default=None, metavar="ADDRESS", help="HTTP address (127.0.0.1)")
    mcp.add_argument("--http-port", type=_port, default=None, metavar="N", help="HTTP port (8765)")
    mcp.add_argument(
        "--allow-remote", action="store_true",
        help="allow an address other than loopback (the token is then the only guard)",
    )  # fmt: skip
    mcp.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="another Host name clients use to reach a remote bind (DNS-rebinding check)",
    )  # fmt: skip
    actions = mcp.add_subparsers(dest="mcp_command", required=False, metavar="ACTION")
    nested_home, _ = _common(nested=True)  # `mcp --home H token` keeps H
    token = _add(actions, "token", cmd_mcp_token, nested_home)
    token.add_argument("--rotate", action="store_true", help="replace an existing token")


# -- the parser ----------------------------------------------------------------------------------


def _common(*, nested: bool = False) -> tuple[_Parser, _Parser]:
    """The home option, and every option of a command that opens the facade. ``nested``: for
    an action under a command that has them too (``reconcile resolve``): given there they set
    the value, else they leave the command's own untouched."""
    unset = argparse.SUPPRESS if nested else None
    home = _Parser(add_help=False)
    home.add_argument(
        "--home",
        default=unset,
        help=f"workbench home folder (default: ${HOME_ENV}, else the project's runs/)",
    )
    full = _Parser(add_help=False, parents=[home])
    full.add_argument(
        "--policy-dir",
        default=unset,
        help=f"policies folder (default: ${POLICY_ENV}, else the nearest policies/)",
    )
    full.add_argument(
        "--broker",
        default=unset or "paper",
        choices=["paper", "ibkr"],
        help="paper (simulated, the default) or ibkr (an IBKR paper account via IB Gateway/TWS)",
    )
    full.add_argument(
        "--bars",
        default=unset,
        help="your own daily bars CSV/Parquet for the paper broker"
        " (default: the policy's market_data.bars, else seeded synthetic bars)",
    )
    _add_ibkr_connection(full, unset)
    return home, full


def _add_ibkr_connection(parser: argparse.ArgumentParser, unset: str | None = None) -> None:
    ibkr = parser.add_argument_group(
        "IBKR connection (--broker ibkr; default: policies/broker.yaml)"
    )
    ibkr.add_argument("--host", default=unset, help="IB Gateway/TWS host (127.0.0.1)")
    ibkr.add_argument(
        "--port", type=int, default=unset, help="API port: 4002 IB Gateway paper, 7497 TWS paper"
    )
    ibkr.add_argument(
        "--client-id", type=int, default=unset, help="API client id, unique per connection"
    )


def _add(
    sub: argparse._SubParsersAction[_Parser],
    name: str,
    handler: Handler,
    parent: _Parser,
) -> _Parser:
    parser = sub.add_parser(
        name, parents=[parent], help=handler.__doc__, description=handler.__doc__
    )
    parser.set_defaults(handler=handler)
    return parser


def _add_order_commands(sub: argparse._SubParsersAction[_Parser], full: _Parser) -> None:
    proposals = _add(sub, "proposals", cmd_proposals, full)
    proposals.add_argument(
        "--state", type=_state, choices=[s.value for s in OrderState], metavar="STATE",
        help="only this state: " + ", ".join(s.value for s in OrderState),
    )  # fmt: skip
    proposals.add_argument(
        "--wide", action="store_true", help="every column and every violation, unwrapped"
    )
    stdin_help = "read passphrases from stdin, one line each"
    approve = _add(sub, "approve", cmd_approve, full)
    approve.add_argument("proposal_id", type=_proposal_id)
    approve.add_argument("--approver", type=_approver, required=True, help="your approver name")
    approve.add_argument("--reason", default=None, help="override reason (REVIEW decisions)")
    approve.add_argument(
        "--second-approver", type=_approver, default=None, help="second approver, if required"
    )
    approve.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    reject = _add(sub, "reject", cmd_reject, full)
    reject.add_argument("proposal_id", type=_proposal_id)
    reject.add_argument("--approver", type=_approver, required=True, help="your approver name")
    reject.add_argument("--reason", required=True, help="why (recorded)")
    reject.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    submit = _add(sub, "submit", cmd_submit, full)
    submit.add_argument("proposal_id", type=_proposal_id)
    submit.add_argument("--token", required=True, help="the one-time token, or - for stdin")
    cancel = _add(sub, "cancel", cmd_cancel, full)
    cancel.add_argument("proposal_id", type=_proposal_id)
    cancel.add_argument("--by", default=None, help="who (default: the OS user name)")
    _add_reconcile(sub, full)


def _add_reconcile(sub: argparse._SubParsersAction[_Parser], full: _Parser) -> None:
    """``reconcile`` lists; ``reconcile resolve`` resolves. The resolve action takes the same
    options, which set nothing unless given there (so ``reconcile --home H resolve …`` keeps H)."""
    reconcile = _add(sub, "reconcile", cmd_reconcile, full)
    _, nested = _common(nested=True)
    actions = reconcile.add_subparsers(dest="reconcile_command", metavar="ACTION")
    resolve = _add(actions, "resolve", cmd_reconcile_resolve, nested)
    resolve.add_argument(
        "proposal_id", type=_proposal_id, help="the proposal whose outcome is unknown"
    )
    outcome = resolve.add_mutually_exclusive_group(required=True)
    outcome.add_argument(
        "--not-sent", action="store_true", help="the broker holds no order with its orderRef"
    )
    outcome.add_argument(
        "--sent-as", metavar="BROKER_ORDER_ID", help="the broker's order with its orderRef"
    )
    resolve.add_argument("--approver", type=_approver, required=True, help="your approver name")
    resolve.add_argument(
        "--reason", default="checked at the broker by an approver", help="why (recorded)"
    )
    resolve.add_argument("--passphrase-stdin", action="store_true", help="passphrase from stdin")


def _add_state_commands(
    sub: argparse._SubParsersAction[_Parser],
    home: _Parser,
    full: _Parser,
) -> None:
    for name, handler in (("halt", cmd_halt), ("reduce", cmd_reduce)):
        parser = _add(sub, name, handler, home)
        parser.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        parser.add_argument("--by", default=None, help="who (default: the OS user name)")
    resume = _add(sub, "resume", cmd_resume, full)
    resume.add_argument("--approver", type=_approver, required=True, help="a registered approver")
    resume.add_argument("--reason", default="resumed by a person", help="why (recorded)")
    resume.add_argument("--passphrase-stdin", action="store_true", help="passphrase from stdin")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench",
        description="Research-to-paper trading workbench: propose, simulate, gate, approve, submit",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    home, full = _common()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add(sub, "status", cmd_status, full)
    _add_state_commands(sub, home, full)
    _add_order_commands(sub, full)
    daily = _add(sub, "daily", cmd_daily, full)
    daily.add_argument("--as-of", default=None, help="YYYY-MM-DD (default: today in New York)")
    daily.add_argument("--proposer", default="rebalance", choices=["rebalance", "signals"])
    daily.add_argument("--signals", default=None, help="signals CSV for --proposer signals")
    daily.add_argument("--universe", default="", help="comma-separated symbols to trade")
    _add(sub, "init", cmd_init, home)

    gateway = _add(sub, "gateway", cmd_gateway, _Parser(add_help=False))
    gateway.add_argument("--port", type=int, default=4012, help="TCP port on 127.0.0.1 (4012)")
    gateway.add_argument("--account", default="DU1234567", help="paper account id (DU1234567)")
    gateway.add_argument("--chaos", type=int, default=None, metavar="SEED", help="seeded faults")
    gateway.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write a sanitised transcript of every session on the port",
    )
    gateway.add_argument(
        "--upstream",
        default=None,
        metavar="HOST:PORT",
        help="with --record: a paper IB Gateway/TWS to record (not the loopback)",
    )
    gateway.add_argument("--replay", default=None, metavar="FILE", help="serve a transcript")

    _add_mcp(sub, home, full)
    audit = sub.add_parser("audit", help="Inspect the hash-chained audit log.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    _add(audit_sub, "verify", cmd_audit_verify, home)
    _add(audit_sub, "tail", cmd_audit_tail, home).add_argument(
        "-n", type=_count, default=20, help="how many events, 1 to 1,000,000 (default 20)"
    )
    approver = sub.add_parser("approver", help="Manage the people who approve orders.")
    approver_sub = approver.add_subparsers(dest="approver_command", required=True, metavar="ACTION")
    stdin_help = "passphrases from stdin, one line each (the new one first, then each --by)"
    add = _add(approver_sub, "add", cmd_approver_add, home)
    add.add_argument(
        "name", type=_approver, help="approver name: lowercase letters, digits, _ . - (2-32 chars)"
    )
    add.add_argument(
        "--by",
        type=_approver,
        action="append",
        default=[],
        metavar="APPROVER",
        help="a current approver who consents (for --replace: two others, or omit to give the"
        " old passphrase)",
    )
    add.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    add.add_argument(
        "--replace", action="store_true", help="rotate an existing approver's passphrase"
    )
    remove = _add(approver_sub, "remove", cmd_approver_remove, home)
    remove.add_argument("name", type=_approver, help="the approver to remove")
    remove.add_argument(
        "--by", type=_approver, required=True, metavar="APPROVER", help="a current approver"
    )
    remove.add_argument("--passphrase-stdin", action="store_true", help="passphrase from stdin")
    _add(approver_sub, "list", cmd_approver_list, home)
    doctor = _add(sub, "doctor", cmd_doctor, home)
    doctor.add_argument(
        "--fix-permissions", action="store_true", help="narrow the home to 0700, files to 0600"
    )
    return parser


# -- running a command: the home first, then one clear line for every expected failure ---------

_CREATES_HOME = frozenset({"daily", "init"})
_READS_ONLY = frozenset({"verify", "tail"})  # `audit verify` and `audit tail` open read-only
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NEARLY_FULL = 64 * 1024  # bytes free below which a failed write is put down to a full disk


def _check_policy_dir(args: argparse.Namespace) -> None:
    """The policies folder of a command that reads policies must be a folder (its files are
    checked by their loaders); said before anything is opened."""
    if not hasattr(args, "policy_dir"):
        return
    folder = resolve_policy_dir(args.policy_dir)
    if folder.is_dir():
        return
    named = "--policy-dir" if args.policy_dir else "$" + POLICY_ENV
    source = f" (from {named})" if args.policy_dir or os.environ.get(POLICY_ENV) else ""
    if folder.exists():
        raise ConfigError(f"{folder} is a file, not a policies folder{source}")
    raise ConfigError(f"no policies folder at {folder}{source}")


def _check_home(args: argparse.Namespace) -> Path | None:
    """The command's home: it must exist (only daily and init create one) and be writable
    unless the command only reads; None for a command that uses no home (the gateway).
    Refusals name the path looked at."""
    if not hasattr(args, "home"):
        return None
    command = getattr(args, "audit_command", None) or args.command
    if command in _CREATES_HOME:
        return check_creatable(args.home)
    home = require_home(args.home)
    return home if command in _READS_ONLY else require_writable(home)


def _warn_if_readable(args: argparse.Namespace, home: Path) -> None:
    """Every command says so when other local users can read the home (doctor reports it)."""
    if args.handler is cmd_doctor:
        return
    for problem in privacy.problems(home):
        print(f"warning: {problem}: other local users can read it (approve and submit are"
              f" refused until `workbench doctor --fix-permissions`)", file=sys.stderr)  # fmt: skip


def _os_problem(exc: OSError) -> tuple[str, int]:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in _DISK_FULL:
        return f"error: the disk is full{where}: nothing half-written was left", EXIT_REFUSED
    if exc.errno in _NOT_WRITABLE:
        return f"error: cannot write{where}: {exc.strerror}", EXIT_BAD_INPUT
    return f"error: {exc.strerror or exc}{where}", EXIT_REFUSED


def _disk_note(home: Path | None) -> str:
    """' (the disk holding HOME is full)' when it is: SQLite reports that as an I/O error."""
    try:
        full = home is not None and shutil.disk_usage(home).free < _NEARLY_FULL
    except OSError:
        full = False
    return f" (the disk holding {home} is full)" if full else ""


def run_command(args: argparse.Namespace) -> int:
    """Run one parsed command: print its home, then the handler; every expected failure is one
    line on stderr and an exit code (2 bad input or configuration, 1 refused or a fault)."""
    handler: Handler = args.handler
    home: Path | None = None
    lines = library_lines().hold()
    try:
        home = _check_home(args)
        if home is not None:
            # `workbench mcp` speaks the protocol on stdout (or prints the token): not there.
            out = sys.stderr if args.command == "mcp" else sys.stdout
            print(f"home: {home}", file=out, flush=True)
            _warn_if_readable(args, home)
        _check_policy_dir(args)
        return handler(args)
    except (ConfigError, ValueError) as exc:
        return _fail(f"error: {exc}", EXIT_BAD_INPUT)
    except WorkbenchError as exc:
        return _fail(f"refused: {exc}{_disk_note(home)}", EXIT_REFUSED)
    except BrokenPipeError:  # the reader went away (`| head`): nothing to tell it, or anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit either
        return EXIT_REFUSED
    except sqlite3.DatabaseError as exc:
        db = home / DB_NAME if home else "the workbench database"
        if "full" in str(exc) or _disk_note(home):
            return _fail(f"error: the disk holding {db} is full: nothing more was written", 1)
        return _fail(f"error: {db} is corrupt or unreadable ({exc})", EXIT_REFUSED)
    except OSError as exc:
        return _fail(*_os_problem(exc))
    except EOFError:
        return _fail("error: the input ended before a value was read", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED)
    finally:
        lines.let_through()  # a success or an unexpected fault: what the library said too


def _fail(message: str, code: int) -> int:
    """An expected failure: its one line, and none of the library's about it."""
    library_lines().drop_held()
    print(message, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    library_lines()
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
