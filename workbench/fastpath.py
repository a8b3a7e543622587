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
_FIELDS: dict[type[BaseModel], tuple[tuple[str, ...], frozenset[str]]] = {}
# BaseModel's own slots, set through their descriptors: what object.__setattr__ would do, sooner.
_SET_DICT = vars(BaseModel)["__dict__"].__set__
_SET_FIELDS_SET = vars(BaseModel)["__pydantic_fields_set__"].__set__
_SET_EXTRA = vars(BaseModel)["__pydantic_extra__"].__set__
_SET_PRIVATE = vars(BaseModel)["__pydantic_private__"].__set__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A frozen model from values computed out of already-validated inputs, not re-validated.

    For the hot path only. Every field must be given. It sets what ``model_construct`` sets,
    without its per-field loop; tests pin that the result equals a validated instance.
    """
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS.setdefault(cls, (tuple(cls.model_fields), frozenset(cls.model_fields)))
    order, fields = known
    # The callers give the fields in declaration order: comparing that tuple is the cheap check;
    # any other order falls back to comparing the sets.
    if tuple(values) != order and set(values) != fields:
        given = set(values)
        raise TypeError(f"{cls.__name__}: fields {sorted(fields ^ given)} do not match")
    obj = cls.__new__(cls)
    _SET_DICT(obj, values)
    _SET_FIELDS_SET(obj, set(fields))
    _SET_EXTRA(obj, None)
    _SET_PRIVATE(obj, None)
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
