"""Every expected failure of the command is one clear line and an exit code, never a traceback:
2 for bad input or configuration, 1 for a refusal or a fault. Each is produced for real: a
read-only mount, a full filesystem, a corrupted page, no terminal, a file where a home should be.

Read-only and full filesystems are made in a private mount namespace (``unshare -rm``), so they
need neither root nor a change to the machine; the commands run inside it and leave their exit
code and output in files the test reads afterwards.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import tool_called

from workbench.audit import AuditLog, EventType
from workbench.home import DB_NAME, create_home
from workbench.replay import market_today

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
UNSHARE = shutil.which("unshare") or "unshare"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """stderr, which must be exactly one line and no traceback."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def workbench(
    *args: str, stdin: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> Ran:
    run = subprocess.run(
        [WORKBENCH, *args], capture_output=True, text=True, timeout=300, stdin=stdin,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    return Ran(run.returncode, run.stdout, run.stderr)


def in_namespace(
    tmp_path: Path, setup: str, commands: dict[str, list[str]], after: str = ""
) -> dict[str, Ran]:
    """Run ``setup`` then each command in a private mount namespace; return what each did."""
    out = tmp_path / "out"
    out.mkdir()
    lines = ["set -eu", setup]
    for name, argv in commands.items():
        target = shlex.quote(str(out / name))
        command = " ".join(shlex.quote(a) for a in [WORKBENCH, *argv])
        lines.append(f"{command} >{target}.out 2>{target}.err </dev/null && echo 0 >{target}.rc"
                     f" || echo $? >{target}.rc")  # fmt: skip
    lines.append(after)
    run = subprocess.run(
        [UNSHARE, "-rm", "sh", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, f"namespace script failed: {run.stderr}"
    return {
        name: Ran(
            int((out / f"{name}.rc").read_text()),
            (out / f"{name}.out").read_text(),
            (out / f"{name}.err").read_text(),
        )
        for name in commands
    }


def home_with_events(path: Path, n: int = 3) -> Path:
    home = create_home(path)
    with AuditLog(home / DB_NAME) as log:
        for i in range(n):
            called = {**tool_called(i=i), "detail": "x" * 200}
            log.append(EventType.TOOL_CALLED, called, actor="test")
    return home


# -- the home ------------------------------------------------------------------------------------


def test_read_only_home_reads_work_and_writes_are_refused_in_one_line(tmp_path: Path) -> None:
    """An archived, read-only copy: audit verify and tail work; a write exits 2 saying why."""
    home = home_with_events(tmp_path / "archive")
    quoted = shlex.quote(str(home))
    ran = in_namespace(
        tmp_path,
        f"mount --bind {quoted} {quoted} && mount -o remount,ro,bind {quoted}",
        {
            "verify": ["audit", "verify", "--home", str(home)],
            "tail": ["audit", "tail", "-n", "1", "--home", str(home)],
            "halt": ["halt", "--reason", "x", "--by", "ops", "--home", str(home)],
            "status": ["status", "--home", str(home)],
            "daily": ["daily", "--home", str(home)],
        },
    )
    assert ran["verify"].code == 0 and "audit chain OK: 3 events" in ran["verify"].out
    assert ran["tail"].code == 0 and "ToolCalled" in ran["tail"].out
    for name in ("halt", "status", "daily"):
        assert ran[name].code == 2, ran[name]
        assert "read-only" in ran[name].one_line_error()
    with AuditLog(home / DB_NAME) as log:
        assert log.count() == 3


def test_a_file_where_the_home_should_be_is_refused(tmp_path: Path) -> None:
    """--home naming a file: exit 2, one line, the file untouched, for reads, writes and daily."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for args in (["status"], ["audit", "verify"], ["init"], ["daily"]):
        ran = workbench(*args, "--home", str(afile))
        assert ran.code == 2 and "is a file" in ran.one_line_error(), args
    assert afile.read_text() == "mine"


# -- the disk ------------------------------------------------------------------------------------


def test_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    """On a full filesystem a write exits 1 saying the disk is full; `daily` leaves the day's good
    report intact and no partial file; once space is back the chain verifies."""
    prepared = home_with_events(tmp_path / "prepared")
    today = market_today().isoformat()  # `daily` without --as-of runs today, live, in the home
    day = prepared / today
    day.mkdir()
    (day / "daily_cycle.ipynb").write_text('{"the": "good report"}')
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    home = mnt / "home"
    q = shlex.quote
    setup = (
        f"mount -t tmpfs -o size=1m tmpfs {q(str(mnt))}\n"
        f"cp -a {q(str(prepared))} {q(str(home))}\n"
        f"dd if=/dev/zero of={q(str(mnt / 'filler'))} bs=4k 2>/dev/null || true"
    )
    after = (
        f"ls -a {q(str(home / today))} {q(str(home))} > {q(str(tmp_path / 'out/ls'))}\n"
        f"cat {q(str(home / today / 'daily_cycle.ipynb'))} > {q(str(tmp_path / 'out/report'))}\n"
        f"rm {q(str(mnt / 'filler'))}\n"
        f"{q(WORKBENCH)} audit verify --home {q(str(home))} > {q(str(tmp_path / 'out/verify'))}"
    )
    ran = in_namespace(
        tmp_path,
        setup,
        {
            "halt": ["halt", "--reason", "x", "--by", "ops", "--home", str(home)],
            "daily": ["daily", "--home", str(home)],
            "init": ["init", "--home", str(mnt / "another")],
        },
        after,
    )
    for name in ("halt", "daily", "init"):
        assert ran[name].code in (1, 2), ran[name]
        assert "full" in ran[name].one_line_error() or "No space" in ran[name].err, ran[name]
    assert ran["halt"].code == ran["daily"].code == 1
    assert (tmp_path / "out/report").read_text() == '{"the": "good report"}'
    listing = (tmp_path / "out/ls").read_text().split()
    assert not [n for n in listing if n.startswith(".running") or n.endswith(".failed.ipynb")]
    assert "audit chain OK: 3 events" in (tmp_path / "out/verify").read_text()


# -- the database --------------------------------------------------------------------------------


def test_corrupt_database_page_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A page of the events table overwritten with garbage: verify says the database is corrupt
    (exit 1), one line."""
    home = home_with_events(tmp_path / "home", n=300)
    with (home / DB_NAME).open("r+b") as db:
        db.seek(4096 * 10)
        db.write(b"\xde\xad\xbe\xef" * 1024)
    ran = workbench("audit", "verify", "--home", str(home))
    assert ran.code == 1
    assert "corrupt or unreadable" in ran.one_line_error()


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    """A home whose database file is garbage: every command exits 1 with one line."""
    home = home_with_events(tmp_path / "home")
    (home / DB_NAME).write_bytes(b"garbage!" * 512)
    for args in (["audit", "verify"], ["audit", "tail"], ["status"], ["halt", "--reason", "x"]):
        ran = workbench(*args, "--home", str(home))
        assert ran.code == 1, (args, ran)
        assert "not a database" in ran.one_line_error(), args


# -- input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["approve", "p1", "--approver", "alice"],
        ["reject", "p1", "--approver", "alice", "--reason", "no"],
        ["resume", "--approver", "alice"],
        ["approver", "add", "alice"],
    ],
    ids=lambda a: a[0] if a[0] != "approver" else "approver add",
)
def test_no_terminal_for_a_passphrase_is_one_line(tmp_path: Path, args: list[str]) -> None:
    """A passphrase prompt without a terminal (cron, a pipe): exit 2, saying to use
    --passphrase-stdin; it never falls back to an echoing read."""
    home = create_home(tmp_path / "home")
    ran = workbench(*args, "--home", str(home))
    assert ran.code == 2
    assert "--passphrase-stdin" in ran.one_line_error()


def test_missing_files_are_one_line(tmp_path: Path) -> None:
    """A missing policies folder or bars file: exit 2, one line naming it."""
    home = create_home(tmp_path / "home")
    missing = tmp_path / "nope"
    for args in (["status", "--policy-dir", str(missing)], ["status", "--bars", str(missing)]):
        ran = workbench(*args, "--home", str(home))
        assert ran.code == 2 and str(missing) in ran.one_line_error(), args


def test_a_policies_folder_that_is_a_file_or_named_by_the_environment_is_one_line(
    tmp_path: Path,
) -> None:
    """--policy-dir naming a file, or $WORKBENCH_POLICY_DIR naming nothing: exit 2, one line
    saying which and where it came from, before anything is opened."""
    home = create_home(tmp_path / "home")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    ran = workbench("status", "--policy-dir", str(afile), "--home", str(home))
    said = f"error: {afile} is a file, not a policies folder (from --policy-dir)"
    assert ran.code == 2 and ran.one_line_error() == said
    nowhere = str(tmp_path / "nope")
    ran = workbench("proposals", "--home", str(home), env={"WORKBENCH_POLICY_DIR": nowhere})
    said = f"error: no policies folder at {nowhere} (from $WORKBENCH_POLICY_DIR)"
    assert ran.code == 2 and ran.one_line_error() == said


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["proposals", "--state", "BOGUS"], "'BOGUS' (choose from 'PROPOSED', 'SIMULATED'"),
        (["cancel", "p" * 5000], "is not a proposal id (letters, digits, _ and -; 1 to 64)"),
        (["approve", "p1; rm -rf /", "--approver", "alice"], "is not a proposal id"),
        (["approve", "p1", "--approver", "Alice"], "'Alice' is not an approver name"),
        (["approver", "add", "bad name"], "'bad name' is not an approver name"),
        (["audit", "tail", "-n", "-3"], "-3 is not between 1 and 1,000,000"),
        (["mcp", "--http-port", "99999"], "99999 is not a port (1 to 65535)"),
        (["status", "--broker", "live"], "invalid choice: 'live' (choose from 'paper', 'ibkr')"),
        (["mcp", "tokn"], "invalid choice: 'tokn' (choose from 'token')"),
    ],
    ids=["no command", "bogus state", "absurd id", "shell in an id", "capital approver",
         "space in a name", "negative count", "absurd port", "unknown broker", "unknown action"],
)  # fmt: skip
def test_wrong_missing_and_absurd_arguments_are_one_line_naming_the_help(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """A careless command line: exit 2, one short line saying what is wrong (the valid choices
    when there are some) and which --help to read; nothing is opened or created."""
    ran = workbench(*args, env={"WORKBENCH_HOME": str(tmp_path / "home")})
    line = ran.one_line_error()
    assert ran.code == 2 and says in line and line.endswith("--help`)"), line
    assert len(line) < 500 and ran.out == "" and not (tmp_path / "home").exists()


def test_an_unreachable_ib_gateway_is_one_line_without_the_librarys_log(tmp_path: Path) -> None:
    """`status`, `proposals` and `mcp` on IBKR with nothing listening on the port: exit 1, the
    workbench's own one line (where it looked, what to check), no ib_async log line."""
    home = create_home(tmp_path / "home")
    with socket.socket() as probe:  # a port nothing listens on (and not a live one)
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    for command in ("status", "proposals", "mcp"):
        ran = workbench(command, "--broker", "ibkr", "--port", port, "--home", str(home))
        if command == "mcp":  # its stdout is the protocol: the home line is on stderr
            home_line, rest = ran.err.split("\n", 1)
            assert home_line == f"home: {home}"
            ran = Ran(ran.code, ran.out, rest)
        line = ran.one_line_error()
        assert ran.code == 1 and line.startswith("refused: cannot reach IB Gateway/TWS"), line
        assert f"127.0.0.1:{port}" in line and "ib_async" not in ran.err


def test_ctrl_c_at_a_passphrase_prompt_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C while `resume` waits for its passphrase: exit 130, one line, nothing recorded."""
    home = create_home(tmp_path / "home")
    with subprocess.Popen(
        [WORKBENCH, "resume", "--approver", "alice", "--passphrase-stdin", "--home", str(home)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as waiting:  # fmt: skip
        assert waiting.stdout is not None
        assert waiting.stdout.readline() == f"home: {home}\n"  # the command has started
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=60)
    ran = Ran(waiting.returncode, out, err)
    assert ran.code == 130 and ran.one_line_error() == "interrupted (Ctrl-C)"
    with AuditLog(home / DB_NAME) as log:
        assert log.count() == 0


def test_a_reader_that_stops_early_gets_no_error_text(tmp_path: Path) -> None:
    """`workbench audit tail | head -1`: the reader closes the pipe; the command stops quietly
    (exit 1, as Python does on EPIPE) with nothing on stderr, no traceback."""
    home = home_with_events(tmp_path / "home", n=400)  # far more than a pipe holds
    with subprocess.Popen(
        [WORKBENCH, "audit", "tail", "-n", "400", "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as tail:  # fmt: skip
        assert tail.stdout is not None and tail.stderr is not None
        assert tail.stdout.readline() == f"home: {home}\n"
        tail.stdout.close()
        err = tail.stderr.read()
    assert tail.returncode == 1 and err == ""


def test_an_absurdly_long_name_is_refused_in_one_short_line(tmp_path: Path) -> None:
    """`halt --by` with 5,000 characters: exit 2, one line that quotes only the start of it;
    the trading state is unchanged."""
    home = create_home(tmp_path / "home")
    ran = workbench("halt", "--reason", "x", "--by", "b" * 5000, "--home", str(home))
    line = ran.one_line_error()
    assert (
        ran.code == 2 and line.startswith("error: by must be 1-200 characters") and len(line) < 150
    )
    with AuditLog(home / DB_NAME) as log:
        assert log.events(types=(EventType.KILL_SWITCH_ACTIVATED,)) == []


def test_oversized_and_deeply_nested_json_are_one_line(tmp_path: Path) -> None:
    """A signals file whose metadata is 100,000 brackets deep or 60 kB long: exit 2, one line,
    no RecursionError."""
    header = "ticker,weight,direction,is_propagated,atr_per_share,entry_price,metadata\n"
    for name, blob in (("deep", "[" * 100_000), ("big", '{""a"":""' + "x" * 60_000 + '""}')):
        signals = tmp_path / f"{name}.csv"
        signals.write_text(f'{header}SPY,0.05,BUY,false,2,101,"{blob}"\n')
        ran = workbench(
            "daily", "--home", str(tmp_path / "h"), "--proposer", "signals",
            "--signals", str(signals),
        )  # fmt: skip
        assert ran.code == 2, ran
        assert "metadata" in ran.one_line_error() and "RecursionError" not in ran.err
    assert not (tmp_path / "h").exists()
