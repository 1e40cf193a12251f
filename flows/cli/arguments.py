"""What several commands share: their argument and option types, the manifest they load, and the
way bad input leaves them (one plain line on stderr, exit code 2, no traceback)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from videosweep.tasks.errors import InputError
from videosweep.tasks.text import printable_lines

out = Console()
MESSAGE_LIMIT = 2000  # characters of one line of a message about the user's input (the input may be huge)
CELL_LIMIT = 200  # characters of a table cell on the terminal

ManifestArg = Annotated[Path, typer.Argument(help="a YAML, CSV or Parquet manifest")]
OutArg = Annotated[Path, typer.Argument(help="an output root (the folder holding results/)")]
JobArg = Annotated[
    str, typer.Argument(help="a job id, a unique prefix of one, or #N: job N of the manifest (as progress numbers them)")
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if a GPU is visible, else cpu)")
]
MaxJobsOpt = Annotated[
    Optional[int], typer.Option("--max-jobs", min=1, help="refuse a manifest of more jobs than this (default 100000)")
]
MaxManifestOpt = Annotated[
    Optional[float],
    typer.Option("--max-manifest-mb", min=0.001, help="refuse a larger manifest file (default: 16 for YAML, 256 for CSV/Parquet)"),
]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, help="worker processes (default: one per visible GPU, 1 on a CPU)"),
]
# how jobs render, for `run` and for a `submit`ted run alike
ForceOpt = Annotated[bool, typer.Option("--force", help="render again jobs that already have a video")]
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


def refuse(message: str) -> NoReturn:
    """Print why the input is wrong and exit 2 (no traceback)."""
    typer.echo(printable_lines(message, MESSAGE_LIMIT), err=True)
    raise typer.Exit(2) from None


@contextmanager
def plain_errors():
    """Input that is wrong (tasks.errors.InputError): its one-line message and exit 2. Anything else is a bug."""
    try:
        yield
    except InputError as exc:
        refuse(str(exc))


def limits(max_jobs: int | None, max_manifest_mb: float | None) -> dict[str, int]:
    """The manifest bounds a user raised (tasks.manifest.Limits fields), as flow parameters take them."""
    given = {"max_jobs": max_jobs, "max_manifest_bytes": int(max_manifest_mb * 2**20) if max_manifest_mb else None}
    return {name: value for name, value in given.items() if value is not None}


def load(manifest: Path, device: str | None, bounds: dict[str, int] | None = None):
    """The validated manifest, or a plain message and exit code 2."""
    from videosweep.tasks.devices import resolve_device
    from videosweep.tasks.manifest import Limits, load_manifest

    with plain_errors():
        return load_manifest(manifest, resolve_device(device), Limits(**(bounds or {})))
