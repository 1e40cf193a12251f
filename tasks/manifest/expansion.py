"""A YAML manifest's entries: defaults x rows x sweep x zip x seeds (lists or ranges), and its grids."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .entries import _Entry, _Expansion
from .limits import MAX_YAML_DEPTH, MiB, Limits
from .messages import Problem, _brief, _cut, _jobs, _shown, _some, _suggest
from .reading import _run_name

MANIFEST_KEYS = ("name", "description", "defaults", "rows", "sweep", "zip", "seeds", "grid")


def _parse_yaml(path: Path, data: bytes) -> tuple[Any, Problem | None]:
    """The YAML document of ``data`` (aliases still shared, not expanded), or why it is not one."""
    import yaml

    where = _cut(str(path), 300)
    text = data.decode("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: the same documents, far faster
    try:
        return yaml.load(text, Loader=loader), None  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        return None, Problem(where, None, f"not valid YAML: {_yaml_error(text, exc)}")
    except RecursionError:
        return None, Problem(where, None, f"nested deeper than {MAX_YAML_DEPTH} levels")
    except ValueError as exc:  # a scalar no type takes (an integer of 5000 digits)
        reason = _cut(str(exc).split(";")[0], 300)
        return None, Problem(where, None, f"not valid YAML: a value no type takes ({reason})")


def _expand_yaml(path: Path, data: bytes, limits: Limits) -> _Expansion:
    where = _cut(str(path), 300)
    doc, problem = _parse_yaml(path, data)
    if problem is not None:
        return _Expansion(path.stem, problems=[problem])
    size_problem = _yaml_size_problem(doc, limits)
    if size_problem:
        return _Expansion(path.stem, problems=[Problem(where, None, size_problem)])
    if not isinstance(doc, dict):
        shape = "a YAML manifest is a mapping with keys " + ", ".join(MANIFEST_KEYS)
        return _Expansion(path.stem, problems=[Problem(where, None, shape)])

    allowed = ", ".join(MANIFEST_KEYS)
    problems = [
        Problem(where, _brief(key), f"unknown top-level key {_shown(key)}{_suggest(key, MANIFEST_KEYS)}; allowed: {allowed}")
        for key in doc
        if key not in MANIFEST_KEYS
    ]
    name = _run_name(path, doc.get("name"), "name" in doc, problems)

    defaults = doc.get("defaults") or {}
    rows = doc.get("rows", [{}])
    if not isinstance(defaults, dict):
        problems.append(Problem("defaults", "defaults", "defaults must be a mapping of key: value"))
        defaults = {}
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        problems.append(Problem("rows", "rows", "rows must be a list of mappings (use `- {}` for a row of defaults only)"))
        rows = []

    sweep = _axis_lists(doc.get("sweep"), "sweep", problems)
    zipped = _axis_lists(doc.get("zip"), "zip", problems)
    lengths = {key: axis.length for key, axis in zipped.items()}
    if len(set(lengths.values())) > 1:
        problems.append(Problem("zip", "zip", f"zip lists must have one length; got {_shown(lengths)}"))
    for key in set(sweep) & set(zipped):
        message = f"{_shown(key)} is in both sweep and zip; keep it in one"
        problems.append(Problem(f"sweep.{_brief(key)}", _brief(key), message))

    seeds: _Axis | None = None
    if "seeds" in doc:
        seeds = _values(doc["seeds"], "seeds", problems, allow_count=True)
        for key in ("sweep", "zip"):
            section = doc.get(key)
            if isinstance(section, dict) and "seed" in section:
                problems.append(Problem(f"{key}.seed", "seed", f"seed is swept both by `seeds:` and by `{key}:`; keep one"))

    swept = set(sweep) | set(zipped) | ({"seed"} if "seeds" in doc else set())
    for index, row in enumerate(rows):
        for key in sorted(swept & set(row), key=str):
            message = f"{_shown(key)} is set in this row and also swept; keep one"
            problems.append(Problem(f"rows[{index}]", _brief(key), message))
    if problems:
        return _Expansion(name, problems=problems)

    # How many jobs, from the lengths alone (a range's from its numbers): nothing is built past the limit.
    zip_length = next(iter(lengths.values()), 1)
    factors = [("row" if len(rows) == 1 else "rows", len(rows))]
    factors += [(str(_brief(key)), axis.length) for key, axis in sweep.items()]
    factors += [("zip positions", zip_length)] if zipped else []
    factors += [("seeds", seeds.length)] if seeds is not None else []
    count = math.prod(length for _, length in factors)
    if count > limits.max_jobs:
        product = " x ".join(f"{_jobs(length)} {label}" for label, length in factors)
        return _Expansion(
            name,
            problems=[
                Problem(
                    where,
                    None,
                    f"expands to {_jobs(count)} jobs ({product}), more than the limit of {limits.max_jobs:,};"
                    " split it into smaller manifests, or raise the limit with --max-jobs N",
                )
            ],
        )

    sweep_lists = {key: axis.build() for key, axis in sweep.items()}
    zip_lists = {key: axis.build() for key, axis in zipped.items()}
    seed_list = seeds.build() if seeds is not None else [None]

    def entries() -> Iterator[_Entry]:
        for index, row in enumerate(rows):
            origin = f"rows[{index}]" if "rows" in doc else "defaults"
            shared = {**defaults, **row}
            for combo in itertools.product(*sweep_lists.values()):
                for position in range(zip_length):
                    for seed in seed_list:
                        coords = dict(zip(sweep_lists, combo))
                        coords.update({key: values[position] for key, values in zip_lists.items()})
                        if seed is not None:
                            coords["seed"] = seed
                        yield _Entry({**shared, **coords}, origin, coords)

    return _Expansion(name, entries(), _as_grid_list(doc.get("grid")), swept)


def _yaml_error(text: str, error: Exception) -> str:
    """What is wrong with a YAML text: PyYAML's own message (it quotes the line) where the text is small, else libyaml's."""
    import yaml

    if len(text) <= MiB and getattr(yaml, "CSafeLoader", None) is not None:
        try:
            yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (a safe loader): fails where libyaml did, saying more
        except yaml.YAMLError as exc:
            error = exc
        except (RecursionError, ValueError):
            pass
    return _cut(str(error), 500)


def _yaml_size_problem(doc: Any, limits: Limits) -> str | None:
    """Why the loaded YAML is too big to take (None if it is not), counting as a reader expanding its aliases would.

    An alias (``*name``) makes the parser share one object wherever it is used; each use counts.
    A shared part's size is computed once (and the walk stops as soon as the count passes the
    limit), so the walk costs at most the document's distinct values, never its expansion.
    """
    limit = limits.yaml_values()
    sizes: dict[int, tuple[int, int]] = {}  # id of a container -> (values in it, expanded; its height)
    containers = (dict, list, tuple, set, frozenset)
    aliased = False  # whether any part is used twice

    class TooBig(Exception):
        pass

    def measure(value: Any, depth: int) -> tuple[int, int]:
        nonlocal aliased
        known = sizes.get(id(value))
        aliased |= known is not None
        if known is None:
            if depth > MAX_YAML_DEPTH:
                raise TooBig(f"nests deeper than {MAX_YAML_DEPTH} levels (or an alias refers to itself)")
            total, height = 1, 0
            children = itertools.chain.from_iterable(value.items()) if isinstance(value, dict) else value
            for child in children:
                if isinstance(child, containers):
                    size, below = measure(child, depth + 1)
                    height = max(height, below + 1)
                else:
                    size = 1
                total += size
                if total > limit and aliased:
                    raise TooBig(
                        f"holds more than {limit:,} values once its aliases (*name) are expanded (the limit): an alias"
                        " bomb? Use anchors to share a few values (defaults: &d ..., then <<: *d), not aliases of aliases"
                    )
                if total > limit:
                    raise TooBig(
                        f"holds more than {limit:,} values (the limit); split it into smaller manifests,"
                        " or raise the limit with --max-manifest-mb N"
                    )
            known = sizes[id(value)] = (total, height)
        if depth + known[1] > MAX_YAML_DEPTH:
            raise TooBig(f"nests deeper than {MAX_YAML_DEPTH} levels")
        return known

    if not isinstance(doc, containers):
        return None
    try:
        measure(doc, 0)
    except TooBig as exc:
        return f"the YAML {exc}"
    except RecursionError:
        return f"the YAML nests deeper than {MAX_YAML_DEPTH} levels"
    return None


@dataclass
class _Axis:
    """One swept key's values: their number, known from the spec alone, and the values, built on demand."""

    length: int | float  # math.inf where a range never ends
    build: Callable[[], list[Any]]


def _axis_lists(spec: Any, where: str, problems: list[Problem]) -> dict[Any, _Axis]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        problems.append(Problem(where, where, f"{where} must be a mapping of key: [values]"))
        return {}
    return {key: _values(values, f"{where}.{_brief(key)}", problems) for key, values in spec.items()}


def _values(spec: Any, where: str, problems: list[Problem], allow_count: bool = False) -> _Axis:
    """A list as given, or a range: ``{from, to, step}`` or ``{from, to, num}`` (both ends included), or ``{from, count}``.

    A range's length comes from its numbers; its values are made only when asked for (after the
    job count is known to be within the limit).
    """
    if isinstance(spec, list) and spec:
        return _Axis(len(spec), lambda: spec)
    if isinstance(spec, dict):
        keys = set(spec)
        numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in spec.values())
        finite = numbers and all(isinstance(value, int) or math.isfinite(value) for value in spec.values())
        if finite and keys == {"from", "to", "step"} and spec["step"] > 0 and spec["to"] >= spec["from"]:
            start, stop, step = spec["from"], spec["to"], spec["step"]
            try:
                span = (stop - start) / step + 1e-9
                count = int(math.floor(span)) + 1 if math.isfinite(span) else math.inf
            except OverflowError:
                count = math.inf
            return _Axis(count, lambda: [_tidy(start + i * step) for i in range(count)])
        if finite and keys == {"from", "to", "num"} and isinstance(spec["num"], int) and spec["num"] >= 2:
            start, stop, num = spec["from"], spec["to"], spec["num"]

            def spaced() -> list[Any]:
                step = (stop - start) / (num - 1)
                integral = all(isinstance(spec[key], int) for key in ("from", "to")) and float(step).is_integer()
                return [int(start + i * step) if integral else _tidy(start + i * step) for i in range(num)]

            return _Axis(num, spaced)
        integers = all(isinstance(spec[key], int) for key in keys)
        if allow_count and numbers and keys == {"from", "count"} and integers and spec["count"] >= 1:
            start, count = spec["from"], spec["count"]
            return _Axis(count, lambda: list(range(start, start + count)))
    forms = "a non-empty list, {from: A, to: B, step: S} or {from: A, to: B, num: N}"
    if allow_count:
        forms += " or {from: A, count: N}"
    problems.append(Problem(where, where.split(".")[-1], f"{where}={_shown(spec)} must be {forms}"))
    return _Axis(0, list)


def _tidy(value: float | int) -> float | int:
    """Round away float noise from range arithmetic (0.1 + 2 * 0.04 -> 0.18)."""
    return value if isinstance(value, int) else round(value, 10)


def _as_grid_list(spec: Any) -> list:
    if spec is None:
        return []
    return spec if isinstance(spec, list) else [spec]


def _check_grids(grids: list, varying: set[str]) -> tuple[list[dict[str, str]], list[Problem]]:
    """Grid axes must be parameters that vary (``varying``); the grids themselves are drawn by the grid step."""
    problems, checked = [], []
    for index, grid in enumerate(grids):
        where = f"grid[{index}]" if len(grids) > 1 else "grid"
        if not isinstance(grid, dict) or "x" not in grid or set(grid) - {"x", "y", "z"}:
            problems.append(Problem(where, "grid", f"{where}={_shown(grid)} must be a mapping with x and optional y, z"))
            continue
        if len(set(map(str, grid.values()))) < len(grid):
            problems.append(Problem(where, "grid", f"{where}={_shown(grid)} uses one key on two axes; give each axis its own"))
        for axis, key in grid.items():
            if not isinstance(key, str) or key not in varying:
                swept = _some(sorted(map(str, varying))) or "none"
                problems.append(Problem(where, axis, f"{axis}={_shown(key)} is not a swept key; swept: {swept}"))
        checked.append(dict(grid))
    return checked, problems
