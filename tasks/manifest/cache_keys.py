"""Cache keys for a row's values: rows whose values validate alike share one check."""

from __future__ import annotations

import math
from typing import Any


class _Unhashable(Exception):
    """A value with no cache key: its row is checked without the caches."""


_ATOMS = (str, int, bool, type(None))


def _frozen(value: Any) -> Any:
    """A cache key for a row's value: equal only for values that validate alike (types kept, -0.0 apart from 0.0)."""
    cls = value.__class__
    if cls is float:
        return (cls, value, math.copysign(1.0, value)) if value == 0 else (cls, value)
    if cls in _ATOMS:
        return (cls, value)
    if cls is list or cls is tuple:
        return (cls, tuple(_frozen(item) for item in value))
    if cls is dict:
        return (cls, tuple((_frozen(key), _frozen(item)) for key, item in value.items()))
    raise _Unhashable


#: Entries a row checker's cache keeps before it starts afresh: enough for every seed of a sweep's
#: combination (seeds vary fastest), while a sweep of 100k distinct combinations stays bounded in memory.
CACHE_ENTRIES = 4096


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()
    cache[key] = value


_PLAIN = frozenset({str, int, bool, float, type(None)})


def _key(values: dict[Any, Any]) -> Any:
    """A cache key for a row's values (None: they have none): equal only for values that validate alike."""
    types = tuple(map(type, values.values()))
    if _PLAIN.issuperset(types) and not (float in types and 0.0 in values.values()):
        return tuple(values.items()), types  # the common case, built in C: plain values, no float zero (-0.0 is 0.0)
    try:
        return tuple((key, _frozen(value)) for key, value in values.items())
    except _Unhashable:
        return None
