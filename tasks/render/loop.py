"""The one render loop: jobs in batches, each batch started, rendered, handed to the export thread, and recorded.

Every render goes through a :class:`Renderer`, wherever it runs: a shard on a Dask worker
(:func:`render_shard`), a level of jobs in the run's own process (flows.dispatch), one job alone
(:func:`render_job`: a rerun) and the speed benchmark. Like a Ray Data callable class it is made
where the jobs render and called once per batch; the pipelines it loads stay in the process's
cache (tasks.render.cache) for the next batch, and the next renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from ..errors import stops_run
from ..jobs import Job
from ..record import JobRecord
from ..results import is_recorded
from ..run_context import RunContext
from .export import Exporter, write_record_or_stop
from .start import attempt_of, batches, start_batch


class Renderer:
    """Renders batches of one run's jobs in this process; while one batch renders, the job before it exports.

    ``attempts`` counts the records earlier runs left per job (the next attempt is one more);
    ``queued_at`` is when the jobs were handed out (their start, where None). Use it as a context
    manager: leaving it waits for the export in hand. ``on_start`` is told of each job as its batch
    starts, ``on_record`` of each record as it is written (a run log's lines: flows.dispatch).
    """

    def __init__(
        self,
        run: RunContext,
        attempts: dict[str, int],
        queued_at: datetime | None = None,
        on_start: Callable[[Job], None] | None = None,
        on_record: Callable[[JobRecord], None] | None = None,
    ) -> None:
        self.run = run
        self.attempts = attempts
        self.queued_at = queued_at
        self.on_start, self.on_record = on_start, on_record
        self.stopped = False  # a record said the disk is full: no batch starts after it
        self._exporter = Exporter(run.overlap_export)

    def batches(self, jobs: list[Job]) -> Iterator[list[Job]]:
        """``jobs`` in order, ``run.batch`` per pipeline call at most (:func:`batches`); none once the run has stopped."""
        for batch in batches(jobs, self.run.batch, self.run.run_id):
            if self.stopped:
                return
            yield batch

    def __call__(self, jobs: list[Job]) -> list[JobRecord]:
        """Render one batch and hand each of its jobs to the export thread, in order: the records written meanwhile."""
        records = []
        for job in jobs if self.on_start else ():
            self.on_start(job)
        for rendering in start_batch(jobs, self.run, self.attempts, self.queued_at):
            records += self._exporter.hand_over(rendering)
        return self._seen(records)

    def drain(self) -> list[JobRecord]:
        """Wait for the job exporting now: its record (none if none is)."""
        return self._seen(self._exporter.drain())

    def render(self, jobs: list[Job]) -> list[JobRecord]:
        """Every job of ``jobs``, batch by batch, until done or the disk is full: their records, in order."""
        records = [record for batch in self.batches(jobs) for record in self(batch)]
        return records + self.drain()

    def _seen(self, records: list[JobRecord]) -> list[JobRecord]:
        self.stopped = self.stopped or any(map(stops_run, records))
        for record in records if self.on_record else ():
            self.on_record(record)
        return records

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._exporter.close()


def render_shard(
    jobs: list[Job], run: RunContext, attempts: dict[str, int], queued_at: datetime, on_start=None, on_record=None
) -> list[JobRecord]:
    """Render a shard's jobs in this process (one Prefect task on a Dask worker): their records, in order
    (``on_start``, ``on_record``: as :class:`Renderer`'s).

    Idempotent: when Dask hands a shard out again after its worker died, the jobs that worker
    had already recorded (this attempt's part file exists) are not rendered twice.
    """
    todo = [job for job in jobs if not is_recorded(run.out_root, job.job_id, attempt_of(job, attempts))]
    with Renderer(run, attempts, queued_at, on_start, on_record) as renderer:
        return renderer.render(todo)


def render_job(job: Job, run: RunContext, attempt: int = 1, queued_at: datetime | None = None) -> JobRecord:
    """Render ``job`` alone, write its video and its record, and return the record.

    Any exception of the job is caught and recorded as ``failed``: one bad job never ends a run.
    """
    with Renderer(run, {job.job_id: attempt - 1}, queued_at) as renderer:
        [record] = renderer.render([job])
    return record


def worker_lost(job: Job, run: RunContext, attempt: int) -> JobRecord:
    """Record a job as failed because every worker that took it died (killed, out of memory, crashed)."""
    now = datetime.now(timezone.utc)
    record = JobRecord.begin(job, run, attempt, now, now)
    record.end("failed", "WorkerLost", "the Dask worker running this job died each time it was handed out; see the worker logs")
    record.finished_at = now
    return write_record_or_stop(run.out_root, record)
