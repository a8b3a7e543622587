"""Hot-path helpers for frozen models: build one from validated parts, remember results per object.

Both rest on the models being frozen: a model built from already-validated values needs no second
validation, and a value derived from a frozen object stays true for as long as the object lives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M", bound=BaseModel)
_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A frozen model from values computed out of already-validated inputs, not re-validated.

    For the hot path only. Every field must be given. It sets what ``model_construct`` sets,
    without its per-field loop; tests pin that the result equals a validated instance.
    """
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS.setdefault(cls, frozenset(cls.model_fields))
    given = set(values)
    if given != fields:
        raise TypeError(f"{cls.__name__}: fields {sorted(fields ^ given)} do not match")
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", given)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def per_object(compute: Callable[[K], V], size: int) -> Callable[[K], V]:
    """``compute`` remembered per live object (by identity) for frozen objects that are reused.

    Up to ``size`` objects are held (strongly, so an id is never reused while remembered); when
    full the memory is dropped and starts afresh.
    """
    items: dict[int, tuple[K, V]] = {}

    def remembered(obj: K) -> V:
        hit = items.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = compute(obj)
        if len(items) >= size:
            items.clear()
        items[id(obj)] = (obj, value)
        return value

    return remembered
