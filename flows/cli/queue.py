"""``submit``, ``status``, ``cancel`` and ``worker``: queued runs on a Prefect server (flows/queue.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from videosweep.tasks.text import printable, printable_lines
from videosweep.tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

from .arguments import (
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
    plain_errors,
)

RunArg = Annotated[
    str, typer.Argument(help="a submitted run's name (e.g. night-3fa9c1), its manifest's name, or a prefix of its id")
]
PoolOpt = Annotated[
    Optional[str],
    typer.Option("--pool", help="work pool (default: prefect.yaml's, videosweep): submit queues runs there, worker serves it"),
]


def submit(
    manifest: ManifestArg,
    at: Annotated[
        Optional[str],
        typer.Option("--at", help="start at HH:MM (its next occurrence) or an ISO date and time (default: now)"),
    ] = None,
    priority: Annotated[int, typer.Option("--priority", min=1, max=5, help="1 runs first ... 5 last")] = 3,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="output root (default: outputs/<manifest name>, from here)")
    ] = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
    hang_timeout: HangTimeoutOpt = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: OverlapExportOpt = True,
    batch: BatchOpt = 1,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
    pool: PoolOpt = None,
) -> None:
    """Queue MANIFEST on the Prefect server (PREFECT_API_URL) for `videosweep worker`; a frozen copy of it runs."""
    from datetime import datetime

    from videosweep.flows.queue import api_client, server_url
    from videosweep.flows.queue import submit as queue_run

    with plain_errors():
        server_url()  # no server: refused before the manifest's models are resolved (or built)
    bounds = limits(max_jobs, max_manifest_mb)
    table = load(manifest, device, bounds)  # checked here, on this machine; the worker's device if --device is not given
    from videosweep.tasks.outroot import default_out_root
    from videosweep.tasks.submission import freeze_manifest, start_time

    with plain_errors():
        when = start_time(at, datetime.now()) if at else None
        out_root = (out_dir or default_out_root(table.name)).resolve()
        with api_client() as client:
            copy = freeze_manifest(manifest, out_root)
            rendering = {"hang_timeout": hang_timeout or None, "overlap_export": overlap_export, "batch": batch}
            rendering |= {"limits": bounds} if bounds else {}
            run = queue_run(
                client, copy, out_root, len(table.jobs), when, priority, device, workers, force, rendering, pool,
                name=table.name,
            )
    starts = when.strftime("%Y-%m-%d %H:%M") if when else "as soon as a worker is free"
    typer.echo(printable(f"queued {run.name}: {table.name}, {len(table.jobs)} jobs, priority {priority}"))
    typer.echo(f"starts:   {starts}")
    typer.echo(printable(f"manifest: {copy}"))
    typer.echo(printable(f"output:   {out_root}"))


def status(
    run: Annotated[
        Optional[str], typer.Argument(help="a run's name, its manifest's name or an id prefix: its jobs and ETA")
    ] = None,
) -> None:
    """Submitted runs (queued, running, finished), or one run's jobs done / failed / running and its ETA."""
    from datetime import datetime, timedelta, timezone

    from videosweep.flows.queue import api_client, find_run, manifest_name, run_progress, submitted_runs

    with plain_errors(), api_client() as client:
        if run is None:
            runs = submitted_runs(client)
            # plain columns, not a rich table: paths stay whole and greppable at any width
            # one line a run: its render subflow is part of it, not a run of its own
            rows = [("run", "state", "queue", "scheduled", "manifest", "output")]
            for each in runs:
                when, queue, output = _local(each.expected_start_time), each.work_queue_name, each.parameters["out"]
                rows.append((each.name, each.state_name, queue, when, manifest_name(each), output))
            widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
            typer.echo(f"{len(runs)} submitted runs, latest first")
            for row in rows:
                typer.echo(printable("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()))
            return
        found = find_run(client, run)
        progress = run_progress(client, found)
    typer.echo(printable(f"{found.name} ({found.id}): {found.state_name}"))
    typer.echo(printable(f"manifest: {found.parameters['manifest']}"))
    typer.echo(printable(f"output:   {found.parameters['out']}"))
    started = found.start_time if found.run_count else None  # a run cancelled while queued never started
    times = [("scheduled", found.expected_start_time), ("started", started), ("ended", found.end_time)]
    typer.echo("; ".join(f"{label} {_local(moment)}" for label, moment in times if moment))
    typer.echo(printable_lines(progress.format()))
    if found.state is not None and not found.state.is_final():
        eta = progress.eta_s
        if eta is None:
            typer.echo("ETA: once the first job has finished")
        elif found.state.is_running():
            typer.echo(f"ETA: {eta:.0f} s (about {_local(datetime.now(timezone.utc) + timedelta(seconds=eta))})")
        else:
            typer.echo(f"ETA: {eta:.0f} s of rendering, once it starts")


def cancel(run: RunArg) -> None:
    """Cancel a submitted run: a queued one at once, a running one through its worker."""
    from videosweep.flows.queue import api_client, find_run
    from videosweep.flows.queue import cancel as cancel_run

    with plain_errors(), api_client() as client:
        found = find_run(client, run)
        typer.echo(printable(f"{found.name}: {cancel_run(client, found)}"))


def worker(
    pool: PoolOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="runs at once (each uses every GPU it sees)")] = 1,
) -> None:
    """Serve submitted runs on this machine, one after another (PREFECT_API_URL: the Prefect server)."""
    from videosweep.flows.queue import serve

    with plain_errors():
        serve(pool, limit)


def _local(moment) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""
