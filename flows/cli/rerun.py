"""``rerun`` and ``export-manifest``: recorded jobs rendered again, or written out as a manifest that does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from videosweep.tasks.text import printable, printable_lines

from .arguments import MESSAGE_LIMIT, DeviceOpt, JobArg, OutArg, plain_errors
from .outputs import refresh_pages


def rerun(
    out_root: OutArg,
    job_id: JobArg,
    into: Annotated[Optional[Path], typer.Option("--into", help="output root of the rerun (default: OUT/reruns)")] = None,
    sets: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="key=value (repeatable): render a new job, linked to this one, with these values"),
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Render a recorded job again from its record; say whether the video is bit-identical, or make a derived job (--set)."""
    from videosweep.tasks.devices import resolve_device
    from videosweep.tasks.reproduce import job_label, plan_rerun, run_rerun

    with plain_errors():
        planned = plan_rerun(out_root, job_id, sets or [], resolve_device(device), into)
    typer.echo(printable(f"recorded {job_label(planned.record)}"))
    for line in planned.differences:
        typer.echo(printable(f"differs from the record: {line}", MESSAGE_LIMIT))
    for line in planned.notes:
        typer.echo(printable_lines(line, MESSAGE_LIMIT))
    typer.echo(printable(f"rendering job {planned.job.job_id} into {planned.into}"))
    outcome = run_rerun(planned)
    typer.echo(printable_lines(outcome.message, MESSAGE_LIMIT))
    refresh_pages(planned.into, planned.out_root)  # the rerun's root, and OUT's page, which lists OUT/reruns
    raise typer.Exit(0 if outcome.record["status"] == "ok" else 1)


def export_manifest(
    out_root: OutArg,
    where: Annotated[
        Optional[str], typer.Option("--where", help="a pandas query on the results, e.g. 'motion_bucket_id == 127'")
    ] = None,
) -> None:
    """Print a YAML manifest that renders exactly the selected jobs of OUT (same job ids)."""
    from videosweep.tasks.reproduce import export_manifest as export

    with plain_errors():
        typer.echo(export(out_root, where), nl=False)
