"""Problems and how they read: every value a message echoes is shortened (:func:`_shown`)."""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..models.base import input_fields
from .limits import MAX_YAML_DEPTH, MiB

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..models import ModelRef

#: Lines of problems a ManifestError shows (identical problems share a line); the rest are counted.
MAX_PROBLEM_LINES = 50
#: Characters of a user's value a message shows (:func:`_shown`).
SHOWN_CHARS = 100


@dataclass
class Problem:
    where: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ManifestError(InputError):
    """Everything wrong with a manifest, one line per problem (identical problems grouped), at most 50 lines."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(self._format())

    def _format(self) -> str:
        grouped: dict[tuple[str | None, str], list[str]] = {}
        for problem in self.problems:
            grouped.setdefault((problem.key, problem.message), []).append(problem.where)
        count = len(self.problems)
        lines = [f"{_cut(str(self.path), 300)}: {count} problem{'s' if count != 1 else ''}, nothing rendered"]
        shown = 0
        for (_, message), places in itertools.islice(grouped.items(), MAX_PROBLEM_LINES):
            named = "; ".join(places[:3]) + (f"; and {len(places) - 3} more" if len(places) > 3 else "")
            lines.append(_cut(f"  - {named}: {message}", 1000))
            shown += len(places)
        if shown < count:
            lines.append(f"  ... and {count - shown} more problem{'s' if count - shown != 1 else ''}")
        return "\n".join(lines)


def _shown(value: Any) -> str:
    """How every message echoes a value the user gave: its repr, cut to about 100 characters.

    Never builds more than that of the repr (an alias-expanded structure or a 100 MB string
    costs no more than a short one); a cut repr ends with "… (N chars)" (N items for a container).
    """
    text = _bounded_repr(value, SHOWN_CHARS + 1)
    if len(text) <= SHOWN_CHARS:
        return text
    if isinstance(value, (str, bytes)):
        size = f"{len(value):,} chars"
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        size = f"{len(value):,} items"
    else:
        size = "cut"
    return f"{text[:SHOWN_CHARS]}… ({size})"


def _brief(value: Any) -> Any:
    """A value as a label shows it (``str``): itself when short, else shortened like :func:`_shown`."""
    if isinstance(value, str):
        return value if len(value) <= SHOWN_CHARS else f"{value[:SHOWN_CHARS]}… ({len(value):,} chars)"
    if value is None or isinstance(value, (bool, float)) or (isinstance(value, int) and value.bit_length() < 300):
        return value
    return _shown(value)


def _cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """A message's text (an exception's, a path) at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


class _Full(Exception):
    """The bounded repr has its characters."""


def _bounded_repr(value: Any, budget: int) -> str:
    """``repr(value)`` for plain data (what YAML, CSV and pydantic hand over), stopped after ``budget`` characters."""
    parts: list[str] = []
    used = 0

    def emit(text: str) -> None:
        nonlocal used
        parts.append(text)
        used += len(text)
        if used > budget:
            raise _Full

    def walk(item: Any, depth: int) -> None:
        if isinstance(item, (str, bytes)):
            emit(repr(item[: budget + 1]))
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            emit(repr(item))
        elif isinstance(item, int):
            emit(repr(item) if item.bit_length() < 300 else f"<an integer of {item.bit_length() * 0.30103:.0f} digits>")
        elif isinstance(item, (list, tuple, dict, set, frozenset)):
            if depth > MAX_YAML_DEPTH:
                emit("...")
                return
            if isinstance(item, (set, frozenset)) and not item:
                emit(f"{type(item).__name__}()")
                return
            opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(item), "{}")
            if isinstance(item, frozenset):
                opening, closing = "frozenset({", "})"
            emit(opening)
            pairs = item.items() if isinstance(item, dict) else ((element, None) for element in item)
            for index, (key, element) in enumerate(pairs):
                if index:
                    emit(", ")
                walk(key, depth + 1)
                if isinstance(item, dict):
                    emit(": ")
                    walk(element, depth + 1)
            if isinstance(item, tuple) and len(item) == 1:
                emit(",")
            emit(closing)
        else:
            emit(_cut(repr(item), budget))

    try:
        walk(value, 0)
    except _Full:
        pass
    except (RecursionError, ValueError):  # an object whose repr fails: say what it is
        return f"<{type(value).__name__}>"
    return "".join(parts)


def _suggest(key: Any, allowed: Any) -> str:
    if not isinstance(key, str) or len(key) > SHOWN_CHARS:
        return ""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _mib(size: int) -> str:
    if size < MiB:
        return f"{size:,} bytes"
    return f"{size / MiB:,.1f} MiB" if size % MiB else f"{size // MiB:,} MiB"


def _jobs(count: float) -> str:
    return f"{count:,}" if count < 10**15 else "more than 10^15"


def _some(names: list[str], count: int = 10) -> str:
    """Up to ``count`` names, shortened, and how many more."""
    shown = ", ".join(str(_brief(name)) for name in names[:count])
    return shown + (f" and {len(names) - count:,} more" if len(names) > count else "")


def _pydantic_problem(error: dict, model: type[BaseModel], ref: ModelRef | None = None) -> tuple[Any, str]:
    """One pydantic error as (key, message)."""
    if not error["loc"]:  # a check across fields (a model validator): its message says it all
        return None, _cut(error["msg"].removeprefix("Value error, "), 500)
    key = str(error["loc"][0])
    field_info = model.model_fields.get(key)
    hint = f" ({field_info.description})" if field_info is not None and field_info.description else ""
    if error["type"] == "missing":
        kind = input_fields(model).get(key) if ref is not None else None
        if kind == "image":
            return key, f"missing {key!r}: {ref.name} is an image-to-video model; add `{key}: path/to/image.png`"
        if kind == "video":
            return key, f"missing {key!r}: {ref.name} is a video-to-video model; add `{key}: path/to/video.mp4`"
        return key, f"missing {key!r}{hint}"
    if error["type"] == "extra_forbidden":  # reported as an unknown key already
        return key, f"unknown key {key!r}"
    return key, f"{key}={_shown(error.get('input'))}: {_cut(error['msg'], 500)}{hint}"
