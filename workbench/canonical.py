"""Canonical JSON: sorted keys, Decimals as plain strings, UTC ISO times, ASCII, no NaN.

The same value gives the same bytes in any process and on any supported Python version, so the
sha256 of it (``digest``) can identify an intent or chain an audit event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel

from workbench.errors import CanonicalizationError


def decimal_str(value: Decimal) -> str:
    """A Decimal as a fixed-point string without exponent or trailing zeros ("1.5", "100")."""
    if not value.is_finite():
        raise CanonicalizationError(f"non-finite decimal {value!r}")
    if value == 0:
        return "0"
    # normalize() under the default context would round past 28 digits: give it enough precision.
    exact = Context(prec=max(len(value.as_tuple().digits), 1))
    return format(value.normalize(exact), "f")


def utc_iso(value: datetime) -> str:
    """An aware datetime as UTC ISO-8601 with microseconds and a Z suffix."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise CanonicalizationError(f"naive datetime {value.isoformat()} has no timezone")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _default(value: Any) -> Any:
    """What the JSON encoder calls for anything that is not a plain JSON value."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date | time):  # a calendar day, or a time of day (zone given beside it)
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted((to_plain(v) for v in value), key=dumps)
    raise CanonicalizationError(f"cannot write {type(value).__name__} as canonical JSON")


# One stdlib encoder, built once: sorted keys, compact separators, ASCII only, no NaN. Through its
# public ``encode`` CPython uses its C accelerator, so the text is the same as before, byte for byte
# (tests/test_canonical.py pins it).
_ENCODER = json.JSONEncoder(
    ensure_ascii=True,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
    default=_default,
)
_encode = _ENCODER.encode
# A JSON string literal of ``text`` (what ``dumps`` writes for a str, without the error mapping).
quote = _ENCODER.encode


def to_plain(value: Any) -> Any:
    """Turn models, Decimals, datetimes and enums into JSON-ready plain values."""
    return json.loads(dumps(value))


def dumps(value: Any) -> str:
    """Canonical JSON text of ``value``."""
    try:
        return _encode(value)
    except ValueError as exc:  # NaN or infinity among the floats
        raise CanonicalizationError(str(exc)) from exc
    except TypeError as exc:  # keys that are not strings, and the like
        if isinstance(exc, CanonicalizationError):
            raise
        raise CanonicalizationError(str(exc)) from exc


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    return hashlib.sha256(dumps(value).encode("ascii")).hexdigest()
