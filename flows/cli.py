"""``videosweep``: run, plan, validate, models, results, rerun, show, export-manifest, inspect;
submit, status, cancel, worker (queued runs on a Prefect server).

Exit codes: 0 all good; 1 some jobs failed (the others finished); 2 nothing was done because
the input was wrong (the message says where and how to fix it).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

import flows  # noqa: F401  (quiet, offline defaults before Prefect or diffusers load)
from tasks.errors import InputError
from tasks.text import printable, printable_lines
from tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

app = typer.Typer(
    help="Declarative batch rendering for video diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
MESSAGE_LIMIT = 2000  # characters of one line of a message about the user's input (the input may be huge)
CELL_LIMIT = 200  # characters of a table cell on the terminal

ManifestArg = Annotated[Path, typer.Argument(help="a YAML, CSV or Parquet manifest")]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if a GPU is visible, else cpu)")
]


@contextmanager
def _plain_errors():
    """Input that is wrong (tasks.errors.InputError): its one-line message and exit 2. Anything else is a bug."""
    try:
        yield
    except InputError as exc:
        typer.echo(printable_lines(str(exc), MESSAGE_LIMIT), err=True)
        raise typer.Exit(2) from None


MaxJobsOpt = Annotated[
    Optional[int], typer.Option("--max-jobs", min=1, help="refuse a manifest of more jobs than this (default 100000)")
]
MaxManifestOpt = Annotated[
    Optional[float],
    typer.Option("--max-manifest-mb", min=0.001, help="refuse a larger manifest file (default: 16 for YAML, 256 for CSV/Parquet)"),
]


def _limits(max_jobs: int | None, max_manifest_mb: float | None) -> dict[str, int]:
    """The manifest bounds a user raised (tasks.manifest.Limits fields), as flow parameters take them."""
    limits = {"max_jobs": max_jobs, "max_manifest_bytes": int(max_manifest_mb * 2**20) if max_manifest_mb else None}
    return {name: value for name, value in limits.items() if value is not None}


def _load(manifest: Path, device: str | None, limits: dict[str, int] | None = None):
    """The validated manifest, or a plain message and exit code 2."""
    from tasks.devices import resolve_device
    from tasks.manifest import Limits, load_manifest

    with _plain_errors():
        return load_manifest(manifest, resolve_device(device), Limits(**(limits or {})))


WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, help="worker processes (default: one per visible GPU, 1 on a CPU)"),
]
# how jobs render, for `run` and for a `submit`ted run alike
HangTimeoutOpt = Annotated[
    float, typer.Option("--hang-timeout", min=0, help="cancel a job after this many seconds without progress (0: never)")
]
OverlapExportOpt = Annotated[
    bool, typer.Option("--overlap-export/--no-overlap-export", help="encode a job's mp4 while the next one renders")
]
BatchOpt = Annotated[
    int,
    typer.Option("--batch", min=1, help="videos per pipeline call: consecutive jobs that differ only in seed and image or prompt"),
]


@app.command()
def run(
    manifest: ManifestArg,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="output root (default: outputs/<manifest name>)")
    ] = None,
    device: DeviceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="render again jobs that already have a video")] = False,
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
    from tasks import children

    children.start_reaper()  # before any child process: each carries this run's mark and ends with it
    limits = _limits(max_jobs, max_manifest_mb)
    table = _load(manifest, device, limits)  # fail fast, before Prefect starts
    from flows import process
    from flows.cluster import start_prefect_api
    from flows.render import default_out_root, pending, run_manifest
    from tasks.outroot import check_manifest_location, check_room, claim
    from tasks.render import warm_up

    process.quiet_libraries()
    out_root = out_dir or default_out_root(table.name)
    # the setup must work before anything starts: the root free, writable and roomy (exit 2 if not)
    with _plain_errors(), claim(out_root, None, table.name):
        check_manifest_location(manifest, out_root)
        check_room(out_root, pending(table, out_root, force, retry_failed)[1])
        process.resume_hint = "finished jobs are kept; the same command renders the rest"
        prefect_api = start_prefect_api()  # its server boots while torch and diffusers import
        warm_up()
        prefect_api()
        summary = run_manifest(
            str(manifest), str(out_root), table.device, force, workers, dask_address,
            retry_failed=retry_failed, hang_timeout=hang_timeout or None, overlap_export=overlap_export, batch=batch,
            limits=limits,
        )
    typer.echo(summary.format())
    raise typer.Exit(1 if summary.failed else 0)


@app.command()
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
    limits = _limits(max_jobs, max_manifest_mb)
    table = _load(manifest, device, limits)
    from flows.render import plan_manifest
    from tasks.plan import naive_loads

    with _plain_errors():
        out = str(out_dir) if out_dir else None
        placed, todo = plan_manifest(str(manifest), table.device, workers, force, out, batch, limits)
    typer.echo(f"{len(todo)} of {len(table.jobs)} jobs to render (cost: megapixel-frame-steps)")
    typer.echo(printable_lines(placed.format()))
    typer.echo(f"pipeline loads: {placed.loads} planned, {naive_loads(todo, placed.workers)} in manifest order")


@app.command()
def validate(
    manifest: ManifestArg,
    device: DeviceOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="print every job, not the first 20")] = False,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
) -> None:
    """Expand and check MANIFEST without rendering: print the job table, or every problem."""
    table = _load(manifest, device, _limits(max_jobs, max_manifest_mb))
    shown = table.jobs if show_all else table.jobs[:20]
    swept = list(dict.fromkeys(key for job in table.jobs for key in job.coords))
    grid = Table(title=Text(f"{table.name}: {len(table.jobs)} jobs on {table.device}"), title_justify="left")
    grid.add_column("job_id", no_wrap=True, min_width=16)
    for column in ["origin", "model", *swept, "dtype"]:
        grid.add_column(Text(printable(column, CELL_LIMIT)))
    for job in shown:
        cells = [job.job_id, job.origin, job.model, *(str(job.coords.get(key, "")) for key in swept), job.dtype]
        grid.add_row(*(Text(printable(cell, CELL_LIMIT)) for cell in cells))
    out.print(grid)
    if len(shown) < len(table.jobs):
        out.print(f"... and {len(table.jobs) - len(shown)} more (--all prints them)")
    for spec in table.grids:
        out.print(Text(printable("grid: " + ", ".join(f"{axis}={key}" for axis, key in spec.items()))))


@app.command()
def models() -> None:
    """List the model keys, families and each family's parameters (type, default, range)."""
    from tasks.manifest import JobOptions
    from tasks.models import FAMILIES, known_models

    from tasks.tuning import PipelineOptions

    listing = Table(title="models", title_justify="left")
    for column in ("key", "family", "weights"):
        listing.add_column(column)
    for key, ref in sorted(known_models().items()):
        parts = [ref.source] + [f"{name}: {source}" for name, source in ref.components]
        listing.add_row(key, ref.family, "\n".join(parts))
    out.print(listing)
    out.print("or any hub repo id / local pipeline folder (add `family:` where it cannot be read from the files)\n")
    _print_params("keys of every row", JobOptions, skip=PipelineOptions.model_fields)
    _print_params("pipeline options of every row (memory, speed, scheduler)", PipelineOptions)
    for family, module in FAMILIES.items():
        title = f"{family} ({module.PIPELINE_CLASS}): {module.DESCRIPTION}"
        components = getattr(module, "COMPONENTS", {})
        extra = {name: f"hub id or folder: {meaning}" for name, meaning in components.items()}
        _print_params(title, module.Params, extra=extra)


OutArg = Annotated[Path, typer.Argument(help="an output root (the folder holding results/)")]
JobArg = Annotated[str, typer.Argument(help="a job id, or a unique prefix of one")]


@app.command()
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
    from tasks.devices import resolve_device
    from tasks.reproduce import plan_rerun, run_rerun

    with _plain_errors():
        planned = plan_rerun(out_root, job_id, sets or [], resolve_device(device), into)
    for line in planned.differences:
        typer.echo(printable(f"differs from the record: {line}", MESSAGE_LIMIT))
    for line in planned.notes:
        typer.echo(printable_lines(line, MESSAGE_LIMIT))
    typer.echo(printable(f"rendering job {planned.job.job_id} into {planned.into}"))
    outcome = run_rerun(planned)
    typer.echo(printable_lines(outcome.message, MESSAGE_LIMIT))
    raise typer.Exit(0 if outcome.record["status"] == "ok" else 1)


@app.command()
def show(out_root: OutArg, job_id: JobArg) -> None:
    """Print the full record of a job (its latest ok attempt), readable."""
    from tasks.reproduce import find_record, readable

    with _plain_errors():
        typer.echo(readable(find_record(out_root, job_id)), nl=False)


@app.command("export-manifest")
def export_manifest(
    out_root: OutArg,
    where: Annotated[
        Optional[str], typer.Option("--where", help="a pandas query on the results, e.g. 'motion_bucket_id == 127'")
    ] = None,
) -> None:
    """Print a YAML manifest that renders exactly the selected jobs of OUT (same job ids)."""
    from tasks.reproduce import export_manifest as export

    with _plain_errors():
        typer.echo(export(out_root, where), nl=False)


@app.command()
def inspect(video: Annotated[Path, typer.Argument(help="an mp4 rendered by videosweep")]) -> None:
    """Print the record a video carries in its container metadata."""
    from tasks.reproduce import read_embedded_record, readable

    with _plain_errors():
        typer.echo(readable(read_embedded_record(video)), nl=False)


def _print_params(title: str, model, skip=(), extra: dict[str, str] | None = None) -> None:
    listing = Table(title=title, title_justify="left")
    for column in ("key", "type", "default", "allowed", "meaning"):
        listing.add_column(column)
    for name, meaning in (extra or {}).items():
        listing.add_row(name, "str", "the model key's", "", meaning)
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        bounds = [
            f"{label} {getattr(rule, attr)}"
            for rule in field.metadata
            for attr, label in (("ge", ">="), ("le", "<="), ("multiple_of", "multiple of"))
            if getattr(rule, attr, None) is not None
        ]
        annotation = _type_name(field.annotation)
        default = "required" if field.is_required() else repr(field.default)
        listing.add_row(name, annotation, default, ", ".join(bounds), field.description or "")
    out.print(listing)


def _type_name(annotation) -> str:
    """A field's type as a person reads it: ``bool | int | {chunk_size, dim}``, ``default | reduce-overhead``."""
    import types
    import typing

    import pydantic

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is dict and len(args) == 2:
        return f"{{{_type_name(args[0])}: {_type_name(args[1])}}}"
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@app.command()
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
    from tasks.query import (
        export,
        latest_attempts,
        parameter_summary,
        rich_table,
        root_summary,
        select,
        with_swept_columns,
    )
    from tasks.results import RESULTS_DIR, read_results

    if not any((out_root / RESULTS_DIR).glob("part-*.parquet")):
        _refuse(f"no results under {out_root / RESULTS_DIR}: give the --out folder of a run (outputs/<manifest name>)")
    if fmt == "parquet" and output is None:
        _refuse("--format parquet writes a file: add --output FILE.parquet")
    if fmt == "table" and output is not None:
        _refuse("--output needs --format csv, json or parquet")
    attempts = read_results(out_root)
    table = with_swept_columns(latest_attempts(attempts))
    with _plain_errors():  # a QueryError names the column or expression
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


@app.command()
def grid(
    out_root: Annotated[Path, typer.Argument(help="an output root: the folder that holds results/ and videos/")],
    x: Annotated[str, typer.Option("--x", help="the parameter along the columns")],
    y: Annotated[Optional[str], typer.Option("--y", help="the parameter along the rows")] = None,
    z: Annotated[Optional[str], typer.Option("--z", help="one grid per value of this parameter")] = None,
    where: Annotated[
        Optional[str], typer.Option("--where", help="a pandas query on the results, e.g. 'seed == 42'")
    ] = None,
    fit: Annotated[
        Literal["hold", "loop"], typer.Option("--fit", help="what a clip shorter than the grid does at its end")
    ] = "hold",
    max_width: Annotated[int, typer.Option("--max-width", min=64, help="the grid's largest width in pixels")] = 1920,
    max_height: Annotated[int, typer.Option("--max-height", min=64, help="the grid's largest height in pixels")] = 1080,
) -> None:
    """Draw sweep grids (mp4, animated WebP, JSON sidecar) of OUT's videos into OUT/grids/; print the files."""
    from tasks.grid import draw_grids

    with _plain_errors():
        grids = draw_grids(out_root, x, y, z, where=where, fit=fit, max_width=max_width, max_height=max_height)
    for drawn in grids:
        for path in (drawn.mp4, drawn.preview, drawn.sidecar):
            if path is not None:
                typer.echo(printable(path))


def _refuse(message: str) -> NoReturn:
    """Print why the input is wrong and exit 2 (no traceback)."""
    typer.echo(printable_lines(message, MESSAGE_LIMIT), err=True)
    raise typer.Exit(2)


# -- queued runs on a Prefect server (flows/queue.py) ------------------------------------------------

RunArg = Annotated[str, typer.Argument(help="a submitted run's name (e.g. crimson-lemur) or a prefix of its id")]


@app.command()
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
    force: Annotated[bool, typer.Option("--force", help="render again jobs that already have a video")] = False,
    hang_timeout: HangTimeoutOpt = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: OverlapExportOpt = True,
    batch: BatchOpt = 1,
    max_jobs: MaxJobsOpt = None,
    max_manifest_mb: MaxManifestOpt = None,
) -> None:
    """Queue MANIFEST on the Prefect server (PREFECT_API_URL) for `videosweep worker`; a frozen copy of it runs."""
    from datetime import datetime

    limits = _limits(max_jobs, max_manifest_mb)
    table = _load(manifest, device, limits)  # checked here, on this machine; the worker's device if --device is not given
    from flows.queue import api_client
    from flows.queue import submit as queue_run
    from flows.render import default_out_root
    from tasks.submission import freeze_manifest, start_time

    with _plain_errors():
        when = start_time(at, datetime.now()) if at else None
        out_root = (out_dir or default_out_root(table.name)).resolve()
        with api_client() as client:
            copy = freeze_manifest(manifest, out_root)
            rendering = {"hang_timeout": hang_timeout or None, "overlap_export": overlap_export, "batch": batch}
            rendering |= {"limits": limits} if limits else {}
            run = queue_run(client, copy, out_root, len(table.jobs), when, priority, device, workers, force, rendering)
    starts = when.strftime("%Y-%m-%d %H:%M") if when else "as soon as a worker is free"
    typer.echo(f"queued {run.name} ({run.id}): {table.name}, {len(table.jobs)} jobs, priority {priority}")
    typer.echo(f"starts:   {starts}")
    typer.echo(printable(f"manifest: {copy}"))
    typer.echo(printable(f"output:   {out_root}"))


@app.command()
def status(
    run: Annotated[Optional[str], typer.Argument(help="a run's name or id prefix: its jobs and ETA")] = None,
) -> None:
    """Submitted runs (queued, running, finished), or one run's jobs done / failed / running and its ETA."""
    from datetime import datetime, timedelta, timezone

    from flows.queue import api_client, find_run, run_progress, submitted_runs

    with _plain_errors(), api_client() as client:
        if run is None:
            runs = submitted_runs(client)
            # plain columns, not a rich table: paths stay whole and greppable at any width
            rows = [("run", "id", "state", "queue", "scheduled", "manifest", "output")]
            for each in runs:
                when, manifest = _local(each.expected_start_time), Path(each.parameters["manifest"]).name
                queue, output = each.work_queue_name, each.parameters["out"]
                rows.append((each.name, str(each.id)[:8], each.state_name, queue, when, manifest, output))
            widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
            typer.echo(f"{len(runs)} submitted runs, latest first")
            for row in rows:
                typer.echo(printable("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()))
            return
        found = find_run(client, run)
        progress = run_progress(client, found)
    typer.echo(f"{found.name} ({found.id}): {found.state_name}")
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


@app.command()
def cancel(run: RunArg) -> None:
    """Cancel a submitted run: a queued one at once, a running one through its worker."""
    from flows.queue import api_client, find_run
    from flows.queue import cancel as cancel_run

    with _plain_errors(), api_client() as client:
        found = find_run(client, run)
        typer.echo(printable(f"{found.name}: {cancel_run(client, found)}"))


@app.command()
def worker(
    pool: Annotated[
        Optional[str], typer.Option("--pool", help="work pool to serve (default: prefect.yaml's, videosweep)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="runs at once (each uses every GPU it sees)")] = 1,
) -> None:
    """Serve submitted runs on this machine, one after another (PREFECT_API_URL: the Prefect server)."""
    from flows.queue import serve

    with _plain_errors():
        serve(pool, limit)


def _local(moment) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def main(argv: list[str] | None = None) -> None:
    """The console script: the commands, with this process's exit codes, log file and Ctrl-C (flows.process)."""
    from flows import process

    process.setup_logging()
    process.handle_interrupts()
    try:
        app(args=argv, prog_name="videosweep")
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback in the log, one line here
        typer.echo(printable(process.report_bug(exc)), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
