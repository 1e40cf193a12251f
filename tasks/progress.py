"""What a run shows on the terminal while it runs: a startup line, then the progress bar.

- The startup line (:data:`startup`): before the bar appears a run spends seconds to half a
  minute starting Prefect's API server, importing torch and starting Dask workers. On a terminal
  one transient line with a spinner says which; the bar replaces it. Where stderr is not a
  terminal nothing is printed: a pipe or a file keeps only lines that stay true (the bar's last
  line, warnings, the summary), and the log file keeps every stage with its time.
- The bar: jobs done of all, a bar, elapsed time and ETA, then as much of the job in flight as
  the width leaves (cut with "…"), so at any width from 60 columns the count, bar and ETA show.

Job labels and failure lines hold user text (prompts, file names, error messages): each goes
through ``tasks.text.printable`` and is printed as plain text, never as rich markup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Column
from rich.text import Text

from .errors import stops_run
from .text import printable

if TYPE_CHECKING:  # the import costs a second; the startup line is shown before anything else is imported
    from .jobs import Job

LABEL_LIMIT = 300  # characters of the job in flight kept for the bar, which shows as many as its line has room for
ERROR_LIMIT = 1000  # characters of a failure line (the results table keeps the whole message)
STAGE_LIMIT = 100  # characters of the startup line
BAR_WIDTH = (10, 40)  # cells of the bar, at least and at most (a fifth of the line); the job gets the rest

_log = logging.getLogger(__name__)


class StartupLine:
    """One transient line on a terminal saying what a run waits for before its bar appears.

    :meth:`show` prints only inside ``with startup:`` (the ``run`` command's), which takes the
    line away however the command ends: a flow run from elsewhere never leaves a spinner behind.
    Every stage also goes to the log (INFO: the log file, not the terminal).
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console  # None: stderr, as it is when the line is first shown
        self._live: Live | None = None
        self._spinner = Spinner("dots")
        self._open = False

    def __enter__(self) -> StartupLine:
        self._open = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()
        self._open = False

    def show(self, stage: str) -> None:
        """Say what the run does now ("starting Prefect (local server)…"), in place of what was said."""
        _log.info("%s", stage)
        if not self._open:
            return
        self._spinner.update(text=Text(printable(stage, STAGE_LIMIT), no_wrap=True, overflow="ellipsis"))
        if self._live is not None:
            self._live.refresh()
            return
        console = self.console or Console(stderr=True)
        if console.is_terminal:
            self._live = Live(self._spinner, console=console, transient=True, refresh_per_second=12.5)
            self._live.start(refresh=True)

    def end(self) -> None:
        """Take the line away (the bar takes its place)."""
        if self._live is not None:
            self._live.stop()
            self._live = None


#: This process's startup line: the run command opens it, flows say what they start, the bar ends it.
startup = StartupLine()


class JobProgress:
    """The bar, fed every record of the run as it arrives; ``stopped`` once a record says the run cannot go on."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("rendering", total=total, job="")
        self.stopped = False  # the output disk is full: hand out no more jobs
        self.records: list[Mapping[str, Any]] = []  # every record of the run, those a full disk kept off the disk included

    def start(self, job: Job) -> None:
        """Show ``job`` as the one in flight: "job N (...)" first (``#N`` names it to every command), its id last."""
        self._progress.update(self._task, job=printable(f"{job.label()} {job.job_id}", LABEL_LIMIT))

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


class _Bar:
    """A bar a fifth of the line wide, within ``BAR_WIDTH``, measured anew at each refresh (a resized terminal).

    Rich's own bar is either of a fixed width or fills a ratio column, taking a share of the line
    from the job in flight; this one keeps its width and leaves the rest to the job."""

    def __init__(self, bar: ProgressBar) -> None:
        self._bar = bar

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        least, most = BAR_WIDTH
        width = min(max(options.max_width // 5, least), most)
        return Measurement(width, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._bar  # its width: the column's, as measured above


class _BarColumn(BarColumn):
    def render(self, task: Task) -> _Bar:
        return _Bar(super().render(task))


def _progress_bar(console: Console) -> Progress:
    """The bar's columns: count, bar and times keep their width; the job in flight takes the rest, cut with "…"."""
    fixed = Column(no_wrap=True)
    return Progress(
        MofNCompleteColumn(table_column=fixed),
        _BarColumn(bar_width=None, table_column=fixed),
        TimeElapsedColumn(table_column=fixed),
        TextColumn("eta", table_column=fixed),
        TimeRemainingColumn(table_column=fixed),
        TextColumn("{task.fields[job]}", markup=False, table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
        console=console,
        expand=True,  # the job's column takes what is left: without it rich squeezes every column when the label is long
    )


@contextmanager
def job_progress(total: int, console: Console | None = None) -> Iterator[JobProgress]:
    startup.end()
    with _progress_bar(console or Console(stderr=True)) as progress:
        yield JobProgress(progress, total)
