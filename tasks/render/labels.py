"""How a run's pieces are named and told where a person watches it (a Prefect UI): short, printable lines.

Plain text only: the flows put these names on task runs and these lines in the run logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..jobs import Job
from ..record import JobRecord
from ..text import printable, shorten

#: The most characters a task run's name, a tag or a log line's value part has.
NAME_LIMIT = 80
LINE_LIMIT = 500


def job_run_name(jobs: Sequence[Job]) -> str:
    """A batch's task run: ``job 3 (motion_bucket_id=60, seed=2)``, or ``jobs 3-5 (motion_bucket_id=60)`` (the values they share)."""
    if len(jobs) == 1:
        return _name(f"job {jobs[0].index}", _values(jobs[0].coords))
    shared = {key: value for key, value in jobs[0].coords.items() if all(job.coords.get(key) == value for job in jobs)}
    return _name(f"jobs {index_ranges(job.index for job in jobs)}", _values(shared))


def shard_run_name(index: int, jobs: Sequence[Job]) -> str:
    """A shard's task run: ``shard 2: jobs 3-10 (svd-xt)`` (a local folder by its name)."""
    models = ", ".join(dict.fromkeys(Path(job.model).name if Path(job.model).is_absolute() else job.model for job in jobs))
    noun = "job" if len(jobs) == 1 else "jobs"
    return _name(f"shard {index}: {noun} {index_ranges(job.index for job in jobs)}", models)


def _name(head: str, inside: str) -> str:
    """``head (inside)`` in NAME_LIMIT characters, ``inside`` shortened first; the parenthesis stays closed."""
    head, inside = printable(head), printable(inside)
    if not inside:
        return shorten(head, NAME_LIMIT)
    room = NAME_LIMIT - len(head) - 3
    return f"{head} ({shorten(inside, room)})" if room >= 8 else shorten(f"{head} ({inside})", NAME_LIMIT)


def run_tags(name: str, jobs: Iterable[Job]) -> list[str]:
    """The tags of a run's flow run and task runs: the manifest's name and its models, as written."""
    return [printable(tag, NAME_LIMIT) for tag in dict.fromkeys([name, *(job.model for job in jobs)])]


def index_ranges(indices: Iterable[int]) -> str:
    """``3-5, 8, 10-12`` for 3, 4, 5, 8, 10, 11, 12."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def job_started(job: Job) -> str:
    return printable(f"{job.label()} started: {job.model}, id {job.job_id}", LINE_LIMIT)


def job_ended(record: JobRecord) -> str:
    """``job 3 (...) ok in 2.1 s: load 0.4 s, denoise 1.2 s, decode 0.2 s, export 0.3 s`` (and its error where it failed)."""
    label = f"job {record['job_index']} ({record['origin']})"
    timings = ", ".join(
        f"{step} {record[f'{step}_s']:.2f} s" for step in ("load", "denoise", "decode", "export") if record[f"{step}_s"] is not None
    )
    total = f" in {record['total_s']:.2f} s" if record["total_s"] is not None else ""
    line = f"{label} {record['status']}{total}" + (f": {timings}" if timings else "")
    if record["status"] != "ok":
        line += f"; {record['error_type']}: {record['error']}"
    return printable(line, LINE_LIMIT)


def failure_message(records: Sequence[JobRecord], total: int | None = None) -> str:
    """``2 of 8 jobs failed`` and the first failure, for a task run's or flow run's Failed state."""
    failed = [record for record in records if record["status"] != "ok"]
    first = failed[0]
    text = f"{len(failed)} of {len(records) if total is None else total} jobs failed"
    return printable(f"{text}; job {first['job_index']}: {first['error_type']}: {first['error']}", LINE_LIMIT)


def _values(coords: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in coords.items())
