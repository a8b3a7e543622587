"""The ``workbench`` command. It holds no logic: every action is one library call.

Exit codes: 0 done; 1 refused (a credential, token, trading state or the gate said no; a report
notebook failed); 2 bad input or configuration (nothing was done).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from workbench import __version__, cli_format, fmt, privacy, trading_state
from workbench.audit import AuditLog
from workbench.authority import Authority, Credential
from workbench.errors import ConfigError, WorkbenchError
from workbench.home import HOME_ENV, POLICY_ENV, db_path, resolve_home, resolve_policy_dir
from workbench.models import TradingState

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2


def _fails_cleanly(handler: Handler) -> Handler:
    """Print a typed fault in one line and map it to an exit code instead of a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ConfigError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except WorkbenchError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED

    return run


def _open_log(args: argparse.Namespace) -> AuditLog:
    return AuditLog(db_path(args.home))


def _secret(prompt: str, from_stdin: bool) -> str:
    """One secret: a line of stdin, or typed at a prompt that does not echo."""
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the hash chain; exit 1 naming the first bad seq when it does not hold."""
    with _open_log(args) as log:
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
    with _open_log(args) as log:
        events = log.tail(args.n)
    for e in events:
        who = f" {e.proposal_id}" if e.proposal_id else ""
        print(f"{e.seq:>8} {e.ts} {e.type:<26} {e.actor}{who} {e.payload_json}")
    return EXIT_OK


# -- status and trading state --------------------------------------------------------------------


@_fails_cleanly
def cmd_status(args: argparse.Namespace) -> int:
    """Print the home, the broker, the trading state, the chain head and proposals by state."""
    from workbench.workbench import Workbench

    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
        status = wb.status()
    print(f"home: {status['home']}")
    print(f"broker: {status['broker']} (account {status['account']})")
    print(
        f"trading state: {status['trading_state']} by {status['trading_state_by']}:"
        f" {status['trading_state_reason']}"
    )
    print(f"audit log: {status['audit_head_seq']} events, head {status['audit_head_hash']}")
    counts = status["proposals_by_state"] or {}
    print("proposals: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
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
    from workbench.workbench import Workbench

    credential = _credential(args.approver, args.passphrase_stdin)
    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
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
    from workbench.lifecycle import OrderState
    from workbench.workbench import Workbench

    states = [OrderState(args.state)] if args.state else None
    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
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
    from workbench.workbench import Workbench

    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
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
    from workbench.workbench import Workbench

    credential = _credential(args.approver, args.passphrase_stdin)
    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
        wb.reject(args.proposal_id, credential, args.reason)
    print(f"rejected {args.proposal_id}")
    return EXIT_OK


@_fails_cleanly
def cmd_submit(args: argparse.Namespace) -> int:
    """Send an approved proposal with its one-time token (``--token -`` reads it from stdin)."""
    from workbench.ticket_source import ticket_for
    from workbench.workbench import Workbench

    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
        state = wb.submit(args.proposal_id, token)
        done = ticket_for(wb, args.proposal_id).execution
        print(cli_format.submit_text(args.proposal_id, wb.label, state.value, done))
    return EXIT_OK


@_fails_cleanly
def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a working order, or withdraw a proposal not yet sent (allowed while HALTED)."""
    from workbench.workbench import Workbench

    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
        state = wb.cancel(args.proposal_id, actor=args.by or _os_user())
    print(f"{args.proposal_id}: {state.value}")
    return EXIT_OK


@_fails_cleanly
def cmd_reconcile(args: argparse.Namespace) -> int:
    """Report proposals whose token was spent but that the broker never received."""
    from workbench.workbench import Workbench

    with Workbench.open(args.home, args.broker, policy_dir=args.policy_dir) as wb:
        stuck = wb.reconcile()
    if not stuck:
        print("reconciled: every submitted proposal is known to the broker")
        return EXIT_OK
    print("submitted but unknown to the broker (NOT re-sent; check and cancel by hand):")
    for pid in stuck:
        print(f"  {pid}")
    return EXIT_REFUSED


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
    """Run the daily-cycle notebook with papermill into <home>/<as_of>/ (+ HTML without code)."""
    from workbench.daily import market_today, run_notebook

    as_of = date.fromisoformat(args.as_of) if args.as_of else market_today()
    run = run_notebook(
        as_of=as_of,
        home=resolve_home(args.home),
        policy_dir=resolve_policy_dir(args.policy_dir),
        broker=args.broker,
        proposer=args.proposer,
        signals_path=Path(args.signals) if args.signals else None,
        universe=args.universe,
        bars_path=Path(args.bars) if args.bars else None,
        progress=sys.stderr.isatty(),
    )
    print(f"report: {run.notebook}")
    if run.html:
        print(f"html:   {run.html}")
    if not run.ok:
        print(f"FAILED: {run.error} (the executed notebook shows where)", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


# -- the loopback test gateway -------------------------------------------------------------------


@_fails_cleanly
def cmd_gateway(args: argparse.Namespace) -> int:
    """Run the loopback TEST gateway (TWS protocol, synthetic prices, not IBKR) until Ctrl-C."""
    from workbench.testing.demo import run

    return run(port=args.port, account=args.account, chaos=args.chaos, out=_say)


def _say(text: str) -> None:
    print(text, flush=True)


# -- the MCP server ------------------------------------------------------------------------------


def _existing_home(args: argparse.Namespace) -> Path:
    """The home, which must already hold a workbench database (the MCP server makes none)."""
    home = resolve_home(args.home)
    if not db_path(home).is_file():
        raise ConfigError(f"no workbench home at {home}: run `workbench daily` (or pass --home)")
    return home


@_fails_cleanly
def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the MCP tools (read and propose only) on stdio, or with --http on 127.0.0.1."""
    import anyio

    from workbench import mcp_http
    from workbench.mcp_policy import load_mcp_policy
    from workbench.mcp_server import build_server
    from workbench.proposer import Proposer

    if not args.http and (args.host or args.port or args.allow_remote or args.allowed_host):
        raise ConfigError("--host, --port, --allow-remote and --allowed-host need --http")
    host, port = args.host or "127.0.0.1", args.port if args.port is not None else 8765
    if args.http:
        mcp_http.check_bind(host, allow_remote=args.allow_remote)
    folder = resolve_policy_dir(args.policy_dir)
    limits = load_mcp_policy(folder)
    home = _existing_home(args)
    verifier = mcp_http.HomeTokenVerifier(home) if args.http else None
    with Proposer.open(home, args.broker, policy_dir=folder, bars_path=args.bars) as proposer:
        server = build_server(
            proposer, limits, transport="http" if args.http else "stdio",
            auth=mcp_http.auth_settings() if args.http else None, token_verifier=verifier,
        )  # fmt: skip
        where = mcp_http.url(host, port) if args.http else "stdio"
        print(f"workbench MCP server (read and propose only) on {where}: {proposer.label},"
              f" home {home}", file=sys.stderr, flush=True)  # fmt: skip
        try:
            if not args.http:
                server.run("stdio")
                return EXIT_OK
            body = limits.payload.max_argument_chars + 16_384  # room for the JSON-RPC envelope
            app = mcp_http.http_app(
                server, host=host, port=port, extra_hosts=tuple(args.allowed_host), max_body=body
            )
            anyio.run(lambda: mcp_http.serve(app, host=host, port=port))
        except KeyboardInterrupt:
            pass
    return EXIT_OK


@_fails_cleanly
def cmd_mcp_token(args: argparse.Namespace) -> int:
    """Issue the bearer token of the MCP server's HTTP mode; it is printed once, never again."""
    from workbench.mcp_http import issue_token, token_path

    home = _existing_home(args)
    token = issue_token(home, rotate=args.rotate)
    print(token)
    print(f"(shown once; only its digest is kept in {token_path(home)}. Give it to your MCP host"
          " as the header  Authorization: Bearer <token>)", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _add_mcp(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], home: argparse.ArgumentParser
) -> None:
    mcp = _add(sub, "mcp", cmd_mcp, home)
    mcp.add_argument(
        "--policy-dir",
        default=None,
        help=f"policies folder (default: ${POLICY_ENV}, else the nearest policies/)",
    )
    mcp.add_argument(
        "--broker", default="paper", choices=["paper", "ibkr"],
        help="paper (default) or ibkr, opened read-and-propose only",
    )  # fmt: skip
    mcp.add_argument("--bars", default=None, help="your own daily bars CSV (paper broker)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default=None, help="HTTP address (default 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=None, help="HTTP port (default 8765)")
    mcp.add_argument(
        "--allow-remote", action="store_true",
        help="allow an address other than loopback (the token is then the only guard)",
    )  # fmt: skip
    mcp.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="another Host name clients use to reach a remote bind (DNS-rebinding check)",
    )  # fmt: skip
    actions = mcp.add_subparsers(dest="mcp_command", required=False, metavar="ACTION")
    token = _add(actions, "token", cmd_mcp_token, home)
    token.add_argument("--rotate", action="store_true", help="replace an existing token")


# -- the parser ----------------------------------------------------------------------------------


def _common() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home", default=None, help=f"workbench home folder (default: ${HOME_ENV}, else ./runs)"
    )
    full = argparse.ArgumentParser(add_help=False, parents=[home])
    full.add_argument(
        "--policy-dir",
        default=None,
        help=f"policies folder (default: ${POLICY_ENV}, else the nearest policies/)",
    )
    full.add_argument("--broker", default="paper", choices=["paper"], help="broker (paper)")
    return home, full


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    parent: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, parents=[parent], help=handler.__doc__, description=handler.__doc__
    )
    parser.set_defaults(handler=handler)
    return parser


def _add_order_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], full: argparse.ArgumentParser
) -> None:
    proposals = _add(sub, "proposals", cmd_proposals, full)
    proposals.add_argument("--state", help="only this state")
    proposals.add_argument(
        "--wide", action="store_true", help="every column and every violation, unwrapped"
    )
    stdin_help = "read passphrases from stdin, one line each"
    approve = _add(sub, "approve", cmd_approve, full)
    approve.add_argument("proposal_id")
    approve.add_argument("--approver", required=True, help="your approver name")
    approve.add_argument("--reason", default=None, help="override reason (REVIEW decisions)")
    approve.add_argument("--second-approver", default=None, help="second approver, if required")
    approve.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    reject = _add(sub, "reject", cmd_reject, full)
    reject.add_argument("proposal_id")
    reject.add_argument("--approver", required=True, help="your approver name")
    reject.add_argument("--reason", required=True, help="why (recorded)")
    reject.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    submit = _add(sub, "submit", cmd_submit, full)
    submit.add_argument("proposal_id")
    submit.add_argument("--token", required=True, help="the one-time token, or - for stdin")
    cancel = _add(sub, "cancel", cmd_cancel, full)
    cancel.add_argument("proposal_id")
    cancel.add_argument("--by", default=None, help="who (default: the OS user name)")
    _add(sub, "reconcile", cmd_reconcile, full)


def _add_state_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    home: argparse.ArgumentParser,
    full: argparse.ArgumentParser,
) -> None:
    for name, handler in (("halt", cmd_halt), ("reduce", cmd_reduce)):
        parser = _add(sub, name, handler, home)
        parser.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        parser.add_argument("--by", default=None, help="who (default: the OS user name)")
    resume = _add(sub, "resume", cmd_resume, full)
    resume.add_argument("--approver", required=True, help="a registered approver")
    resume.add_argument("--reason", default="resumed by a person", help="why (recorded)")
    resume.add_argument("--passphrase-stdin", action="store_true", help="passphrase from stdin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    daily.add_argument("--bars", default=None, help="your own daily bars CSV (paper broker)")

    gateway = _add(sub, "gateway", cmd_gateway, argparse.ArgumentParser(add_help=False))
    gateway.add_argument("--port", type=int, default=4012, help="TCP port on 127.0.0.1 (4012)")
    gateway.add_argument("--account", default="DU1234567", help="paper account id (DU1234567)")
    gateway.add_argument("--chaos", type=int, default=None, metavar="SEED", help="seeded faults")

    _add_mcp(sub, home)
    audit = sub.add_parser("audit", help="Inspect the hash-chained audit log.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    _add(audit_sub, "verify", cmd_audit_verify, home)
    _add(audit_sub, "tail", cmd_audit_tail, home).add_argument(
        "-n", type=int, default=20, help="how many events (default 20)"
    )
    approver = sub.add_parser("approver", help="Manage the people who approve orders.")
    approver_sub = approver.add_subparsers(dest="approver_command", required=True, metavar="ACTION")
    stdin_help = "passphrases from stdin, one line each (the new one first, then each --by)"
    add = _add(approver_sub, "add", cmd_approver_add, home)
    add.add_argument("name", help="approver name: lowercase letters, digits, _ . - (2-32 chars)")
    add.add_argument(
        "--by",
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
    remove.add_argument("name", help="the approver to remove")
    remove.add_argument("--by", required=True, metavar="APPROVER", help="a current approver")
    remove.add_argument("--passphrase-stdin", action="store_true", help="passphrase from stdin")
    _add(approver_sub, "list", cmd_approver_list, home)
    doctor = _add(sub, "doctor", cmd_doctor, home)
    doctor.add_argument(
        "--fix-permissions", action="store_true", help="narrow the home to 0700, files to 0600"
    )
    return parser


def _warn_if_readable(args: argparse.Namespace) -> None:
    """Every command says so when other local users can read the home (doctor reports it)."""
    if args.handler is cmd_doctor or not hasattr(args, "home"):  # doctor reports; no home used
        return
    for problem in privacy.problems(resolve_home(args.home)):
        print(f"warning: {problem}: other local users can read it (approve and submit are"
              f" refused until `workbench doctor --fix-permissions`)", file=sys.stderr)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    _warn_if_readable(args)
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
