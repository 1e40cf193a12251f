"""The batch render flow: manifest -> jobs -> plan -> render on workers -> records -> grids + report.

Run it as ``videosweep run MANIFEST``, as ``python -m videosweep.flows.render MANIFEST``, or deploy it to
a Prefect server. The steps are plain functions in ``tasks/``; where the jobs render (this process,
or Dask workers, shard by shard) is ``flows.dispatch``'s.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

from prefect import flow, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from videosweep.tasks import children
from videosweep.tasks.devices import resolve_device
from videosweep.tasks.jobs import Job
from videosweep.tasks.manifest import Limits, load_manifest
from videosweep.tasks.outroot import check_room, claim, default_out_root, keep_reserve
from videosweep.tasks.plan import Plan, make_plan
from videosweep.tasks.progress import job_progress, startup
from videosweep.tasks.provenance import write_lock
from videosweep.tasks.render import RunContext
from videosweep.tasks.render.labels import run_tags
from videosweep.tasks.report import Outputs, draw_outputs, results_rows, summary_markdown
from videosweep.tasks.results import compact_after_run, pending, read_results, run_records
from videosweep.tasks.summary import RunSummary
from videosweep.tasks.text import markdown
from videosweep.tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

from .api_server import api_failure
from .cluster import dask_runner, share_prefect_api, worker_count
from .dispatch import on_dask, render_plan


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
) -> RunSummary | State:
    """Render every job of ``manifest`` not yet rendered into ``out`` (all of them with ``force``).

    ``retry_failed`` renders only the jobs whose last attempt failed; ``hang_timeout`` cancels a
    job after that many seconds without progress; ``overlap_export`` encodes a job's mp4 while
    the next one renders; ``batch`` renders up to that many consecutive jobs that differ only in
    their seed and per-video inputs in one pipeline call (tasks.render.batches); ``limits`` raises
    the manifest's bounds (fields of tasks.manifest.Limits: ``max_jobs``, ``max_manifest_bytes``).

    The run's summary; when a job failed, a Failed state ("N of M jobs failed") with the summary
    as its data, so the Prefect UI does not call the run Completed (:func:`run_manifest` unwraps it).
    """
    device = (device or "cpu") if on_dask() else resolve_device(device)
    table = load_manifest(manifest, device, Limits(**(limits or {})))
    out_root = Path(out) if out else default_out_root(table.name)
    run = RunContext.new(out_root, device, table, hang_timeout, overlap_export, batch)
    labels = run_tags(table.name, table.jobs)
    _tag_flow_run(labels)
    with tags(*labels), claim(out_root, run.run_id, table.name):  # one run per output root; tidies what a killed run left
        done, todo = pending(table, out_root, force, retry_failed)
        check_room(out_root, todo)
        keep_reserve(out_root)
        write_lock(table, out_root)  # the expanded job table, revisions and input hashes resolved
        plan = make_plan(todo, workers, batch)
        started = time.perf_counter()
        with job_progress(len(todo)) as progress:
            render_plan(plan, run, done.attempts, progress)
        wall_s = time.perf_counter() - started
        compact_after_run(out_root)  # many small parts into one, before the reads below (the root is still held)
        records = run_records(out_root, run.run_id, progress.records)  # a full disk may have kept one off the disk
        # grids and report where the workers are (no frames in this process), then the UI's artifacts
        outputs = draw_outputs_task.submit(out_root, table.grids, [job.job_id for job in table.jobs]).result()
        _publish(table.name, out_root, outputs)
    summary = RunSummary.of(run, total=len(table.jobs), records=records, wall_s=wall_s, outputs=outputs)
    if summary.failed:
        return Failed(message=f"{summary.failed} of {summary.total} jobs failed", data=summary)
    return summary


def _tag_flow_run(labels: list[str]) -> None:
    """Tag this flow run with the manifest's name and models (known only once the flow has read the manifest)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    flow_run = FlowRunContext.get().flow_run
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, tags=list(dict.fromkeys([*flow_run.tags, *labels])))
    except Exception:  # noqa: BLE001 - the UI's view of a run never ends it
        logging.getLogger("videosweep.flows").debug("could not tag the flow run", exc_info=True)


def _summary(state: State) -> RunSummary:
    """The summary a run of the flow returned, Completed or Failed because jobs failed; what the flow raised, raised."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def artifact_key(name: str) -> str:
    """The prefix of a run's artifact keys: one per manifest (or output root), as Prefect keys allow."""
    return "videosweep-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _publish(name: str, out_root: Path, outputs: Outputs) -> None:
    """The summary and the results table as artifacts of this flow run, for the Prefect UI (an API that refuses
    them is a warning: the run's videos and results are on disk already)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = artifact_key(name)
    attempts = read_results(out_root)
    summary = summary_markdown(out_root, attempts, outputs)
    try:
        create_markdown_artifact(summary, key=f"{key}-summary", description=markdown(out_root))
        create_table_artifact(results_rows(attempts), key=f"{key}-results", description=markdown(f"results of {out_root}"))
    except Exception as exc:  # noqa: BLE001 - the UI's view of a run never ends it
        said = api_failure(exc) or f"{type(exc).__name__}: {exc}"
        logging.getLogger("videosweep.flows").warning("the Prefect UI will not show this run's summary: %s", said)


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
    run_name: str | None = None,
) -> RunSummary:
    """Run the flow here, or with its tasks on Dask: a local cluster of ``workers``, or ``dask_address``;
    ``run_name`` names its flow run (a queued run's, so that it has one name), else Prefect does."""
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
        flow = render_manifest.with_options(flow_run_name=run_name)
        return _summary(flow(manifest, out, device, workers=1, **options, return_state=True))
    share_prefect_api()
    startup.show(f"connecting to Dask at {dask_address}…" if dask_address else f"starting {slots} Dask workers…")
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            slots = len(client.scheduler_info(n_workers=-1)["workers"])
    # a worker pinned to one GPU sees it as "cuda"
    worker_device = "cuda" if device.startswith("cuda") else device
    flow = render_manifest.with_options(task_runner=runner, flow_run_name=run_name)
    return _summary(flow(manifest, out, worker_device, workers=slots, **options, return_state=True))


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
