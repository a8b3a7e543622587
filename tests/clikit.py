"""Every ``workbench`` command, found from the parser itself, and each with the fewest arguments
it takes, so a test can walk them all (a new command that is not listed here fails
``test_cli.test_the_walk_covers_every_command``)."""

from __future__ import annotations

import argparse

from workbench.cli import build_parser

# The command path -> an invocation with its required arguments (no --home: the test adds it).
RUNNABLE: dict[tuple[str, ...], list[str]] = {
    ("status",): ["status"],
    ("proposals",): ["proposals"],
    ("approve",): ["approve", "p1", "--approver", "bob", "--passphrase-stdin"],
    ("reject",): ["reject", "p1", "--approver", "bob", "--reason", "no", "--passphrase-stdin"],
    ("submit",): ["submit", "p1", "--token", "t"],
    ("cancel",): ["cancel", "p1"],
    ("reconcile",): ["reconcile"],
    ("reconcile", "resolve"): ["reconcile", "resolve", "p1", "--not-sent", "--approver", "bob"],
    ("halt",): ["halt", "--reason", "x", "--by", "ops"],
    ("reduce",): ["reduce", "--reason", "x", "--by", "ops"],
    ("resume",): ["resume", "--approver", "bob", "--passphrase-stdin"],
    ("daily",): ["daily"],
    ("init",): ["init"],
    ("gateway",): ["gateway"],
    ("mcp",): ["mcp"],
    ("mcp", "token"): ["mcp", "token"],
    ("audit", "verify"): ["audit", "verify"],
    ("audit", "tail"): ["audit", "tail"],
    ("approver", "add"): ["approver", "add", "bob", "--passphrase-stdin"],
    ("approver", "remove"): ["approver", "remove", "bob", "--by", "alice", "--passphrase-stdin"],
    ("approver", "list"): ["approver", "list"],
    ("doctor",): ["doctor"],
}
CREATORS = {("daily",), ("init",)}  # the two commands that create a missing home
NO_HOME = {("gateway",)}  # the loopback test gateway works on no home


def on_a_home(*, creators: bool) -> list[list[str]]:
    """The invocations of every command that works on a home (with the two creators or not)."""
    left_out = NO_HOME if creators else NO_HOME | CREATORS
    return [argv for path, argv in RUNNABLE.items() if path not in left_out]


def commands(
    parser: argparse.ArgumentParser | None = None, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command path of the parser, groups (``audit``, ``approver``) included."""
    found: list[tuple[str, ...]] = []
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found.extend(commands(sub, (*prefix, name)))
    return found


def runnable(parser: argparse.ArgumentParser | None = None) -> list[tuple[str, ...]]:
    """The command paths that run something (a group alone only prints its usage)."""
    top = parser or build_parser()
    return [path for path in commands(top) if _parser_of(top, path).get_default("handler")]


def help_line(path: tuple[str, ...]) -> str:
    """The one-line help ``workbench`` lists for the command at ``path`` (empty when none)."""
    parent = _parser_of(build_parser(), path[:-1])
    for action in parent._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == path[-1]:
                    return choice.help or ""
    return ""


def _parser_of(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser
