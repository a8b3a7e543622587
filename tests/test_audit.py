"""The audit log: hash chain, append-only triggers, the one write path and its queries."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import tool_called
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench import canonical, db
from workbench.audit import GENESIS_HASH, AuditLog, EventType, event_text
from workbench.clock import FixedClock
from workbench.errors import AuditError

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
RUN = {"submitted_without_broker_order": [], "broker": "test"}


def tool(**arguments: Any) -> dict[str, Any]:
    """A ToolCalled payload (a generic, unguarded event) made distinct by these arguments."""
    return tool_called("t", **arguments)


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(EventType.TOOL_CALLED, tool(i=i), actor="test", proposal_id=f"p{i % 3}")


def test_empty_log_head_is_genesis(log: AuditLog) -> None:
    """A new log has head (0, genesis) and verifies."""
    assert log.head() == (0, GENESIS_HASH)
    assert log.verify().ok


def test_appended_events_chain_and_verify(log: AuditLog) -> None:
    """Each event links to the previous hash and the whole chain verifies."""
    fill(log, 5)
    events = log.events()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    result = log.verify()
    assert result.ok and result.checked == 5 and result.head_hash == events[-1].hash
    assert log.head() == (5, events[-1].hash)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    payload=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    pid=st.none() | st.text(max_size=8),
    actor=st.text(min_size=1, max_size=8),
)
def test_event_text_is_canonical_json_of_the_event(
    payload: dict[str, Any], pid: str | None, actor: str
) -> None:
    """The fast event text equals canonical JSON of the event as a dict."""
    ts = "2026-11-18T15:30:00.000000Z"
    text = event_text(7, ts, "ToolCalled", pid, None, actor, canonical.dumps(payload))
    expected = canonical.dumps(
        {
            "actor": actor,
            "correlation_id": None,
            "payload": payload,
            "proposal_id": pid,
            "seq": 7,
            "ts": ts,
            "type": "ToolCalled",
        }
    )
    assert text == expected


def test_update_and_delete_are_refused(log: AuditLog) -> None:
    """Triggers abort any UPDATE or DELETE on the events table."""
    fill(log, 2)
    raw = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE events SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM events WHERE seq = 2")
    raw.close()
    assert log.verify().ok and log.head()[0] == 2


def tamper(path: Path, sql: str) -> None:
    raw = sqlite3.connect(path)
    raw.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;" + sql)
    raw.close()


def test_offline_payload_edit_makes_cli_verify_fail_naming_the_seq(
    home: Path, log: AuditLog
) -> None:
    """Dropping the triggers and editing one payload makes `workbench audit verify` exit 1 at it."""
    fill(log, 6)
    ok = subprocess.run(
        [WORKBENCH, "audit", "verify", "--home", str(home)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    tamper(log.path, """UPDATE events SET payload = '{"i":99,"tool":"t"}' WHERE seq = 4;""")
    bad = subprocess.run(
        [WORKBENCH, "audit", "verify", "--home", str(home)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "seq 4" in bad.stderr
    assert log.verify().first_bad_seq == 4


def test_offline_delete_is_detected(log: AuditLog) -> None:
    """Removing an event leaves a gap that verify reports at the next seq."""
    fill(log, 5)
    tamper(log.path, "DELETE FROM events WHERE seq = 3;")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 4


def test_offline_rehashed_event_breaks_the_next_link(log: AuditLog) -> None:
    """Recomputing one edited event's hash still breaks the link from its successor."""
    fill(log, 4)
    e = log.events()[1]
    forged_payload = '{"i":42,"tool":"t"}'
    text = event_text(e.seq, e.ts, e.type, e.proposal_id, e.correlation_id, e.actor, forged_payload)
    import hashlib

    forged = hashlib.sha256((e.prev_hash + text).encode()).hexdigest()
    tamper(
        log.path,
        f"UPDATE events SET payload = '{forged_payload}', hash = '{forged}' WHERE seq = 2;",
    )
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3


STATE_MIGRATIONS: list[db.Migration] = [
    ("001", ["CREATE TABLE widgets (name TEXT PRIMARY KEY, qty INTEGER NOT NULL)"])
]


def test_exception_in_transaction_leaves_neither_state_nor_event(log: AuditLog) -> None:
    """A fault inside the transaction helper rolls back the component's row and its event."""
    db.migrate(log.conn, "widgets", STATE_MIGRATIONS)
    with pytest.raises(RuntimeError, match="boom"), log.transaction() as tx:
        tx.execute("INSERT INTO widgets (name, qty) VALUES ('a', 1)")
        tx.append(EventType.TOOL_CALLED, tool(widget="a"), actor="test")
        raise RuntimeError("boom")
    assert log.conn.execute("SELECT COUNT(*) FROM widgets").fetchone()[0] == 0
    assert log.head() == (0, GENESIS_HASH)
    with log.transaction() as tx:
        tx.execute("INSERT INTO widgets (name, qty) VALUES ('a', 1)")
        tx.append(EventType.TOOL_CALLED, tool(widget="a"), actor="test")
    assert log.conn.execute("SELECT COUNT(*) FROM widgets").fetchone()[0] == 1
    assert log.head()[0] == 1 and log.verify().ok


def test_nested_transaction_joins_the_outer_one(log: AuditLog) -> None:
    """An inner transaction commits only with the outer one; a fault rolls back both."""
    with pytest.raises(ValueError), log.transaction():
        log.append(EventType.TOOL_CALLED, tool(n=1), actor="test")
        with log.transaction() as inner:
            inner.append(EventType.TOOL_CALLED, tool(n=2), actor="test")
        raise ValueError("outer fails")
    assert log.head()[0] == 0


def test_events_table_cannot_be_written_through_execute(log: AuditLog) -> None:
    """Component code cannot insert into the events table behind the chain's back."""
    with pytest.raises(AuditError), log.transaction() as tx:
        tx.execute("INSERT INTO events (seq) VALUES (1)")
    assert log.head()[0] == 0


def test_append_requires_a_known_type_and_an_actor(log: AuditLog) -> None:
    """Free-text event types and anonymous events are refused."""
    with pytest.raises(AuditError):
        log.append("Whatever", {}, actor="test")  # type: ignore[arg-type]
    with pytest.raises(AuditError):
        log.append(EventType.TOOL_CALLED, tool(), actor="")
    assert log.head()[0] == 0


def test_non_finite_payload_is_refused_and_nothing_written(log: AuditLog) -> None:
    """A payload with NaN cannot be audited, and the log stays unchanged."""
    with pytest.raises((TypeError, AuditError)):
        log.append(EventType.TOOL_CALLED, {**tool(), "arguments_chars": float("nan")}, actor="t")
    assert log.head()[0] == 0


def test_chain_survives_reopen(home: Path, clock: FixedClock) -> None:
    """Closing and reopening the file continues the same chain."""
    with AuditLog(home / "w.sqlite", clock) as first:
        fill(first, 3)
        head = first.head()
    with AuditLog(home / "w.sqlite", clock) as second:
        assert second.head() == head
        fill(second, 2)
        assert second.verify().ok and second.head()[0] == 5


def _append_many(path: str, n: int, start: Any, tag: str) -> None:
    start.wait()
    with AuditLog(Path(path)) as log:
        for i in range(n):
            log.append(EventType.TOOL_CALLED, tool(i=i, by=tag), actor=tag)


@pytest.mark.slow
def test_two_processes_appending_leave_one_chain(home: Path) -> None:
    """Two processes appending 1,000 events each at once leave 2,000 chained events."""
    path = home / "w.sqlite"
    AuditLog(path).close()
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_append_many, args=(str(path), 1000, start, f"w{k}")) for k in (1, 2)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    with AuditLog(path) as log:
        result = log.verify()
        assert result.ok and result.checked == 2000
        actors = log.frame()["actor"].value_counts().to_dict()
    assert actors == {"w1": 1000, "w2": 1000}


def test_query_helpers_return_frames(log: AuditLog, clock: FixedClock) -> None:
    """by_proposal, by_type and between select the right rows as DataFrames."""
    t0 = clock.now()
    log.append(EventType.TOOL_CALLED, tool(x=1), actor="a", proposal_id="p1")
    clock.advance(timedelta(minutes=5))
    log.append(EventType.RECONCILIATION_RUN, RUN, actor="a")
    clock.advance(timedelta(minutes=5))
    log.append(EventType.TOOL_CALLED, tool(x=3), actor="a", proposal_id="p1")
    assert log.by_proposal("p1")["seq"].tolist() == [1, 3]
    assert log.by_type(EventType.RECONCILIATION_RUN)["seq"].tolist() == [2]
    window = log.between(t0 + timedelta(minutes=1), t0 + timedelta(minutes=9))
    assert window["seq"].tolist() == [2]
    assert str(window["ts"].dt.tz) == "UTC"
    assert [p["detail"] for p in log.by_proposal("p1")["payload"]] == ['{"x": 1}', '{"x": 3}']


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=1, max_value=30))
def test_tail_returns_newest_in_order(log: AuditLog, n: int) -> None:
    """tail(n) gives the newest n events, oldest first."""
    fill(log, n)
    head = log.head()[0]
    assert [e.seq for e in log.tail(5)] == list(range(max(1, head - 4), head + 1))


# -- threads: a widget callback runs on another thread than the notebook's cells -----------------


def _in_thread(work: Any) -> Any:
    """Run ``work()`` on a new thread (as ipykernel runs a widget callback); return or raise."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed back to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the worker thread did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_log_opened_on_one_thread_reads_and_writes_from_another(log: AuditLog) -> None:
    """A log opened by the kernel's thread appends and reads on a callback's thread."""
    fill(log, 2)
    seen = _in_thread(lambda: (fill(log, 1), [e.seq for e in log.events()])[1])
    assert seen == [1, 2, 3]
    assert [e.seq for e in log.events()] == [1, 2, 3] and log.verify().ok


def test_a_transaction_is_never_joined_by_another_thread(log: AuditLog) -> None:
    """While one thread holds the write transaction, another thread's append waits for it to
    commit and then chains after it: one writer at a time, one chain."""
    started, done = threading.Event(), threading.Event()

    def other() -> None:
        started.set()
        log.append(EventType.TOOL_CALLED, tool(who="callback"), actor="test")
        done.set()

    with log.transaction() as tx:
        tx.append(EventType.TOOL_CALLED, tool(who="kernel"), actor="test")
        worker = threading.Thread(target=other)
        worker.start()
        assert started.wait(timeout=10)
        # The callback's append is blocked on SQLite's write lock, not joined to this transaction.
        assert not done.wait(timeout=0.5)
        assert log.count() == 1
    worker.join(timeout=60)
    assert done.is_set()
    events = log.events()
    assert [json.loads(e.payload["detail"])["who"] for e in events] == ["kernel", "callback"]
    assert log.verify().ok


def test_rolled_back_transaction_does_not_take_another_threads_event_with_it(
    log: AuditLog,
) -> None:
    """A failing transaction on one thread rolls back only its own events."""
    _in_thread(lambda: fill(log, 1))
    with pytest.raises(RuntimeError), log.transaction() as tx:
        tx.append(EventType.TOOL_CALLED, tool(i="doomed"), actor="test")
        raise RuntimeError("boom")
    assert log.count() == 1 and log.verify().ok


def test_two_threads_appending_leave_one_unbroken_chain(log: AuditLog) -> None:
    """Two threads appending at once leave every event, in one verified chain."""
    barrier = threading.Barrier(2)

    def writer(name: str) -> None:
        barrier.wait(timeout=10)
        for i in range(50):
            log.append(EventType.TOOL_CALLED, tool(i=i, who=name), actor="test")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("kernel", "callback")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    result = log.verify()
    assert result.ok and result.checked == 100
    assert [e.seq for e in log.events()] == list(range(1, 101))


def test_close_closes_every_threads_connection(home: Path, clock: FixedClock) -> None:
    """Closing the log from its owner closes the callback thread's connection too."""
    log = AuditLog(home / "workbench.sqlite", clock=clock)
    conn = _in_thread(lambda: log.conn)
    log.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with pytest.raises(AuditError, match="closed"):
        _in_thread(lambda: log.count())
