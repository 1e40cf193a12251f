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
    all_attempts: Annotated[
        bool, typer.Option("--all-attempts", help="every attempt of each job (attempt, run id, status), not the latest only")
    ] = False,
    compare: Annotated[
        Optional[tuple[str, str]],
        typer.Option(
            "--compare",
            metavar="RUN_A RUN_B",
            help="the jobs two runs both rendered, side by side with the differences (a run id or a unique prefix of one)",
        ),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="file for csv/json/parquet (parquet needs one; else stdout)")
    ] = None,
) -> None:
    """Show the latest attempt of each job in OUT's results table (--all-attempts: every attempt; --compare: two runs
    side by side): selected, sorted, summarised by parameter."""
    from videosweep.tasks.query import (
        attempt_columns,
        compare_runs,
        export,
        latest_attempts,
        parameter_summary,
        rich_table,
        root_summary,
        rows_where,
        select,
        varying_parameters,
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
    if compare and (all_attempts or summary):
        refuse("--compare shows the jobs of two runs: leave out --all-attempts and --summary")
    attempts = read_results(out_root)
    chosen = [name.strip() for name in columns.split(",")] if columns else None
    hint = "--columns chooses what to show; --format csv shows every column"
    if compare:
        with plain_errors():
            compared = compare_runs(rows_where(with_swept_columns(attempts), where) if where else attempts, *compare)
            shown = select(compared.table, columns=chosen or list(compared.table.columns), sort=sort)
        if fmt != "table":
            _echo(export(shown, fmt, output))
            return
        out.print(rich_table(shown, title=compared.title(), width=out.width, keep=compared.keep, hint=hint))
        return
    table = with_swept_columns(latest_attempts(attempts))
    with plain_errors():  # a QueryError names the column or expression
        rows = select(table, where, list(table.columns), sort)  # every column: the summary averages what is not shown
        if all_attempts:
            every = with_swept_columns(attempts).sort_values(["job_index", "job_id", "attempt"], kind="stable")
            listed = select(every, where, list(every.columns), sort)
            shown = select(listed, columns=chosen or attempt_columns(listed))
        else:
            shown = select(rows, columns=chosen)
        per_value = parameter_summary(rows) if summary or (summary is None and fmt == "table") else None
    if fmt != "table":
        _echo(export(per_value if summary else shown, fmt, output))
        return
    facts = root_summary(attempts).items()
    out.print(Text(printable("; ".join(f"{label}: {text}" for label, text in facts if text))))
    keep = ["job_id", *varying_parameters(rows), "status", "attempt", "run_id"]  # most wanted first
    what = f"{len(shown)} attempts of {len(rows)} jobs" if all_attempts else f"{len(shown)} of {len(table)} jobs (latest attempt of each)"
    out.print(rich_table(shown, title=what, width=out.width, keep=keep, hint=hint))
    if per_value is None:
        return
    for parameter, group in per_value.groupby("parameter", sort=False):
        by_value = group.drop(columns="parameter").rename(columns={"value": parameter})
        title = f"by {parameter} (latest attempts; means over ok jobs, render_s without the pipeline load; loads and load_s apart)"
        out.print(rich_table(by_value, title=title, width=out.width, keep=[parameter, "jobs", "ok", "render_s"]))


def compact(out_root: OutArg) -> None:
    """Merge OUT's results parts into one file: the same table, read at once. A run does this itself when it ends."""
    from videosweep.tasks.layout import RESULTS_DIR
    from videosweep.tasks.outroot import RootBusy, claim
    from videosweep.tasks.results import compact as compact_parts

    if not any((out_root / RESULTS_DIR).glob("part-*.parquet")):
        refuse(f"no results under {out_root / RESULTS_DIR}: give the --out folder of a run (outputs/<manifest name>)")
    with plain_errors():
        try:
            with claim(out_root, "compaction", "videosweep compact"):  # no run writes a part meanwhile
                done = compact_parts(out_root)
        except RootBusy as busy:
            refuse(f"cannot compact now: {busy.holder} holds {out_root}; run videosweep compact when it has ended")
    typer.echo(printable(done.format()))


def _echo(text: str | None) -> None:
    if text is not None:
        typer.echo(text, nl=False)


def show(out_root: OutArg, job_id: JobArg) -> None:
    """Print the full record of a job (its latest ok attempt), readable: JOB_ID is an id, a prefix of one, or #N."""
    from videosweep.tasks.reproduce import find_record, job_label, readable

    with plain_errors():
        record = find_record(out_root, job_id)
    typer.echo(printable(f"# {job_label(record)}"))  # a YAML comment: the output stays YAML
    typer.echo(readable(record), nl=False)


def inspect(video: Annotated[Path, typer.Argument(help="an mp4 rendered by videosweep, or a grid of them")]) -> None:
    """Print the record a video carries in its container metadata, and its audio stream where it has one; for a
    sweep grid, what its sidecar says."""
    from videosweep.tasks.grid import grid_sidecar
    from videosweep.tasks.provenance import read_embedded_record
    from videosweep.tasks.reproduce import readable

    found = grid_sidecar(video) if video.is_file() else None
    if found is None:
        with plain_errors():
            typer.echo(readable(read_embedded_record(video)), nl=False)
            sound = audio_stream_lines(video)
        for line in sound:
            typer.echo(printable(line, MESSAGE_LIMIT))
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
        sound = ", with sound" if cell.get("audio") else ""
        lines.append(f"  {where}: {cell.get('job_id') or 'no job'} ({cell.get('status')}{sound})")
    if grid.get("audio_note"):
        lines.append(f"sound: {grid['audio_note']}")
    for line in lines:
        typer.echo(printable(line, MESSAGE_LIMIT))


def audio_stream_lines(video: Path) -> list[str]:
    """The audio stream of ``video`` as read from the file itself (not its record), as YAML lines after the record;
    none for a silent video, whose output stays the record alone."""
    from videosweep.tasks.video import audio_stream, read_audio

    info = audio_stream(video)
    if info is None:
        return []
    codec = info["codec"] + (f" ({info['profile']})" if info.get("profile") else "")
    try:
        samples, rate = read_audio(video)  # decoded whole: what a player would play
    except OSError as exc:
        return ["audio_stream:", f"  codec: {codec}", f"  error: {exc}"]
    lines = [
        "audio_stream:  # as the file's AAC decodes (audio_* above: what was encoded)",
        f"  codec: {codec}",
        f"  sample_rate: {rate}",
        f"  channels: {samples.shape[0]}",
        f"  samples: {samples.shape[1]}",
        f"  duration_s: {samples.shape[1] / rate:.3f}",
    ]
    if info.get("bitrate_kbps"):
        lines.append(f"  bitrate_kbps: {info['bitrate_kbps']}")
    return lines
