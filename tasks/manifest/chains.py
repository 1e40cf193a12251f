"""A manifest's entries -> its jobs; rows that take other rows' videos (``video: "@name"``) after their sources.

Such a row is expanded once per source job it pairs with (:func:`_pairings`), counted before any
is made.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs import Job
from .entries import _Entry, _label
from .limits import Limits
from .messages import ManifestError, Problem, _brief, _cut, _jobs, _shown, _some
from .rows import _RowChecker


def _make_jobs(entries: Iterable[_Entry], checker: _RowChecker, path: Path, limits: Limits) -> list[Job]:
    """Each entry checked into its job (problems go to ``checker.problems``), numbered in the order made;
    the jobs another job takes as input marked ``keep_frames``.

    ManifestError at once where rows that take other rows' videos would pass ``limits.max_jobs``.
    """
    jobs: list[Job] = []
    seen: dict[str, Job] = {}
    by_id: dict[str, _Sources] = {}  # a row's `id` -> its jobs, for rows that take their videos
    made = [0]  # entries checked so far: the next one's index

    def add(entry: _Entry) -> None:
        index = made[0]
        made[0] += 1
        job = checker.check(index, entry)
        if job is None:
            return
        if job.job_id in seen:
            first = _label(*_place(seen[job.job_id]))
            checker.problems.append(
                Problem(entry.label(index), None, f"renders the same video as {first}; change a value or drop one")
            )
        seen.setdefault(job.job_id, job)
        jobs.append(job)
        if isinstance(entry.values.get("id"), str):
            by_id.setdefault(entry.values["id"], _Sources()).add(job)

    # Rows that take another row's videos (`video: "@name"`) are expanded once per source job,
    # after their sources, so a chain (render, then upscale) orders itself.
    waiting: list[tuple[_Entry, dict[str, str]]] = []
    for entry in entries:
        refs = _references(entry)
        if refs:
            waiting.append((entry, refs))
        else:
            add(entry)
    while waiting:
        pending_ids = {entry.values.get("id") for entry, _ in waiting}
        ready = [(entry, refs) for entry, refs in waiting if not set(refs.values()) & pending_ids]
        waiting = [(entry, refs) for entry, refs in waiting if set(refs.values()) & pending_ids]
        if not ready:
            checker.problems += [
                Problem(
                    entry.origin,
                    _brief(key),
                    f"{_brief(key)}={_shown('@' + name)}: rows that take each other's videos form a cycle",
                )
                for entry, refs in waiting
                for key, name in refs.items()
            ]
            break
        for entry, refs in ready:
            missing = {key: name for key, name in refs.items() if name not in by_id}
            if missing:
                known = _some(sorted(by_id)) or "none"
                checker.problems += [
                    Problem(
                        entry.origin,
                        _brief(key),
                        f"{_brief(key)}={_shown('@' + name)}: no valid row has `id: {_brief(name)}`; ids: {known}",
                    )
                    for key, name in missing.items()
                ]
                continue
            pairs = _pairings(entry, [by_id[name] for name in refs.values()])  # counted before any is made
            if made[0] + pairs.count > limits.max_jobs:
                raise ManifestError(path, [_too_many_chained(entry, made[0], pairs.count, limits)])
            for sources in pairs:
                values, coords = dict(entry.values), {}
                for key, source in zip(refs, sources):
                    values[key] = f"@{source.job_id}"
                    coords.update(source.coords)
                origins = ", ".join(source.origin for source in sources)
                add(_Entry(values, _cut(f"{entry.origin} <- {origins}", 300), {**coords, **entry.coords}))
            if not pairs.count:
                wanted = ", ".join(f"{_brief(key)}={_brief(value)}" for key, value in entry.coords.items())
                names = ", ".join(f"@{_brief(name)}" for name in refs.values())
                checker.problems.append(Problem(entry.origin, None, f"no job of {names} has this row's {wanted}"))
    # a job whose video another job takes keeps its frames losslessly beside its mp4, for that job to read
    fed = {source for job in jobs for source in job.depends_on}
    if fed:
        jobs = [job.model_copy(update={"keep_frames": True}) if job.job_id in fed else job for job in jobs]
    return jobs


def _place(job: Job) -> tuple[int, str, dict[str, Any]]:
    return job.index, job.origin, job.coords


def _references(entry: _Entry) -> dict[str, str]:
    """The keys of a row that name another row's output (``"@name"``), and those names."""
    return {
        key: value[1:] for key, value in entry.values.items() if isinstance(value, str) and value.startswith("@")
    }


def _too_many_chained(entry: _Entry, made: int, more: int, limits: Limits) -> Problem:
    return Problem(
        entry.origin,
        None,
        f"the manifest expands to more than {limits.max_jobs:,} jobs (the limit): {made:,} before this row, which takes"
        f" other rows' videos and adds {_jobs(more)} (one per source job it pairs with); split the manifest, or raise"
        " the limit with --max-jobs N",
    )


class _Sources:
    """The valid jobs of one row ``id``, indexed by the sweep values a taking row pairs them on."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._groups: dict[frozenset, list[int]] = {}  # the keys of a job's coords -> positions of those jobs
        self._index: dict[tuple, dict[Any, list[int]]] = {}

    def add(self, job: Job) -> None:
        self._groups.setdefault(frozenset(job.coords), []).append(len(self.jobs))
        self.jobs.append(job)
        self._index.clear()

    def groups(self) -> list[frozenset]:
        return list(self._groups)

    def matching(self, group: frozenset, keys: tuple, values: tuple) -> list[int]:
        """Positions of the jobs of ``group`` whose coords equal ``values`` on ``keys`` (``==``, as Python compares)."""
        if not keys:
            return self._groups[group]
        index = self._index.get((group, keys))
        if index is None:
            index = self._index[(group, keys)] = {}
            for position in self._groups[group]:
                coords = self.jobs[position].coords
                index.setdefault(_match_key(tuple(coords[key] for key in keys)), []).append(position)
        return index.get(_match_key(values), [])


class _Unmatched:
    """A lookup key equal to nothing (a NaN compares unequal even to itself)."""


def _match_key(values: tuple) -> Any:
    """A hashable stand-in for ``values``, equal exactly where the values are (lists as tuples, dicts as item sets)."""

    def key(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            raise TypeError
        if isinstance(value, list):
            return ("list", tuple(key(item) for item in value))
        if isinstance(value, dict):
            return ("dict", frozenset((key(k), key(v)) for k, v in value.items()))
        hash(value)
        return value

    try:
        return tuple(key(value) for value in values)
    except TypeError:
        return _Unmatched()


@dataclass
class _Pairing:
    """The source jobs (one per reference) a taking row is expanded with, in the order of their product."""

    count: int
    combos: Callable[[], Iterator[tuple[Job, ...]]]

    def __iter__(self) -> Iterator[tuple[Job, ...]]:
        return self.combos()


def _pairings(entry: _Entry, sources: list[_Sources]) -> _Pairing:
    """Which source jobs a row taking ``sources`` (one per reference, in its key order) is expanded with, and how many.

    A combination pairs where the sweep values both sides have agree: each of the row's swept keys
    must equal the value of the last source job holding it (a source's values merge over the
    earlier ones'). Counted from an index of each source's jobs, before any combination is made.
    """
    wanted = entry.coords
    plans: list[list[list[int]]] = []  # per choice of coords-key groups: the matching positions in each source
    count = 0
    for choice in itertools.product(*(source.groups() for source in sources)):
        decided: set = set()
        chosen: list[list[int]] = [[] for _ in sources]
        for level in reversed(range(len(sources))):
            group = choice[level]
            keys = tuple(key for key in wanted if key in group and key not in decided)
            chosen[level] = sources[level].matching(group, keys, tuple(wanted[key] for key in keys))
            decided |= group
        plans.append(chosen)
        count += math.prod(len(positions) for positions in chosen)

    def combos() -> Iterator[tuple[Job, ...]]:
        if len(plans) == 1:
            for positions in itertools.product(*plans[0]):
                yield tuple(source.jobs[position] for source, position in zip(sources, positions))
            return
        # several kinds of source jobs: the combinations of each, in the order of the full product
        every = sorted(positions for chosen in plans for positions in itertools.product(*chosen))
        for positions in every:
            yield tuple(source.jobs[position] for source, position in zip(sources, positions))

    return _Pairing(count, combos)
