"""``videosweep``: run, plan, validate, models.

Exit codes: 0 all good; 1 some jobs failed (the others finished); 2 nothing was done because
the input was wrong (the message says where and how to fix it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import flows  # noqa: F401  (quiet, offline defaults before Prefect or diffusers load)

app = typer.Typer(
    help="Declarative batch rendering for video diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()

ManifestArg = Annotated[Path, typer.Argument(help="a YAML, CSV or Parquet manifest")]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if a GPU is visible, else cpu)")
]


def _load(manifest: Path, device: str | None):
    """The validated manifest, or a plain message and exit code 2."""
    from tasks.devices import resolve_device
    from tasks.manifest import ManifestError, load_manifest

    try:
        return load_manifest(manifest, resolve_device(device))
    except (ManifestError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, help="worker processes (default: one per visible GPU, 1 on a CPU)"),
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
) -> None:
    """Render every job of MANIFEST; jobs already rendered into the output root are skipped."""
    table = _load(manifest, device)  # fail fast, before Prefect starts
    from flows.render import run_manifest

    try:
        summary = run_manifest(str(manifest), str(out_dir) if out_dir else None, table.device, force, workers, dask_address)
    except ValueError as exc:  # a setup that cannot run (workers, cluster): say why, plainly
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.format())
    raise typer.Exit(1 if summary.failed else 0)


@app.command()
def plan(
    manifest: ManifestArg,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output root whose finished jobs are left out")] = None,
    force: Annotated[bool, typer.Option("--force", help="plan every job, finished or not")] = False,
) -> None:
    """Show how a run would place MANIFEST's jobs: shards, workers, estimated cost, pipeline loads."""
    table = _load(manifest, device)
    from flows.render import plan_manifest
    from tasks.plan import naive_loads

    try:
        placed, todo = plan_manifest(str(manifest), table.device, workers, force, str(out_dir) if out_dir else None)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(todo)} of {len(table.jobs)} jobs to render (cost: megapixel-frame-steps)")
    typer.echo(placed.format())
    typer.echo(f"pipeline loads: {placed.loads} planned, {naive_loads(todo, placed.workers)} in manifest order")


@app.command()
def validate(
    manifest: ManifestArg,
    device: DeviceOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="print every job, not the first 20")] = False,
) -> None:
    """Expand and check MANIFEST without rendering: print the job table, or every problem."""
    table = _load(manifest, device)
    shown = table.jobs if show_all else table.jobs[:20]
    swept = list(dict.fromkeys(key for job in table.jobs for key in job.coords))
    grid = Table(title=f"{table.name}: {len(table.jobs)} jobs on {table.device}", title_justify="left")
    grid.add_column("job_id", no_wrap=True, min_width=16)
    for column in ["origin", "model", *swept, "dtype"]:
        grid.add_column(column)
    for job in shown:
        grid.add_row(job.job_id, job.origin, job.model, *(str(job.coords.get(key, "")) for key in swept), job.dtype)
    out.print(grid)
    if len(shown) < len(table.jobs):
        out.print(f"... and {len(table.jobs) - len(shown)} more (--all prints them)")
    for spec in table.grids:
        out.print("grid: " + ", ".join(f"{axis}={key}" for axis, key in spec.items()))


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
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(map(str, typing.get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


if __name__ == "__main__":
    app()
