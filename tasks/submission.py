"""What a queued run needs besides Prefect: a frozen copy of its manifest, its start time, its progress.

A submitted manifest is copied to ``OUT/submissions/<sha256 of the copy, 16 hex>/<file name>``, so
editing or deleting the file afterwards does not change a queued run, and the results' ``manifest_path``
names the copy. The copy keeps the file name (a manifest's default ``name`` is its file stem) and
makes every relative path absolute (input images and videos, local model and component folders),
since relative paths resolve against the manifest's folder. The inputs themselves are not copied:
job ids hash them by content, so an input edited before the run starts renders as a new job.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_atomic
from .manifest import TABLE_SUFFIXES, YAML_SUFFIXES
from .models import FAMILIES, known_models
from .models.base import input_fields
from .text import printable

SUBMISSIONS_DIR = "submissions"
RUN_NAME_LIMIT = 40  # characters of the manifest's name in a queued run's name


def queued_run_name(manifest_name: str) -> str:
    """``night-3fa9c1``: a queued run's one name, the manifest's name and 6 random hex digits.

    ``submit`` gives it to the run it queues, the run's render flow takes it too, and ``status`` and
    ``cancel`` accept it (as they accept the manifest's name alone where one run has it). Only letters,
    digits, ``_`` and ``.`` of the manifest's name are kept, the rest made ``-``, so it can be typed.
    """
    stem = re.sub(r"[^\w.]+", "-", printable(manifest_name)).strip("-.")[:RUN_NAME_LIMIT].rstrip("-.")
    return f"{stem or 'run'}-{secrets.token_hex(3)}"


def path_keys() -> set[str]:
    """Manifest keys whose values may be paths: the model, every family's input files and separate components."""
    keys = {"model"}
    for spec in FAMILIES.values():
        keys |= set(input_fields(spec.params)) | set(spec.components)
    return keys


def freeze_manifest(manifest: Path, out_root: Path) -> Path:
    """Copy ``manifest`` under ``out_root/submissions/``, relative paths made absolute; the copy's path.

    The same manifest submitted twice from one place gives one copy (its name is its content's hash).
    """
    manifest = Path(manifest)
    suffix = manifest.suffix.lower()
    if suffix in YAML_SUFFIXES:
        data = _frozen_yaml(manifest)
    elif suffix in TABLE_SUFFIXES:
        data = _frozen_table(manifest)
    else:
        raise InputError(f"{manifest}: unknown manifest type {suffix!r}; use .yaml, .csv or .parquet")
    folder = out_root / SUBMISSIONS_DIR / hashlib.sha256(data).hexdigest()[:16]
    copy = folder / manifest.name
    if not copy.is_file():
        write_atomic(copy, lambda scratch: scratch.write_bytes(data))
    return copy.resolve()


def _frozen_yaml(manifest: Path) -> bytes:
    import yaml

    original = manifest.read_bytes()
    doc = yaml.safe_load(original)
    base, keys, changed = manifest.parent.resolve(), path_keys(), False

    def fix(values: Any) -> Any:
        """A mapping of row keys, its path values made absolute (lists: each element)."""
        nonlocal changed
        if not isinstance(values, dict):
            return values
        fixed = {}
        for key, value in values.items():
            if key in keys:
                items = value if isinstance(value, list) else [value]
                new = [_absolute(key, item, base) for item in items]
                new = new if isinstance(value, list) else new[0]
                changed |= new != value
                value = new
            fixed[key] = value
        return fixed

    for section in ("defaults", "sweep", "zip"):
        if section in doc:
            doc[section] = fix(doc[section])
    if isinstance(doc.get("rows"), list):
        doc["rows"] = [fix(row) for row in doc["rows"]]
    # untouched, the copy is the file itself, comments included
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode() if changed else original


def _frozen_table(manifest: Path) -> bytes:
    import io

    import pandas as pd

    csv = manifest.suffix.lower() == ".csv"
    frame = pd.read_csv(manifest) if csv else pd.read_parquet(manifest)
    base = manifest.parent.resolve()
    columns = [key for key in frame.columns if key in path_keys()]
    fixed = {key: frame[key].map(lambda value, key=key: _absolute(key, value, base)) for key in columns}
    if all(fixed[key].equals(frame[key]) for key in columns):
        return manifest.read_bytes()
    frame = frame.assign(**fixed)
    buffer = io.BytesIO()
    frame.to_csv(buffer, index=False) if csv else frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _absolute(key: str, value: Any, base: Path) -> Any:
    """``value`` as an absolute path if it is a relative path to something under ``base``; else unchanged."""
    if not isinstance(value, str) or not value or value.startswith(("@", "~")) or Path(value).is_absolute():
        return value
    if key == "model" and value in known_models():  # a model key wins over a folder of that name
        return value
    target = base / value
    return str(target.resolve()) if target.exists() else value


# -- when -----------------------------------------------------------------------------------------

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def start_time(at: str, now: datetime) -> datetime:
    """``--at``: ``HH:MM`` (the next such time of day, today or tomorrow) or an ISO date and time; local time."""
    now = now.astimezone()
    clock = _CLOCK.match(at.strip())
    if clock:
        when = now.replace(hour=int(clock[1]), minute=int(clock[2]), second=0, microsecond=0)
        return when if when > now else when + timedelta(days=1)
    try:
        when = datetime.fromisoformat(at.strip())
    except ValueError:
        raise InputError(
            f"--at {at!r}: give a time of day HH:MM (e.g. 22:00) or a date and time (2026-05-01T22:00)"
        ) from None
    return when if when.tzinfo else when.astimezone()


# -- how far ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A run's jobs, from the results table of its output root."""

    total: int | None  # the manifest's jobs (None where the run does not say)
    ok: int  # jobs with an ok record and their video (earlier runs' included: they are skipped)
    failed: int  # jobs whose latest attempt in this run failed or was skipped
    running: int
    seconds_per_job: float | None  # mean total_s of the ok jobs of this manifest in this root
    slots: int  # jobs rendered at once

    @property
    def waiting(self) -> int | None:
        return None if self.total is None else max(self.total - self.ok - self.failed - self.running, 0)

    @property
    def eta_s(self) -> float | None:
        """Seconds until the last job ends, at the measured rate; None before any job was measured."""
        if self.seconds_per_job is None or self.waiting is None:
            return None
        return (self.waiting + self.running) * self.seconds_per_job / self.slots

    def format(self) -> str:
        total, waiting = ("?", "?") if self.total is None else (self.total, self.waiting)
        line = f"jobs: {self.ok} ok, {self.failed} failed, {self.running} running, {waiting} waiting, of {total}"
        if self.seconds_per_job is not None:
            line += f"; {self.seconds_per_job:.1f} s/job"
        return line


def progress_of(
    out_root: Path,
    manifest_sha256: str,
    total: int | None,
    since: datetime | None,
    running: int = 0,
    slots: int = 1,
) -> Progress:
    """Count the jobs of the manifest with ``manifest_sha256`` in ``out_root``; failures only from ``since`` on."""
    from .results import read_results

    columns = ["job_id", "status", "manifest_sha256", "video_path", "total_s", "finished_at"]
    table = read_results(out_root, columns)
    table = table[table["manifest_sha256"] == manifest_sha256]
    on_disk = table["video_path"].map(lambda path: isinstance(path, str) and (out_root / path).is_file())
    ok = table[(table["status"] == "ok") & on_disk]
    done = set(ok["job_id"])
    recent = table if since is None else table[table["finished_at"] >= since]
    latest = recent.sort_values("finished_at").groupby("job_id")["status"].last()
    failed = {job_id for job_id, status in latest.items() if status != "ok" and job_id not in done}
    return Progress(
        total=total,
        ok=len(done),
        failed=len(failed),
        running=running,
        seconds_per_job=float(ok["total_s"].mean()) if len(ok) else None,
        slots=max(slots, 1),
    )
