"""Record a TWS API session (sanitised) and replay it: real sessions become regression tests.

A :class:`RecordingProxy` listens on 127.0.0.1 and forwards every connection to an upstream IB
Gateway/TWS (a real paper login, or the loopback gateway) byte for byte, while it writes a
*transcript*: JSON Lines, one entry per framed message with its connection number and direction
(``c2s``/``s2c``), plus ``open``, ``refused`` and ``closed by client|server`` per connection.
Before anything is written the :class:`Sanitiser` masks account ids (every ``DU…``/``U…``-style id
becomes ``DU0000001``, ``DU0000002``, … in order of appearance, in both directions) and the
account's amounts (account values and summaries with a currency, portfolio value, cost and P&L,
position cost, realised P&L of commission reports: each replaced by a number derived from a key
made for this recording and then forgotten; zero and "unset" stay as they are). Prices, quantities,
ids and times are kept.

A :class:`ReplayServer` serves a transcript: its n-th connection plays the n-th recorded one. It
expects the client's messages in the recorded order (the handshake included) and, after each, sends
what the server sent before the client's next message (or closes, where the server closed in the
recording). A message that differs from the recording is logged as an error and the connection
closed: a client whose behaviour changed fails its replay. No ib_async here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Self

from workbench.testing.wire import API_PREFIX, UNSET_DOUBLE, frame, split_frames

log = logging.getLogger("workbench.testing.gateway")
FORMAT = 1
ACCOUNT = re.compile(r"\b(?:DU|DF|U|F)\d{3,12}\b")
CALL_TIMEOUT = 10.0
# s2c message id -> indexes of amount fields (accountValue/summary: only with a currency)
AMOUNTS: dict[str, tuple[int, ...]] = {"7": (15, 16, 17, 18), "61": (15,), "59": (5,)}
VALUED = {"6": (3, 4), "63": (4, 5), "73": (5, 6)}  # id -> (value index, currency index)


@dataclass
class Sanitiser:
    """Masks account ids and amounts (see the module's docstring); one per recording."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    accounts: dict[str, str] = field(default_factory=dict)

    def account(self, found: re.Match[str]) -> str:
        real = found.group(0)
        if real not in self.accounts:
            self.accounts[real] = f"DU{len(self.accounts) + 1:07d}"
        return self.accounts[real]

    def amount(self, text: str) -> str:
        try:
            value = Decimal(text)
        except InvalidOperation:
            return text
        if text in ("", UNSET_DOUBLE) or not value.is_finite() or value == 0:
            return text
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).digest()
        masked = Decimal(int.from_bytes(digest[:6], "big") % 10_000_000) / 100
        return str(-masked if value < 0 else masked)

    def fields(self, direction: str, fields: list[str]) -> list[str]:
        out = [ACCOUNT.sub(self.account, f) for f in fields]
        if direction != "s2c" or not out:
            return out
        kind = out[0]
        for i in AMOUNTS.get(kind, ()):
            if i < len(out):
                out[i] = self.amount(out[i])
        if kind in VALUED:
            value, currency = VALUED[kind]
            if currency < len(out) and out[currency]:
                out[value] = self.amount(out[value])
        return out

    def text(self, raw: str) -> str:
        """Any text (e.g. a recorded session's audit events) with the same account masking."""
        return ACCOUNT.sub(self.account, raw)


class Transcript:
    """A transcript file being written (thread-safe, one JSON line per entry, flushed)."""

    def __init__(self, path: Path, sanitiser: Sanitiser) -> None:
        self.sanitiser = sanitiser
        self._lock = threading.Lock()
        self._file = path.open("w", encoding="utf-8")
        self._write({"transcript": FORMAT, "sanitised": "account ids and amounts masked"})

    def _write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def event(self, conn: int, what: str) -> None:
        self._write({"conn": conn, "event": what})

    def message(self, conn: int, direction: str, fields: list[str]) -> None:
        clean = self.sanitiser.fields(direction, fields)
        self._write({"conn": conn, "dir": direction, "fields": clean})

    def close(self) -> None:
        with self._lock:
            self._file.close()


def load(path: Path) -> dict[int, list[dict[str, Any]]]:
    """A transcript's entries by connection, in order; ValueError when it is not one."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0]) if lines else {}
    if header.get("transcript") != FORMAT:
        raise ValueError(f"{path} is not a TWS transcript (format {FORMAT})")
    script: dict[int, list[dict[str, Any]]] = {}
    for line in lines[1:]:
        entry = json.loads(line)
        script.setdefault(int(entry["conn"]), []).append(entry)
    return script


class _Server:
    """An asyncio server on its own thread (start/stop), like the loopback gateway."""

    def __init__(self, port: int) -> None:
        self.host, self.port = "127.0.0.1", port
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> _Server:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(CALL_TIMEOUT) or self._server is None:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        return self

    def _main(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self._server = self.loop.run_until_complete(
                asyncio.start_server(self.serve, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError:
            ready.set()
            return
        ready.set()
        self.loop.run_forever()
        self._server.close()
        self.loop.run_until_complete(self._server.wait_closed())
        self.loop.close()

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CALL_TIMEOUT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class _Frames:
    """Splits one direction's bytes into messages (the client's ``API\\0`` prefix first)."""

    def __init__(self, prefixed: bool) -> None:
        self.buffer = bytearray()
        self.prefixed = prefixed

    def feed(self, data: bytes) -> list[list[str]]:
        self.buffer += data
        if self.prefixed:
            if len(self.buffer) < len(API_PREFIX):
                return []
            del self.buffer[: len(API_PREFIX)]
            self.prefixed = False
        return split_frames(self.buffer)


class RecordingProxy(_Server):
    """Forwards each connection to ``upstream`` and writes the sanitised transcript."""

    def __init__(self, path: Path, upstream: tuple[str, int], port: int = 0) -> None:
        super().__init__(port)
        self.upstream = upstream
        self.transcript = Transcript(path, Sanitiser())
        self._count = 0

    def stop(self) -> None:
        super().stop()
        self.transcript.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        conn = self._count
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.transcript.event(conn, "refused")
            writer.close()
            return
        self.transcript.event(conn, "open")
        pumps = [
            self._pump(conn, "c2s", reader, up_writer, _Frames(prefixed=True)),
            self._pump(conn, "s2c", up_reader, writer, _Frames(prefixed=False)),
        ]
        tasks = [asyncio.ensure_future(p) for p in pumps]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        by = "client" if tasks[0] in done else "server"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()
        self.transcript.event(conn, f"closed by {by}")

    async def _pump(
        self, conn: int, direction: str, source: asyncio.StreamReader,
        sink: asyncio.StreamWriter, frames: _Frames,
    ) -> None:  # fmt: skip
        while data := await source.read(65536):
            for fields in frames.feed(data):
                self.transcript.message(conn, direction, fields)
            sink.write(data)
            await sink.drain()


class ReplayServer(_Server):
    """Serves a transcript (see the module's docstring); ``problems`` lists every mismatch."""

    def __init__(self, path: Path, port: int = 0) -> None:
        super().__init__(port)
        self.script = load(path)
        self.problems: list[str] = []
        self._count = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        try:
            await self._replay(self._count, reader, writer)
        except (ConnectionError, OSError):  # the client went away: nothing more to play
            writer.close()

    async def _replay(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        entries = [e for e in self.script.get(conn, []) if e.get("event") != "open"]
        if not entries or entries[0].get("event") == "refused":
            writer.close()
            return
        frames, at = _Frames(prefixed=True), 0
        at = self._play(entries, at, writer)
        while at < len(entries) and (data := await reader.read(65536)):
            for fields in frames.feed(data):
                expected = entries[at]
                if expected.get("dir") != "c2s" or expected["fields"] != fields:
                    self._mismatch(conn, expected, fields)
                    writer.close()
                    return
                at = self._play(entries, at + 1, writer)
                if at < len(entries) and entries[at].get("event") == "closed by server":
                    await writer.drain()
                    writer.close()
                    return
        writer.close()

    def _play(self, entries: list[dict[str, Any]], at: int, writer: asyncio.StreamWriter) -> int:
        """Send the server's messages from ``at`` up to the client's next one; its index."""
        while at < len(entries) and entries[at].get("dir") == "s2c":
            fields = entries[at]["fields"]
            writer.write(frame(fields))
            at += 1
        return at

    def _mismatch(self, conn: int, expected: dict[str, Any], got: list[str]) -> None:
        text = f"replay: connection {conn} expected {expected}, the client sent {got}"
        self.problems.append(text)
        log.error(text)
