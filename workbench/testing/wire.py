"""The TWS socket framing, seen from the server side.

A message is a 4-byte big-endian length followed by UTF-8 fields, each ended by ``\\0``. The client
opens with ``API\\0`` and one framed ``"vMIN..MAX"`` string; the server answers with one frame of
two fields (its version and its connection time). Empty field = unset; booleans are ``1``/``0``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

API_PREFIX = b"API\0"
MIN_SERVER_VERSION = 176
MAX_SERVER_VERSION = 178
MAX_FRAME = 16 * 1024 * 1024
UNSET_DOUBLE = "1.7976931348623157E308"

Field = str | int | Decimal | bool | None

_VERSION_RANGE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?:\s.*)?$")


@dataclass(frozen=True, slots=True)
class Message:
    """One outgoing message: its name (the ib_async wrapper method it feeds) and its fields."""

    name: str
    fields: tuple[str, ...]


def fmt(value: Field) -> str:
    """One field as the wire writes it: ``""`` for None, ``1``/``0`` for bools, plain decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    text = str(value)
    if "\0" in text:
        raise ValueError("a field cannot contain NUL")
    return text


def message(name: str, *fields: Field) -> Message:
    """A message with its fields formatted for the wire."""
    return Message(name, tuple(fmt(f) for f in fields))


def frame(fields: tuple[str, ...] | list[str]) -> bytes:
    """Length-prefixed bytes for one message."""
    body = b"".join(f.encode() + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


def split_frames(buffer: bytearray) -> list[list[str]]:
    """Remove and return every complete frame in ``buffer`` (split into fields)."""
    frames: list[list[str]] = []
    while len(buffer) >= 4:
        (size,) = struct.unpack(">I", buffer[:4])
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
        if len(buffer) < 4 + size:
            break
        body = bytes(buffer[4 : 4 + size])
        del buffer[: 4 + size]
        fields = body.decode("utf-8", errors="replace").split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        frames.append(fields)
    return frames


def parse_version_range(text: str) -> tuple[int, int]:
    """``"v157..178"`` (maybe followed by connect options) → (157, 178)."""
    match = _VERSION_RANGE.match(text.strip())
    if not match:
        raise ValueError(f"not a client version range: {text!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low > high:
        raise ValueError(f"empty client version range: {text!r}")
    return low, high


def choose_server_version(client: tuple[int, int], configured: int | None) -> int | None:
    """The version to speak: the configured one, or min(client max, 178); None if impossible."""
    low, high = client
    version = configured if configured is not None else min(high, MAX_SERVER_VERSION)
    if version < MIN_SERVER_VERSION or not low <= version <= high:
        return None
    return version


def connection_time(now: datetime) -> str:
    """The handshake's connection time, ``YYYYMMDD HH:MM:SS UTC``."""
    return now.strftime("%Y%m%d %H:%M:%S") + " UTC"


def parse_decimal(text: str) -> Decimal | None:
    """A numeric field: None when empty or IB's "unset" double; ValueError when not finite."""
    if text == "" or text == UNSET_DOUBLE or text.upper() == "1.7976931348623157E+308":
        return None
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_int(text: str, default: int = 0) -> int:
    """An integer field (empty → ``default``); ValueError when not an integer."""
    return default if text == "" else int(text)


def parse_bool(text: str) -> bool:
    """A boolean field: ``1``/``0`` (empty → False)."""
    return text not in ("", "0")
