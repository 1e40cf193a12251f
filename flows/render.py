"""The batch render flow: manifest -> jobs -> plan -> render tasks -> summary.

Run it as ``videosweep run MANIFEST``, as ``python -m flows.render MANIFEST``, or deploy it to
a Prefect server. The logic lives in ``tasks/``; this module only wires it. In one process a
task renders one job (or, with ``--batch``, several in one pipeline call); on Dask (``--workers
N``, ``--dask-address``) a task renders a shard of jobs on one worker, whose pipeline cache
lives as long as the worker.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from tasks import children
from tasks.devices import resolve_device
from tasks.jobs import Job
from tasks.manifest import Limits, Manifest, load_manifest
from tasks.plan import Dispatcher, Plan, Shard, make_plan
from tasks.progress import JobProgress, job_progress
from tasks.render import Exporter, RunContext, batches, render_jobs, render_shard, warm_up, worker_lost_record
from tasks.reproduce import write_lock
from tasks.outroot import check_room, claim, keep_reserve
from tasks.report import Outputs, draw_outputs, results_rows, summary_markdown
from tasks.results import History, history, read_results
from tasks.summary import RunSummary
from tasks.text import markdown
from tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

from .cluster import dask_runner, share_prefect_api, worker_count

#: Rounds of handing the jobs of lost workers to the remaining ones, before they are recorded as failed.
RECOVERY_ROUNDS = 2


def default_out_root(manifest_name: str) -> Path:
    return Path("outputs") / manifest_name


# Resuming comes from the records on disk (a job with an ok record is skipped), so no Prefect cache.
@task(name="render-job", task_run_name="{name}", cache_policy=NO_CACHE)
def render_job_task(name: str, jobs: list[Job], run: RunContext, attempts: dict, exporter: Exporter) -> list[dict]:
    """Render one job (or a batch in one pipeline call) here; exports go on beside the next: the records finished meanwhile."""
    return render_jobs(jobs, run, attempts, exporter)


@task(name="render-shard", task_run_name="{name}", cache_policy=NO_CACHE)
def render_shard_task(name: str, jobs: list[Job], run: RunContext, attempts: dict, queued_at: datetime) -> list[dict]:
    return render_shard(jobs, run, attempts, queued_at)


@task(name="grids-and-report", cache_policy=NO_CACHE)
def draw_outputs_task(out_root: Path, grids: list[dict], job_ids: list[str]) -> Outputs:
    return draw_outputs(out_root, grids, job_ids)


@flow(name="videosweep-run", validate_parameters=False)
def render_manifest(
    manifest: str,
    out: str | None = None,
    device: str | None = None,
    force: bool = False,
    workers: int = 1,
    retry_failed: bool = False,
    hang_timeout: float | None = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: bool = True,
    batch: int = 1,
    limits: dict[str, int] | None = None,
) -> RunSummary:
    """Render every job of ``manifest`` not yet rendered into ``out`` (all of them with ``force``).

    ``retry_failed`` renders only the jobs whose last attempt failed; ``hang_timeout`` cancels a
    job after that many seconds without progress; ``overlap_export`` encodes a job's mp4 while
    the next one renders; ``batch`` renders up to that many consecutive jobs that differ only in
    their seed and per-video inputs in one pipeline call (tasks.render.batches); ``limits`` raises
    the manifest's bounds (fields of tasks.manifest.Limits: ``max_jobs``, ``max_manifest_bytes``).
    """
    distributed = _on_dask()
    device = resolve_device(device) if not distributed else (device or "cpu")
    table = load_manifest(manifest, device, Limits(**(limits or {})))
    out_root = Path(out) if out else default_out_root(table.name)
    run = RunContext.new(out_root, device, table, hang_timeout, overlap_export, batch)
    with claim(out_root, run.run_id, table.name):  # one run per output root; tidies what a killed run left
        done, todo = pending(table, out_root, force, retry_failed)
        check_room(out_root, todo)
        keep_reserve(out_root)
        write_lock(table, out_root)  # the expanded job table, revisions and input hashes resolved
        plan = make_plan(todo, workers, batch)
        if distributed and todo:
            # every worker imports torch and diffusers now, all at once, rather than in its first job
            FlowRunContext.get().task_runner.client.run(warm_up)
        started = time.perf_counter()
        with job_progress(len(todo)) as progress:
            for level in plan.levels:
                if distributed:
                    _render_on_dask(level, run, done.attempts, progress)
                else:
                    with Exporter(run.overlap_export) as exporter:  # a level's videos are all out before the next
                        for jobs in batches([job for shard in level for job in shard.jobs], run.batch, run.run_id):
                            progress.start(jobs[0])
                            name = jobs[0].job_id + (f" +{len(jobs) - 1}" if len(jobs) > 1 else "")
                            # the batch's own attempts: Prefect walks every input of a task
                            attempts = {job.job_id: done.attempts.get(job.job_id, 0) for job in jobs}
                            for record in render_job_task(name, jobs, run, attempts, exporter):
                                progress.finish(record)
                            if progress.stopped:
                                break
                        for record in exporter.drain():
                            progress.finish(record)
                if progress.stopped:  # the disk is full: what is done is recorded, the rest waits for a rerun
                    break
        records, wall_s = _records_of(run), time.perf_counter() - started
        recorded = {(record["job_id"], record["attempt"]) for record in records}  # a full disk may have kept one off
        records += [record for record in progress.records if (record["job_id"], record["attempt"]) not in recorded]
        # grids and report where the workers are (no frames in this process), then the UI's artifacts
        outputs = draw_outputs_task.submit(out_root, table.grids, [job.job_id for job in table.jobs]).result()
        _publish(table.name, out_root, outputs)
    return RunSummary.of(run, total=len(table.jobs), records=records, wall_s=wall_s, outputs=outputs)


def _publish(name: str, out_root: Path, outputs: Outputs) -> None:
    """The summary and the results table as artifacts of this flow run, for the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = "videosweep-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    attempts = read_results(out_root)
    summary = summary_markdown(out_root, attempts, outputs)
    create_markdown_artifact(summary, key=f"{key}-summary", description=markdown(out_root))
    create_table_artifact(results_rows(attempts), key=f"{key}-results", description=markdown(f"results of {out_root}"))


def _render_on_dask(level: list[Shard], run: RunContext, attempts: dict[str, int], progress: JobProgress) -> None:
    """Hand a level's shards to the workers as they free up; give the jobs of a lost worker to the others."""
    client = FlowRunContext.get().task_runner.client  # the runner's own: its cluster starts on first use

    shards, pending = level, [job for shard in level for job in shard.jobs]
    for _ in range(1 + RECOVERY_ROUNDS):
        addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if any(shard.worker >= len(addresses) for shard in shards):  # fewer workers than planned for: plan again
            shards = make_plan(pending, max(1, len(addresses)), run.batch).shards
        _dispatch(client, Dispatcher(shards, len(addresses)), addresses, run, attempts, progress)
        # the records on disk are the truth: a worker that died mid-shard wrote the jobs it finished
        recorded = {record["job_id"] for record in _records_of(run)}
        pending = [job for job in pending if job.job_id not in recorded]
        if not pending or progress.stopped:
            return
        workers = len(client.scheduler_info(n_workers=-1)["workers"]) or 1
        shards = make_plan(pending, workers, run.batch).shards  # what is left
    for job in pending:
        progress.finish(worker_lost_record(job, run, attempts.get(job.job_id, 0) + 1))


def _dispatch(client, dispatcher: Dispatcher, addresses: list[str], run, attempts, progress: JobProgress) -> None:
    """One shard in flight per worker, the next one chosen by ``dispatcher`` when it finishes.

    A shard is pinned to its worker but may run on another if that worker is gone (Dask's loose
    restrictions), so a lost worker's queue still gets rendered. A GPU resource is asked for only
    where every worker declares one: a task asking for it would wait forever.
    """
    import dask
    import distributed

    gpu_slots = all("GPU" in info.get("resources", {}) for info in client.scheduler_info(n_workers=-1)["workers"].values())
    queued_at = datetime.now(timezone.utc)  # every job of the level waits from now until a worker takes it
    in_flight: dict[distributed.Future, tuple[int, object]] = {}
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
            future = render_shard_task.submit(shard.name, shard.jobs, run, attempts, queued_at)
        in_flight[future.wrapped_future] = (slot, future)
        finished.add(future.wrapped_future)

    for slot in range(len(addresses)):
        hand_out(slot)
    for wrapped in finished:
        slot, future = in_flight.pop(wrapped)
        if future.state.is_completed():
            for record in future.result():
                progress.finish(record)
        hand_out(slot)


def _records_of(run: RunContext) -> list[dict]:
    table = read_results(run.out_root)
    return table[table["run_id"] == run.run_id].to_dict(orient="records")


def _on_dask() -> bool:
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, DaskTaskRunner)


def run_manifest(
    manifest: str,
    out: str | None = None,
    device: str | None = None,
    force: bool = False,
    workers: int | None = None,
    dask_address: str | None = None,
    retry_failed: bool = False,
    hang_timeout: float | None = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: bool = True,
    batch: int = 1,
    limits: dict[str, int] | None = None,
) -> RunSummary:
    """Run the flow here, or with its tasks on Dask: a local cluster of ``workers``, or ``dask_address``."""
    children.start_reaper()  # before the Prefect server or a Dask worker starts: they end with this process
    device = device or resolve_device(None)
    slots = worker_count(workers, device)
    runner = dask_runner(slots, dask_address, device)
    options = {
        "force": force,
        "retry_failed": retry_failed,
        "hang_timeout": hang_timeout,
        "overlap_export": overlap_export,
        "batch": batch,
        "limits": limits,
    }
    if runner is None:
        return render_manifest(manifest, out, device, workers=1, **options)
    share_prefect_api()
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            slots = len(client.scheduler_info(n_workers=-1)["workers"])
    # a worker pinned to one GPU sees it as "cuda"
    worker_device = "cuda" if device.startswith("cuda") else device
    return render_manifest.with_options(task_runner=runner)(manifest, out, worker_device, workers=slots, **options)


def pending(table: Manifest, out_root: Path, force: bool, retry_failed: bool = False) -> tuple[History, list[Job]]:
    """What earlier runs left in ``out_root``, and the jobs of ``table`` still to render.

    A finished job whose video a job still to render takes, but whose lossless frames are not
    there intact (rendered before videosweep kept them, or the file is gone or changed), renders
    again first, so that the job taking its video reads its frames exactly rather than its H.264 mp4.
    """
    done = history(out_root)
    if retry_failed:
        todo = {job.job_id for job in table.jobs if job.job_id in done.failed}
    else:
        todo = {job.job_id for job in table.jobs if force or job.job_id not in done.finished}
    known = {job.job_id: job for job in table.jobs}
    wanted = list(todo)
    while wanted:  # sources of sources too: a chain of three whose middle job renders again
        for source in known[wanted.pop()].depends_on:
            if source in known and source not in todo and source not in done.frames:
                todo.add(source)
                wanted.append(source)
    return done, [job for job in table.jobs if job.job_id in todo]


def plan_manifest(
    manifest: str,
    device: str | None = None,
    workers: int | None = None,
    force: bool = False,
    out: str | None = None,
    batch: int = 1,
    limits: dict[str, int] | None = None,
) -> tuple[Plan, list[Job]]:
    """The plan a run would follow (what is left to render, placed on the workers), without running it."""
    device = device or resolve_device(None)
    table = load_manifest(manifest, device, Limits(**(limits or {})))
    _, todo = pending(table, Path(out) if out else default_out_root(table.name), force)
    return make_plan(todo, worker_count(workers, device), batch), todo


if __name__ == "__main__":
    summary = run_manifest(*sys.argv[1:2])
    print(summary.format())
    sys.exit(1 if summary.failed else 0)
