"""Exposure per symbol after one trade: the portfolio's exposures with one symbol replaced.

A simulation changes one symbol's exposure; copying the other few hundred per intent was most of
the simulator's cost. :class:`ExposureAfter` is a read-only mapping over the portfolio's exposures
(shared, built once per snapshot and never mutated) with the traded symbol overridden. It reads,
compares and iterates like the full dict it stands for, in the same key order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal

_set = object.__setattr__


class ExposureAfter(Mapping[str, Decimal]):
    """``{**base, symbol: exposure}`` without the copy. ``base`` must never be mutated."""

    __slots__ = ("_base", "_exposure", "_symbol")
    _base: Mapping[str, Decimal]
    _symbol: str
    _exposure: Decimal

    def __init__(self, base: Mapping[str, Decimal], symbol: str, exposure: Decimal) -> None:
        _set(self, "_base", base)
        _set(self, "_symbol", symbol)
        _set(self, "_exposure", exposure)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self) -> tuple[type[ExposureAfter], tuple[Mapping[str, Decimal], str, Decimal]]:
        """Copies and pickles are rebuilt through ``__init__`` (attributes cannot be set)."""
        return (type(self), (self._base, self._symbol, self._exposure))

    def __getitem__(self, symbol: str) -> Decimal:
        if symbol == self._symbol:
            return self._exposure
        return self._base[symbol]

    def __contains__(self, symbol: object) -> bool:
        return symbol == self._symbol or symbol in self._base

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        if self._symbol not in self._base:
            yield self._symbol

    def __len__(self) -> int:
        return len(self._base) + (self._symbol not in self._base)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExposureAfter):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like the dict it stands for

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Decimal]:
        """The full dict, in the same key order as ``{**base, symbol: exposure}``."""
        full = dict(self._base)
        full[self._symbol] = self._exposure
        return full
