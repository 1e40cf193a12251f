"""A progress bar for a run: jobs done of all, the job in flight, elapsed time and ETA."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .jobs import Job
from .render import DiskFull


class JobProgress:
    """The bar, fed every record of the run as it arrives; ``stopped`` once a record says the run cannot go on."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("rendering", total=total, job="")
        self.stopped = False  # the output disk is full: hand out no more jobs

    def start(self, job: Job) -> None:
        self._progress.update(self._task, job=f"{job.job_id} {job.label()}")

    def finish(self, record: dict) -> None:
        if record["status"] != "ok":
            line = f"[red]{record['status']}[/red] {record['job_id']}: {record['error_type']}: {record['error']}"
            self._progress.console.print(line, markup=True, highlight=False)
        self.stopped = self.stopped or record.get("error_type") == DiskFull.__name__
        self._progress.advance(self._task)


@contextmanager
def job_progress(total: int, console: Console | None = None) -> Iterator[JobProgress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[job]}"),
        console=console or Console(stderr=True),
    )
    with progress:
        yield JobProgress(progress, total)
