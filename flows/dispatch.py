"""Where a plan's jobs render: in this process batch by batch, or on the Dask workers shard by shard as they free up.

Dask executes; which shard a worker takes next is ours, because only the flow knows which
pipeline a worker holds (:class:`Dispatcher`): a worker takes its own planned shards in order,
and one that runs dry takes a shard still queued for another, preferring one whose pipeline it
holds. If a worker dies, the jobs it had not recorded go to the workers still alive, for
:data:`RECOVERY_ROUNDS` rounds; then they are recorded as failed (``WorkerLost``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.states import Failed

from videosweep.tasks.jobs import Job
from videosweep.tasks.plan import Plan, Shard, make_plan
from videosweep.tasks.progress import JobProgress
from videosweep.tasks.record import JobRecord
from videosweep.tasks.render import RunContext
from videosweep.tasks.render.cache import warm_up
from videosweep.tasks.render.labels import failure_message, job_ended, job_run_name, job_started, shard_run_name
from videosweep.tasks.render.loop import Renderer, render_shard, worker_lost
from videosweep.tasks.results import run_records

#: Rounds of handing the jobs of lost workers to the remaining ones, before they are recorded as failed.
RECOVERY_ROUNDS = 2
#: Seconds a task run trusts the API's answer that its tags have no concurrency limit (Prefect's own: 5 s).
NO_TAG_LIMITS_TTL_S = 300.0


# Resuming comes from the records on disk (a job with an ok record is skipped), so no Prefect cache.
@task(name="render-job", task_run_name="{name}", cache_policy=NO_CACHE)
def render_batch_task(name: str, renderer: Renderer, jobs: list[Job], log: JobLog) -> list[JobRecord]:
    """Render one job (or a batch in one pipeline call) here; exports go on beside the next: the records finished meanwhile.

    A job's record may come while the next batch's task runs: :class:`JobLog` tells it to the
    task run that rendered it, and fails that task run if the job failed.
    """
    log.started(jobs)
    return renderer(jobs)


@task(name="render-shard", task_run_name="{name}", cache_policy=NO_CACHE)
def render_shard_task(name: str, jobs: list[Job], run: RunContext, attempts: dict, queued_at: datetime) -> list[JobRecord]:
    """A shard's jobs on a Dask worker: their records (each job's start and end in this task run's log).

    A shard with a failed job is set Failed by the flow once its records are in (:class:`JobLog`),
    as a batch rendered in the flow's process is."""
    logger = get_run_logger()
    on_start, on_record = (lambda job: logger.info(job_started(job))), (lambda record: logger.info(job_ended(record)))
    return render_shard(jobs, run, attempts, queued_at, on_start=on_start, on_record=on_record)


class JobLog:
    """Each job's start and end in the run log of the task run that rendered it (the Prefect UI shows them).

    In this process a job's record often comes while the next batch's task runs (its export
    overlaps the next render), so its end line names its own task run, and a task run whose job
    failed is set Failed once it has ended (:meth:`fail_ended`): the records, written already,
    stay as they are and nothing renders again. A Dask shard's task run is set Failed the same way
    (:meth:`failed_in`): a task that ended Failed itself would print an ERROR line on the terminal.
    Telling the API is never worth a run: what it refuses is left as it is (logged at DEBUG).
    """

    def __init__(self) -> None:
        self.runs: dict[str, tuple] = {}  # job id -> (flow run id, task run id, task run name)
        self.failed: dict = {}  # task run id -> the failed records it rendered, not yet on its state
        self.sizes: dict = {}  # task run id -> how many jobs it rendered

    def started(self, jobs: list[Job]) -> None:
        task_run = TaskRunContext.get().task_run
        self.sizes[task_run.id] = len(jobs)
        for job in jobs:
            self.runs[job.job_id] = (task_run.flow_run_id, task_run.id, task_run.name)
            self._line(job.job_id, job_started(job))

    def ended(self, record: JobRecord) -> None:
        self._line(record.job_id, job_ended(record))
        if record["status"] != "ok" and record.job_id in self.runs:
            self.failed.setdefault(self.runs[record.job_id][1], []).append(record)

    def failed_in(self, task_run_id, records: list[JobRecord], jobs: int) -> None:
        """Task run ``task_run_id`` (ended) rendered ``jobs`` jobs, with ``records`` among their records."""
        failed = [record for record in records if record["status"] != "ok"]
        if failed:
            self.failed.setdefault(task_run_id, []).extend(failed)
            self.sizes[task_run_id] = jobs

    def fail_ended(self, wait_s: float = 0) -> None:
        """Set each ended task run whose job failed to Failed (after the fact: forced, as the run goes on).

        Prefect 3 records a task run from its events, a moment after it ends: one the API does not
        know yet is tried again at the next call, or for up to ``wait_s`` seconds now.
        """
        if not self.failed:  # the usual case: no client, no call to the API
            return
        import time

        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        deadline = time.monotonic() + wait_s
        try:
            with get_client(sync_client=True) as client:
                while self.failed:
                    for task_run_id, records in list(self.failed.items()):
                        message = failure_message(records, self.sizes[task_run_id])
                        try:
                            client.set_task_run_state(task_run_id, Failed(message=message), force=True)
                        except ObjectNotFound:
                            continue
                        del self.failed[task_run_id]
                    if not self.failed or time.monotonic() > deadline:
                        return
                    time.sleep(0.25)
        except Exception:  # noqa: BLE001 - the UI's view of a run never ends it
            logging.getLogger("videosweep.flows").debug("could not mark failed task runs", exc_info=True)
            self.failed.clear()

    def _line(self, job_id: str, line: str) -> None:
        flow_run_id, task_run_id, name = self.runs.get(job_id, (None, None, None))
        if flow_run_id is None:
            return
        extra = {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "task_run_name": name}
        logging.getLogger("prefect.task_runs").info(line, extra=extra)


def render_plan(plan: Plan, run: RunContext, attempts: dict[str, int], progress: JobProgress) -> None:
    """Render ``plan`` level by level (a level's jobs take videos of the levels before), here or on the flow's
    Dask workers; every record goes to ``progress``. Stops after a level in which the disk filled."""
    distributed = on_dask()
    if distributed and plan.shards:
        # every worker imports torch, diffusers and the pipeline classes now, all at once, rather than in its first job
        FlowRunContext.get().task_runner.client.run(warm_up, [shard.jobs[0] for shard in plan.shards])
    for level in plan.levels:
        (_render_on_dask if distributed else _render_here)(level, run, attempts, progress)
        if progress.stopped:  # the disk is full: what is done is recorded, the rest waits for a rerun
            return


def on_dask() -> bool:
    """Whether this flow runs its tasks on Dask (``DaskTaskRunner``), not in its own process.

    A flow given a DaskTaskRunner imported prefect_dask to make it; one that was not need not import it (0.4 s).
    """
    prefect_dask = sys.modules.get("prefect_dask")
    context = FlowRunContext.get()
    return prefect_dask is not None and context is not None and isinstance(context.task_runner, prefect_dask.DaskTaskRunner)


def _render_here(level: list[Shard], run: RunContext, attempts: dict[str, int], progress: JobProgress) -> None:
    """A level's jobs in this process, one Prefect task per batch; its videos are all out before the next level."""
    trust_no_tag_limits(NO_TAG_LIMITS_TTL_S)
    log = JobLog()
    with Renderer(run, attempts, on_record=log.ended) as renderer:
        for jobs in renderer.batches([job for shard in level for job in shard.jobs]):
            progress.start(jobs[0])
            for record in render_batch_task(job_run_name(jobs), renderer, jobs, log):
                progress.finish(record)
            log.fail_ended()
        for record in renderer.drain():
            progress.finish(record)
        log.fail_ended(wait_s=30)


def trust_no_tag_limits(ttl_s: float) -> None:
    """Let a task run trust for ``ttl_s`` seconds the API's answer that its tags have no concurrency limit.

    A tagged task run asks the API for a slot of each tag's limit before it starts, and Prefect remembers
    that there are none for 5 s only. On the ephemeral API's SQLite the request meets the writes of the
    previous task run's events nearly every time ("database is locked", HTTP 503) and the client waits
    about 2 s to retry: measured here, one such wait every 5 s of rendering, 20-30 % of a tiny video's
    time. A limit that exists is still honoured at every task run; one created during a run, within
    ``ttl_s``. Where Prefect keeps that memo elsewhere (another version), nothing changes.
    """
    from prefect.concurrency import services

    memo = getattr(services, "_no_limits_cache", None)  # a cachetools.TTLCache
    if memo is not None and getattr(memo, "ttl", ttl_s) < ttl_s:
        services._no_limits_cache = type(memo)(maxsize=memo.maxsize, ttl=ttl_s)


def _render_on_dask(level: list[Shard], run: RunContext, attempts: dict[str, int], progress: JobProgress) -> None:
    """Hand a level's shards to the workers as they free up; give the jobs of a lost worker to the others."""
    client = FlowRunContext.get().task_runner.client  # the runner's own: its cluster starts on first use

    shards, pending = level, [job for shard in level for job in shard.jobs]
    log = JobLog()
    for _ in range(1 + RECOVERY_ROUNDS):
        addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if any(shard.worker >= len(addresses) for shard in shards):  # fewer workers than planned for: plan again
            shards = make_plan(pending, max(1, len(addresses)), run.batch).shards
        _dispatch(client, Dispatcher(shards, len(addresses)), addresses, run, attempts, progress, log)
        log.fail_ended(wait_s=30)
        # the records on disk are the truth: a worker that died mid-shard wrote the jobs it finished
        recorded = {record["job_id"] for record in run_records(run.out_root, run.run_id)}
        pending = [job for job in pending if job.job_id not in recorded]
        if not pending or progress.stopped:
            return
        workers = len(client.scheduler_info(n_workers=-1)["workers"]) or 1
        shards = make_plan(pending, workers, run.batch).shards  # what is left
    for job in pending:
        progress.finish(worker_lost(job, run, attempts.get(job.job_id, 0) + 1))


def _dispatch(client, dispatcher: Dispatcher, addresses: list[str], run, attempts, progress: JobProgress, log: JobLog) -> None:
    """One shard in flight per worker, the next one chosen by ``dispatcher`` when it finishes.

    A shard is pinned to its worker but may run on another if that worker is gone (Dask's loose
    restrictions), so a lost worker's queue still gets rendered. A GPU resource is asked for only
    where every worker declares one: a task asking for it would wait forever.
    """
    import dask
    import distributed

    gpu_slots = all("GPU" in info.get("resources", {}) for info in client.scheduler_info(n_workers=-1)["workers"].values())
    queued_at = datetime.now(timezone.utc)  # every job of the level waits from now until a worker takes it
    in_flight: dict[distributed.Future, tuple[int, object, int]] = {}
    finished = distributed.as_completed(loop=client.loop)  # shards are added as they are handed out

    def hand_out(slot: int) -> None:
        if progress.stopped:
            return
        shard = dispatcher.next_for(slot)
        if shard is None:
            return
        annotations = {"workers": [addresses[slot]], "allow_other_workers": True}
        if gpu_slots:
            annotations["resources"] = {"GPU": 1}
        with dask.annotate(**annotations):
            future = render_shard_task.submit(shard_run_name(shard.index, shard.jobs), shard.jobs, run, attempts, queued_at)
        in_flight[future.wrapped_future] = (slot, future, len(shard.jobs))
        finished.add(future.wrapped_future)

    for slot in range(len(addresses)):
        hand_out(slot)
    for wrapped in finished:
        slot, future, jobs = in_flight.pop(wrapped)
        future.wait()  # done: its final state from Dask (the API records it from events, a moment later)
        if future.state.is_completed():
            records = future.result()
            for record in records:
                progress.finish(record)
            log.failed_in(future.task_run_id, records, jobs)
            log.fail_ended()
        hand_out(slot)


class Dispatcher:
    """The shards of one level, handed to workers as they free up.

    A worker takes its own planned shards in order. One that has none left takes a shard still
    queued for another worker: one whose pipeline it holds if there is any, else any, always from
    the worker with the most queued cost and from the end of its queue, so the owner's run of
    shards (and its loaded pipeline) stays unbroken as long as possible.
    """

    def __init__(self, shards: list[Shard], workers: int) -> None:
        self.queues: list[list[Shard]] = [[shard for shard in shards if shard.worker == w] for w in range(workers)]
        self.held: dict[int, tuple] = {}  # worker -> the pipeline of the last shard it took
        self.stolen = 0

    @property
    def queued(self) -> int:
        return sum(map(len, self.queues))

    def next_for(self, worker: int) -> Shard | None:
        if self.queues[worker]:
            shard = self.queues[worker].pop(0)
        else:
            victims = [w for w, queue in enumerate(self.queues) if queue]
            if not victims:
                return None
            held = self.held.get(worker)
            same = [w for w in victims if any(shard.pipeline_key == held for shard in self.queues[w])]
            victim = self.queues[max(same or victims, key=lambda w: sum(shard.cost for shard in self.queues[w]))]
            place = max(i for i, shard in enumerate(victim) if not same or shard.pipeline_key == held)
            shard = victim.pop(place)
            self.stolen += 1
        self.held[worker] = shard.pipeline_key
        return shard
