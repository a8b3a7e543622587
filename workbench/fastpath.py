"""Hot-path helper for frozen objects: remember a derived value per object.

A value derived from a frozen object stays true for as long as the object lives. (Models built
from already-validated parts use pydantic's public ``model_construct``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


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
