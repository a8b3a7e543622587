"""Canonical JSON: sorted keys, Decimals as plain strings, UTC ISO times, ASCII, no NaN.

The same value gives the same bytes in any process and on any supported Python version, so the
sha256 of it (``digest``) can identify an intent or chain an audit event.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
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
    text = format(value.normalize(), "f")
    return text


def utc_iso(value: datetime) -> str:
    """An aware datetime as UTC ISO-8601 with microseconds and a Z suffix."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise CanonicalizationError(f"naive datetime {value.isoformat()} has no timezone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_plain(value: Any) -> Any:
    """Turn models, Decimals, datetimes and enums into JSON-ready plain values."""
    if isinstance(value, BaseModel):
        return to_plain(value.model_dump(mode="python"))
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalizationError(f"non-finite float {value!r}")
        return value
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_key(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_plain(v) for v in value]
        return sorted(items, key=dumps) if isinstance(value, set | frozenset) else items
    raise CanonicalizationError(f"cannot write {type(value).__name__} as canonical JSON")


def _key(key: Any) -> str:
    if isinstance(key, Enum):
        key = key.value
    if not isinstance(key, str):
        raise CanonicalizationError(f"JSON object keys must be strings, got {key!r}")
    return key


def dumps(value: Any) -> str:
    """Canonical JSON text of ``value``."""
    return json.dumps(
        to_plain(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    return hashlib.sha256(dumps(value).encode("ascii")).hexdigest()
