"""One client connection: the handshake, framing, pacing and its subscriptions."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.testing.wire import (
    API_PREFIX,
    Message,
    choose_server_version,
    connection_time,
    frame,
    parse_version_range,
    split_frames,
)

if TYPE_CHECKING:
    from workbench.testing.core import Core

log = logging.getLogger("workbench.testing.gateway")


@dataclass(slots=True)
class Stream:
    """A streaming market-data subscription (reqMktData without snapshot)."""

    symbol: str
    delayed: bool
    data_type: int


class Session(asyncio.Protocol):
    """Server side of one socket; stages: prefix → version → start → ready → closed."""

    def __init__(self, core: Core, conn_id: int) -> None:
        self.core = core
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.stage = "prefix"
        self.version = 0
        self.client_id: int | None = None
        self.market_data_type = 1
        self.streams: dict[int, Stream] = {}
        self.positions_sub = False
        self.account_sub = False
        self.multi_subs: set[int] = set()
        self._recent: deque[float] = deque()

    @property
    def closed(self) -> bool:
        return self.stage == "closed"

    @property
    def ready(self) -> bool:
        return self.stage == "ready"

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small replies go out at once (no Nagle delay)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.core.on_connect(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buffer += data
        if self.stage == "prefix":
            if len(self.buffer) < len(API_PREFIX):
                return
            if not self.buffer.startswith(API_PREFIX):
                log.error("connection %d did not open with API\\0; closing it", self.conn_id)
                self.close()
                return
            del self.buffer[: len(API_PREFIX)]
            self.stage = "version"
        try:
            frames = split_frames(self.buffer)
        except ValueError as exc:
            log.error("connection %d: %s; closing it", self.conn_id, exc)
            self.close()
            return
        for fields in frames:
            if self.closed:
                return
            try:
                self._on_frame(fields)
            except Exception:
                log.exception("connection %d: the gateway failed on %r", self.conn_id, fields[:3])
                self.close()
                return

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    # -- stages --------------------------------------------------------------------------------

    def _on_frame(self, fields: list[str]) -> None:
        if self.stage == "version":
            self._handshake(fields)
        elif self.stage == "start":
            self.core.on_start(self, fields)
        elif self.ready:
            self.core.on_request(self, fields)

    def _handshake(self, fields: list[str]) -> None:
        text = fields[0] if fields else ""
        self.core.log_handshake(self, text)
        try:
            client = parse_version_range(text)
        except ValueError as exc:
            log.error("connection %d: %s; closing it", self.conn_id, exc)
            self.close()
            return
        version = choose_server_version(client, self.core.config.server_version)
        if version is None:
            log.error("connection %d: no common server version with %s", self.conn_id, text)
            self.close()
            return
        self.version = version
        self.stage = "start"
        self.write_raw((str(version), connection_time(self.core.clock.now())))

    def accept(self, client_id: int) -> None:
        self.client_id = client_id
        self.stage = "ready"

    # -- pacing --------------------------------------------------------------------------------

    def over_pace(self, limit: int | None) -> bool:
        """True when this message would exceed ``limit`` messages in the last second."""
        if limit is None:
            return False
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if len(self._recent) >= limit:
            return True
        self._recent.append(now)
        return False

    # -- output --------------------------------------------------------------------------------

    def write_raw(self, fields: Sequence[str]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(list(fields)))

    def send(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            if self.closed:
                return
            self.core.log_sent(self, msg)
            self.write_raw(msg.fields)

    def close(self) -> None:
        """Flush what was written and close; no more messages leave after this call."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.stage = "closed"
        self.core.on_disconnect(self)
