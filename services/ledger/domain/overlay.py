"""Copy-on-write what-if views over the objects of a customer's book.

The planner needs "the open amount of every invoice, as if ..." but touches only a few of
them per event: copying every value up front made each event cost as much as the whole
book. These views store only what the planner changed and read everything else from the
object itself, at the time of the read (the book does not change while a plan is made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, KeysView, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

_MISSING = object()


class Overlay(MutableMapping[K, V], Generic[K, T, V]):
    """A mapping ``key -> read(base[key])`` for the keys of ``base`` that ``include`` admits,
    with writes kept in the overlay. Deleting is not supported (the planner never does)."""

    __slots__ = ("_base", "_changed", "_include", "_read")

    def __init__(
        self, base: Mapping[K, T], read: Callable[[T], V], include: Callable[[T], bool] | None = None,
    ) -> None:
        self._base: Mapping[Any, T] = base  # Any: ``in`` asks about any object
        self._read = read
        self._include = include
        self._changed: dict[K, V] = {}

    def __getitem__(self, key: K) -> V:
        value = self._changed.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        item = self._base[key]  # KeyError for an unknown key, as a plain dict would raise
        if self._include is not None and not self._include(item):
            raise KeyError(key)
        return self._read(item)

    def __setitem__(self, key: K, value: V) -> None:
        self._changed[key] = value

    def written(self) -> KeysView[K]:
        """The keys whose value the overlay holds (written since it was made)."""
        return self._changed.keys()

    def __delitem__(self, key: K) -> None:
        raise TypeError("an overlay's keys cannot be deleted")

    def __contains__(self, key: object) -> bool:
        if key in self._changed:
            return True
        item = self._base.get(key, _MISSING)
        return item is not _MISSING and (self._include is None or self._include(item))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        include = self._include
        for key, item in self._base.items():
            if key in self._changed or include is None or include(item):
                yield key
        yield from (key for key in self._changed if key not in self._base)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Extended(Mapping[K, T]):
    """``base`` with one item added or replaced, as ``{**base, key: value}`` but without
    copying ``base`` (same keys, same order, same values)."""

    __slots__ = ("_base", "_key", "_value")

    def __init__(self, base: Mapping[K, T], key: K, value: T) -> None:
        self._base = base
        self._key = key
        self._value = value

    def __getitem__(self, key: K) -> T:
        if key == self._key:
            return self._value
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key == self._key or key in self._base

    def get(self, key: K, default: T | None = None) -> T | None:  # type: ignore[override]
        if key == self._key:
            return self._value
        return self._base.get(key, default)

    def __iter__(self) -> Iterator[K]:
        yield from self._base
        if self._key not in self._base:
            yield self._key

    def __len__(self) -> int:
        return len(self._base) + (self._key not in self._base)


class SetOverlay(Generic[K, T]):
    """The set of keys of ``base`` whose object satisfies ``member``, with additions and
    removals kept in the overlay (``add``, ``discard`` and ``in`` are what the planner uses)."""

    __slots__ = ("_added", "_base", "_member", "_removed")

    def __init__(self, base: Mapping[K, T], member: Callable[[T], bool]) -> None:
        self._base: Mapping[Any, T] = base
        self._member = member
        self._added: set[K] = set()
        self._removed: set[K] = set()

    def __contains__(self, key: object) -> bool:
        if key in self._added:
            return True
        if key in self._removed:
            return False
        item = self._base.get(key, _MISSING)
        return item is not _MISSING and self._member(item)  # type: ignore[arg-type]

    def add(self, key: K) -> None:
        self._added.add(key)
        self._removed.discard(key)

    def discard(self, key: K) -> None:
        self._removed.add(key)
        self._added.discard(key)

    def __iter__(self) -> Iterator[K]:
        for key, item in self._base.items():
            if key in self._added or (key not in self._removed and self._member(item)):
                yield key
        yield from (key for key in self._added if key not in self._base)

    def __len__(self) -> int:
        return sum(1 for _ in self)
