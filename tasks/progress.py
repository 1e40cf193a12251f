"""A progress bar for a run: jobs done of all, the job in flight, elapsed time and ETA.

Job labels and failure lines hold user text (prompts, file names, error messages): each goes
through ``tasks.text.printable`` and is printed as plain text, never as rich markup.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from .errors import stops_run
from .jobs import Job
from .text import printable

LABEL_LIMIT = 120  # characters of the job in flight on the bar
ERROR_LIMIT = 1000  # characters of a failure line (the results table keeps the whole message)


class JobProgress:
    """The bar, fed every record of the run as it arrives; ``stopped`` once a record says the run cannot go on."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("rendering", total=total, job="")
        self.stopped = False  # the output disk is full: hand out no more jobs
        self.records: list[Mapping[str, Any]] = []  # every record of the run, those a full disk kept off the disk included

    def start(self, job: Job) -> None:
        self._progress.update(self._task, job=printable(f"{job.job_id} {job.label()}", LABEL_LIMIT))

    def finish(self, record: Mapping[str, Any]) -> None:
        self.records.append(record)
        if record["status"] != "ok":
            line = Text.assemble(
                (printable(record["status"]), "red"),
                " " + printable(f"{record['job_id']}: {record['error_type']}: {record['error']}", ERROR_LIMIT),
            )
            self._progress.console.print(line, highlight=False)
        self.stopped = self.stopped or stops_run(record)
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
        TextColumn("{task.fields[job]}", markup=False),
        console=console or Console(stderr=True),
    )
    with progress:
        yield JobProgress(progress, total)
