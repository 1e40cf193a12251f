"""``grid``: sweep grids drawn from an output root's videos, and its report.html refreshed to show them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from videosweep.tasks.text import printable

from .arguments import MESSAGE_LIMIT, plain_errors


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
    """Draw sweep grids (mp4, animated WebP, JSON sidecar) of OUT's videos into OUT/grids/, refresh OUT/report.html; print the files."""
    from videosweep.tasks.grid import draw_grids

    with plain_errors():
        grids = draw_grids(out_root, x, y, z, where=where, fit=fit, max_width=max_width, max_height=max_height)
    for drawn in grids:
        for path in (drawn.mp4, drawn.preview, drawn.sidecar):
            if path is not None:
                typer.echo(printable(path))
    for report in refresh_pages(out_root):
        typer.echo(printable(report))


def refresh_pages(*out_roots: Path) -> list[Path]:
    """Write each root's report.html again after a command added to it; return the pages written.

    A page that cannot be written is a line on stderr, not a failure: the command's outputs are made.
    """
    from videosweep.tasks.report import refresh_report

    problems: list[str] = []
    pages = [refresh_report(root, problems) for root in dict.fromkeys(out_roots)]
    for problem in problems:
        typer.echo(printable(f"not refreshed: {problem}", MESSAGE_LIMIT), err=True)
    return [page for page in pages if page is not None]
