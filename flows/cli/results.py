"""``results``, ``show`` and ``inspect``: what an output root's records say, as a table, per job, or from a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.text import Text

from videosweep.tasks.text import printable

from .arguments import MESSAGE_LIMIT, JobArg, OutArg, out, plain_errors, refuse


def results(
    out_root: Annotated[Path, typer.Argument(help="an output root: the folder that holds results/")],
    where: Annotated[
        Optional[str], typer.Option("--where", help="a pandas query over the columns: 'seed == 42 and status == \"ok\"'")
    ] = None,
    columns: Annotated[
        Optional[str],
        typer.Option("--columns", help="comma-separated (default: job, varying parameters, status, total_s, metrics)"),
    ] = None,
    sort: Annotated[
        Optional[str], typer.Option("--sort", help="comma-separated columns, '-' before one for descending: -motion_score")
    ] = None,
    fmt: Annotated[Literal["table", "csv", "json", "parquet"], typer.Option("--format")] = "table",
    summary: Annotated[
        Optional[bool],
        typer.Option(
            "--summary/--no-summary",
            help="means by value of each varying parameter (default: after the table; csv/json/parquet: instead of rows)",
        ),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="file for csv/json/parquet (parquet needs one; else stdout)")
    ] = None,
) -> None:
    """Show the latest attempt of each job in OUT's results table: selected, sorted, summarised by parameter."""
    from videosweep.tasks.query import (
        export,
        latest_attempts,
        parameter_summary,
        rich_table,
        root_summary,
        select,
        with_swept_columns,
    )
    from videosweep.tasks.layout import RESULTS_DIR
    from videosweep.tasks.results import read_results

    if not any((out_root / RESULTS_DIR).glob("part-*.parquet")):
        refuse(f"no results under {out_root / RESULTS_DIR}: give the --out folder of a run (outputs/<manifest name>)")
    if fmt == "parquet" and output is None:
        refuse("--format parquet writes a file: add --output FILE.parquet")
    if fmt == "table" and output is not None:
        refuse("--output needs --format csv, json or parquet")
    attempts = read_results(out_root)
    table = with_swept_columns(latest_attempts(attempts))
    with plain_errors():  # a QueryError names the column or expression
        rows = select(table, where, list(table.columns), sort)  # every column: the summary averages what is not shown
        shown = select(rows, columns=[name.strip() for name in columns.split(",")] if columns else None)
        per_value = parameter_summary(rows) if summary or (summary is None and fmt == "table") else None
    if fmt != "table":
        text = export(per_value if summary else shown, fmt, output)
        if text is not None:
            typer.echo(text, nl=False)
        return
    facts = root_summary(attempts).items()
    out.print(Text(printable("; ".join(f"{label}: {text}" for label, text in facts if text))))
    out.print(rich_table(shown, title=f"{len(shown)} of {len(table)} jobs (latest attempt of each)"))
    if per_value is None:
        return
    for parameter, group in per_value.groupby("parameter", sort=False):
        by_value = group.drop(columns="parameter").rename(columns={"value": parameter})
        out.print(rich_table(by_value, title=f"by {parameter} (time and metrics: means over ok jobs)"))


def show(out_root: OutArg, job_id: JobArg) -> None:
    """Print the full record of a job (its latest ok attempt), readable: JOB_ID is an id, a prefix of one, or #N."""
    from videosweep.tasks.reproduce import find_record, job_label, readable

    with plain_errors():
        record = find_record(out_root, job_id)
    typer.echo(printable(f"# {job_label(record)}"))  # a YAML comment: the output stays YAML
    typer.echo(readable(record), nl=False)


def inspect(video: Annotated[Path, typer.Argument(help="an mp4 rendered by videosweep, or a grid of them")]) -> None:
    """Print the record a video carries in its container metadata; for a sweep grid, what its sidecar says."""
    from videosweep.tasks.grid import grid_sidecar
    from videosweep.tasks.provenance import read_embedded_record
    from videosweep.tasks.reproduce import readable

    found = grid_sidecar(video) if video.is_file() else None
    if found is None:
        with plain_errors():
            typer.echo(readable(read_embedded_record(video)), nl=False)
        return
    sidecar, grid = found
    axes = ", ".join(f"{axis}={grid[axis]}" for axis in ("x", "y") if grid.get(axis))
    axes += f", z={grid['z']} ({grid['z']}={grid.get('z_value')})" if grid.get("z") else ""
    lines = [
        f"{video}: a sweep grid drawn by videosweep, not one job's video: it carries no record",
        f"sidecar: {sidecar}",
        f"grid: {axes}; {grid.get('rows')} x {grid.get('cols')} cells, {grid.get('frames')} frames at "
        f"{grid.get('fps')} fps, {grid.get('width')}x{grid.get('height')}",
        "cells (videosweep show OUT JOB prints a cell's record):",
    ]
    for cell in grid["cells"]:
        where = ", ".join(f"{grid[axis]}={cell.get(axis)}" for axis in ("x", "y") if grid.get(axis))
        lines.append(f"  {where}: {cell.get('job_id') or 'no job'} ({cell.get('status')})")
    for line in lines:
        typer.echo(printable(line, MESSAGE_LIMIT))
