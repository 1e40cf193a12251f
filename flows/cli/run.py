"""``run``, ``plan`` and ``validate``: a manifest rendered, placed, or checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from videosweep.tasks.text import printable, printable_lines
from videosweep.tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

from .arguments import (
    CELL_LIMIT,
    MESSAGE_LIMIT,
    BatchOpt,
    DeviceOpt,
    ForceOpt,
    HangTimeoutOpt,
    ManifestArg,
    MaxJobsOpt,
    MaxManifestOpt,
    OverlapExportOpt,
    WorkersOpt,
    limits,
    load,
    out,
    plain_errors,
    refuse,
)


def run(
    manifest: ManifestArg,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="output root (default: outputs/<manifest name>)")
    ] = None,
    device: DeviceOpt = None,
    force: ForceOpt = False,
    workers: WorkersOpt = None,
    dask_address: Annotated[
        Optional[str], typer.Option("--dask-address", help="an existing Dask scheduler, e.g. tcp://host:8786")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="render only the jobs whose last attempt failed")
    ] = False,
    hang_timeout: HangTimeoutOpt = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: OverlapExportOpt = True,
    batch: BatchOpt = 1,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
) -> None:
    """Render every job of MANIFEST; jobs already rendered into the output root are skipped."""
    if force and retry_failed:
        refuse("--force renders every job again, --retry-failed only the failed ones: give one of them, not both")
    from videosweep.tasks import children
    from videosweep.tasks.progress import startup

    bounds = limits(max_jobs, max_manifest_mb)
    with startup:  # on a terminal, one line says what the run waits for until its progress bar appears
        startup.show(f"reading {manifest.name}…")
        _refuse_at_once(manifest, out_dir, dask_address, bounds)
        children.start_reaper()  # before any child process: each carries this run's mark and ends with it
        table = load(manifest, device, bounds)  # fail fast, before Prefect starts
        from videosweep.flows import process
        from videosweep.flows.api_server import start_prefect_api
        from videosweep.flows.cluster import worker_count
        from videosweep.tasks.outroot import check_manifest_location, check_room, claim, default_out_root
        from videosweep.tasks.results import pending

        out_root = out_dir or default_out_root(table.name)
        # the setup must work before the run starts: the root free, writable and roomy (exit 2 if not)
        with plain_errors(), claim(out_root, None, table.name):
            check_manifest_location(manifest, out_root)
            check_room(out_root, pending(table, out_root, force, retry_failed)[1])
            process.resume_hint = "finished jobs are kept; the same command renders the rest"
            prefect_api = start_prefect_api()  # a server of its own, where one is needed, boots on another core from now on
            startup.show("starting Prefect, loading torch…")
            from videosweep.flows.render import run_manifest
            from videosweep.tasks.render.cache import warm_up

            process.quiet_libraries()
            here = dask_address is None and worker_count(workers, table.device) == 1  # the jobs render in this process
            warm_up(table.jobs, table.device if here else None)  # torch and diffusers import, the first pipeline loads
            prefect_api()
            try:
                summary = run_manifest(
                    str(manifest), str(out_root), table.device, force, workers, dask_address,
                    retry_failed=retry_failed, hang_timeout=hang_timeout or None, overlap_export=overlap_export,
                    batch=batch, limits=bounds,
                )
            except Exception as exc:
                _api_failed(exc, out_root)
                raise
    typer.echo(summary.format())
    raise typer.Exit(1 if summary.failed else 0)


def _api_failed(exc: Exception, out_root: Path) -> None:
    """Where ``exc`` says the Prefect API failed during the run (not videosweep): one line, and exit 1; the jobs
    that finished are recorded under ``out_root`` all the same."""
    import logging

    from videosweep.flows import process
    from videosweep.flows.api_server import api_failure

    log = process.owned_log_path()
    failed = api_failure(exc, log)
    if failed is None:
        return
    logging.getLogger("videosweep.flows").info("the Prefect API failed", exc_info=exc)  # the log file only
    where = f" Details in {log}." if log else ""
    typer.echo(printable(
        f"{failed}. What finished is kept (videosweep results {out_root}); the same command renders the rest.{where}",
        MESSAGE_LIMIT,
    ), err=True)  # fmt: skip
    raise typer.Exit(1)


def _refuse_at_once(manifest: Path, out_dir: Path | None, dask_address: str | None, bounds: dict[str, int]) -> None:
    """Exit 2 at once, before the manifest's models are resolved (or built) or anything starts, if the output root
    is busy (as the run's claim would say), or nothing answers at ``--dask-address`` or at the environment's
    ``PREFECT_API_URL``."""
    import os

    from videosweep.flows.api_server import check_answers
    from videosweep.flows.cluster import check_scheduler
    from videosweep.tasks.manifest import Limits, run_name
    from videosweep.tasks.outroot import check_free, default_out_root

    with plain_errors():
        if dask_address:
            check_scheduler(dask_address)
        if os.environ.get("PREFECT_API_URL"):
            check_answers(os.environ["PREFECT_API_URL"], "the environment")
        if out_dir is None and (name := run_name(manifest, Limits(**bounds))):  # None: load says what is wrong
            out_dir = default_out_root(name)
        if out_dir is not None:
            check_free(out_dir)


def plan(
    manifest: ManifestArg,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output root whose finished jobs are left out")] = None,
    force: Annotated[bool, typer.Option("--force", help="plan every job, finished or not")] = False,
    batch: BatchOpt = 1,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
) -> None:
    """Show how a run would place MANIFEST's jobs: shards, workers, estimated cost, pipeline loads."""
    bounds = limits(max_jobs, max_manifest_mb)
    table = load(manifest, device, bounds)
    from videosweep.flows.render import plan_manifest
    from videosweep.tasks.plan import naive_loads

    with plain_errors():
        out_root = str(out_dir) if out_dir else None
        placed, todo = plan_manifest(str(manifest), table.device, workers, force, out_root, batch, bounds)
    typer.echo(f"{len(todo)} of {len(table.jobs)} jobs to render (cost: megapixel-frame-steps)")
    typer.echo(printable_lines(placed.format()))
    typer.echo(f"pipeline loads: {placed.loads} planned, {naive_loads(todo, placed.workers)} in manifest order")


def validate(
    manifest: ManifestArg,
    device: DeviceOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="print every job, not the first 20")] = False,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
) -> None:
    """Expand and check MANIFEST without rendering: print the job table, or every problem."""
    table = load(manifest, device, limits(max_jobs, max_manifest_mb))
    shown = table.jobs if show_all else table.jobs[:20]
    import pandas as pd

    from videosweep.tasks.query import rich_table

    fixed = ("job_id", "origin", "model", "dtype")  # a swept model or dtype shows in its own column
    swept = [key for key in dict.fromkeys(key for job in table.jobs for key in job.coords) if key not in fixed]
    header = ["job_id", "origin", "model", *(printable(key, CELL_LIMIT) for key in swept), "dtype"]
    cells = [[job.job_id, job.origin, job.model, *(str(job.coords.get(key, "")) for key in swept), job.dtype] for job in shown]
    title = f"{table.name}: {len(table.jobs)} jobs on {table.device}"
    frame = pd.DataFrame(cells, columns=header, dtype=object)
    out.print(rich_table(frame, title, width=out.width, keep=header[:1] + header[3:-1], id_length=None))
    if len(shown) < len(table.jobs):
        out.print(f"... and {len(table.jobs) - len(shown)} more (--all prints them)")
    for spec in table.grids:
        out.print(Text(printable("grid: " + ", ".join(f"{axis}={key}" for axis, key in spec.items()))))
