"""The ``workbench`` command. It holds no logic: every action goes through a library call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from workbench import __version__
from workbench.audit import AuditLog
from workbench.home import HOME_ENV, db_path, resolve_home

Handler = Callable[[argparse.Namespace], int]


def _open_log(args: argparse.Namespace) -> AuditLog:
    return AuditLog(db_path(args.home))


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the hash chain; exit 1 naming the first bad seq when it does not hold."""
    with _open_log(args) as log:
        result = log.verify()
    if result.ok:
        print(f"audit chain OK: {result.checked} events, head {result.head_seq} {result.head_hash}")
        return 0
    print(
        f"audit chain BROKEN at seq {result.first_bad_seq}: {result.reason}"
        f" ({result.checked} events verified before it)",
        file=sys.stderr,
    )
    return 1


def cmd_audit_tail(args: argparse.Namespace) -> int:
    """Print the newest events, oldest first."""
    with _open_log(args) as log:
        events = log.tail(args.n)
    for e in events:
        who = f" {e.proposal_id}" if e.proposal_id else ""
        print(f"{e.seq:>8} {e.ts} {e.type:<26} {e.actor}{who} {e.payload}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print where the home is, the size of the log and its head."""
    home = resolve_home(args.home)
    with _open_log(args) as log:
        seq, digest = log.head()
    print(f"home: {home}")
    print(f"audit log: {db_path(home)} ({seq} events, head {digest[:16]})")
    return 0


def _new_passphrase(from_stdin: bool) -> str:
    """A new passphrase: one line of stdin, or typed twice at a prompt that does not echo."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    first = getpass.getpass("New approver passphrase: ")
    if getpass.getpass("Repeat the passphrase: ") != first:
        raise ValueError("the two passphrases differ")
    return first


def _os_user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


def cmd_approver_add(args: argparse.Namespace) -> int:
    """Register an approver (passphrase from a prompt, or from stdin with --passphrase-stdin)."""
    from workbench.approval import Approvals
    from workbench.clock import SystemClock
    from workbench.errors import ApprovalError

    try:
        passphrase = _new_passphrase(args.passphrase_stdin)
        with _open_log(args) as log:
            approvals = Approvals(log, resolve_home(args.home), SystemClock())
            approvals.add_approver(args.name, passphrase, added_by=_os_user(), replace=args.replace)
    except (ApprovalError, ValueError) as exc:
        print(f"approver not added: {exc}", file=sys.stderr)
        return 1
    print(f"approver {args.name} {'replaced' if args.replace else 'added'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Research-to-paper trading workbench: propose, simulate, gate, approve, submit",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    home_opt = argparse.ArgumentParser(add_help=False)
    home_opt.add_argument(
        "--home",
        default=None,
        help=f"workbench home folder (default: ${HOME_ENV}, else ./runs)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser("status", parents=[home_opt], help=cmd_status.__doc__)
    status.set_defaults(handler=cmd_status)

    audit = sub.add_parser("audit", help="Inspect the hash-chained audit log.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", parents=[home_opt], help=cmd_audit_verify.__doc__)
    verify.set_defaults(handler=cmd_audit_verify)
    tail = audit_sub.add_parser("tail", parents=[home_opt], help=cmd_audit_tail.__doc__)
    tail.add_argument("-n", type=int, default=20, help="how many events (default 20)")
    tail.set_defaults(handler=cmd_audit_tail)

    approver = sub.add_parser("approver", help="Manage the people who approve orders.")
    approver_sub = approver.add_subparsers(dest="approver_command", required=True, metavar="ACTION")
    add = approver_sub.add_parser("add", parents=[home_opt], help=cmd_approver_add.__doc__)
    add.add_argument("name", help="approver name: lowercase letters, digits, _ . - (2-32 chars)")
    add.add_argument(
        "--passphrase-stdin", action="store_true", help="read the passphrase from one stdin line"
    )
    add.add_argument(
        "--replace", action="store_true", help="rotate an existing approver's passphrase"
    )
    add.set_defaults(handler=cmd_approver_add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
