"""The batch render flow: manifest -> jobs -> one task per video -> summary.

Run it as ``videosweep run MANIFEST``, as ``python -m flows.render MANIFEST``, or deploy it to
a Prefect server. The logic lives in ``tasks/``; this module only wires it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.devices import resolve_device
from tasks.jobs import Job
from tasks.manifest import load_manifest
from tasks.progress import job_progress
from tasks.render import RunContext, plan, render_job
from tasks.results import history
from tasks.summary import RunSummary


def default_out_root(manifest_name: str) -> Path:
    return Path("outputs") / manifest_name


# Resuming comes from the records on disk (a job with an ok record is skipped), so no Prefect cache.
@task(name="render-job", task_run_name="{job.job_id}", cache_policy=NO_CACHE)
def render_job_task(job: Job, run: RunContext, attempt: int) -> dict:
    return render_job(job, run, attempt)


@flow(name="videosweep-run", validate_parameters=False)
def render_manifest(
    manifest: str, out: str | None = None, device: str | None = None, force: bool = False
) -> RunSummary:
    """Render every job of ``manifest`` not yet rendered into ``out`` (all of them with ``force``)."""
    device = resolve_device(device)
    table = load_manifest(manifest, device)
    out_root = Path(out) if out else default_out_root(table.name)
    done = history(out_root)
    todo = [job for job in plan(table.jobs) if force or job.job_id not in done.finished]
    run = RunContext.new(out_root, device, table)

    records = []
    with job_progress(len(todo)) as progress:
        for job in todo:
            progress.start(job)
            records.append(render_job_task(job, run, done.attempts.get(job.job_id, 0) + 1))
            progress.finish(records[-1])
    return RunSummary.of(run, total=len(table.jobs), records=records)


if __name__ == "__main__":
    summary = render_manifest(*sys.argv[1:2])
    print(summary.format())
    sys.exit(1 if summary.failed else 0)
