"""What a manifest file expands to: entries (one job's raw values, with where they came from), grids, problems."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..jobs import describe
from .messages import Problem, _brief, _cut


@dataclass
class _Entry:
    """One job's raw values before validation, with where it came from."""

    values: dict[str, Any]
    origin: str
    coords: dict[str, Any]

    def label(self, index: int) -> str:
        return _label(index, self.origin, self.coords)


def _label(index: int, origin: str, coords: dict[str, Any]) -> str:
    """:func:`tasks.jobs.describe`, each swept value shortened as messages show values."""
    return describe(index, _cut(origin, 300), {_brief(key): _brief(value) for key, value in coords.items()})


@dataclass
class _Expansion:
    """A manifest file read: its name, its entries (made as they are taken), grids, swept keys, or its problems."""

    name: str
    entries: Iterator[_Entry] = field(default_factory=lambda: iter(()))
    grids: list = field(default_factory=list)
    swept: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
