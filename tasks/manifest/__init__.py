"""Manifest -> validated job table.

A YAML manifest holds ``defaults``, explicit ``rows``, a cartesian ``sweep``, element-wise
``zip`` lists, ``seeds`` and ``grid`` axes; a CSV or Parquet manifest is one job per row.
Every row is checked (keys, types, ranges, input files, model) before anything renders, and
every problem is reported at once, naming the file, the row with its sweep values, the key,
what was received and what is allowed.

What one manifest may ask for is bounded (:class:`Limits`), each bound checked before the work
it guards: the file's size before it is read; the YAML's size, aliases expanded, right after it
is parsed; the number of jobs before any is built (rows that take other rows' videos before
each is expanded); an input image's or video's pixels before it is decoded. A refusal names the
limit and how to raise it, and every value a message echoes is shortened (:func:`.messages._shown`).

The modules, each importing only those listed before it: ``limits``; ``messages`` (problems, and
how a user's values are shown); ``entries`` (a job's raw values before validation); ``reading``
(the file, the run's name); ``expansion`` (YAML) and ``tables`` (CSV, Parquet): file -> entries;
``inputs`` (image and video files); ``cache_keys``; ``job_options`` (the keys every row has);
``resolution`` (what a row's model and parts name: tiny checkpoints built, revisions pinned, the
hub asked); ``rows`` (the row checker: one entry -> one Job); ``chains`` (entries -> jobs, rows
that take other rows' videos after their sources).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jobs import Job
from .chains import _make_jobs
from .entries import _Entry
from .expansion import _check_grids, _expand_yaml, _parse_yaml
from .inputs import IMAGE_SUFFIXES
from .job_options import JobOptions
from .limits import TABLE_SUFFIXES, YAML_SUFFIXES, Limits
from .messages import ManifestError, Problem
from .reading import _read_manifest, _run_name
from .rows import _RowChecker
from .tables import _read_table

__all__ = [
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "YAML_SUFFIXES",
    "JobOptions",
    "Limits",
    "Manifest",
    "ManifestError",
    "Problem",
    "job_from_row",
    "load_manifest",
    "run_name",
]


@dataclass
class Manifest:
    path: Path
    name: str
    sha256: str
    device: str
    jobs: list[Job]
    grids: list[dict[str, str]] = field(default_factory=list)


def load_manifest(path: str | Path, device: str, limits: Limits | None = None) -> Manifest:
    """Read, expand and validate a manifest for rendering on ``device``; raise ManifestError on any problem.

    ``limits`` bounds what the manifest may ask for (default: :class:`Limits`'s defaults); a
    manifest past one is refused before the work the bound guards.
    """
    limits = limits or Limits()
    path = Path(path)
    data = _read_manifest(path, limits)
    if path.suffix.lower() in YAML_SUFFIXES:
        expansion = _expand_yaml(path, data, limits)
    else:
        expansion = _read_table(path, data, limits)
    if expansion.problems:
        raise ManifestError(path, expansion.problems)

    checker = _RowChecker(base_dir=path.parent.resolve(), device=device, limits=limits)
    jobs = _make_jobs(expansion.entries, checker, path, limits)
    grids, grid_problems = _check_grids(expansion.grids, expansion.swept)
    if checker.problems or grid_problems:
        raise ManifestError(path, checker.problems + grid_problems)
    return Manifest(
        path=path, name=expansion.name, sha256=hashlib.sha256(data).hexdigest(), device=device, jobs=jobs, grids=grids
    )


def run_name(path: str | Path, limits: Limits | None = None) -> str | None:
    """The run's name (``name:``, else the file's stem) as :func:`load_manifest` gives it, from the file alone: no
    sweep expanded, no row checked, no model resolved or built. None where it is refused (load_manifest says why)."""
    path = Path(path)
    problems: list = []
    if path.suffix.lower() not in YAML_SUFFIXES:  # a table's run is named by its file: nothing to read
        name = _run_name(path, None, False, problems)
        return None if problems else name
    try:
        doc, problem = _parse_yaml(path, _read_manifest(path, limits or Limits()))
    except (ManifestError, UnicodeDecodeError):
        return None
    if problem is not None or not isinstance(doc, dict):
        return None
    name = _run_name(path, doc.get("name"), "name" in doc, problems)
    return None if problems else name


def job_from_row(
    values: dict[str, Any],
    device: str,
    *,
    where: str,
    origin: str = "row",
    coords: dict[str, Any] | None = None,
    index: int = 0,
    base_dir: Path | None = None,
    limits: Limits | None = None,
) -> Job:
    """One row's values -> its Job, checked exactly as a manifest row is; ManifestError (under ``where``) if not valid.

    For rows that do not come from a manifest file (a rerun of a recorded job); relative paths
    resolve against ``base_dir`` (default: the working directory). ``"@<job_id>"`` inputs are
    taken as is: that job's video.
    """
    checker = _RowChecker(base_dir=(base_dir or Path.cwd()).resolve(), device=device, limits=limits or Limits())
    job = checker.check(index, _Entry(values, origin, coords or {}))
    if job is None:
        raise ManifestError(Path(where), checker.problems)
    return job
