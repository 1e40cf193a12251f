"""``OUT/report.html``: one static page where a sweep is judged: the summary, the sweep's cells playing in sync
on any two axes (and a page), filters, a detail panel per job, the results table, the grids and the manifests.

The page is self-contained (inline CSS and JS from ``report_page/``, nothing fetched from a network) and
lives in the output root, so the relative paths of videos, posters and grids work when it is opened
from the file system. The jobs travel as one JSON object (``tasks.report_data``) in a
``<script type="application/json">`` that no value can close; the script puts them on the page as text.
What Python writes as HTML (summary, grids, the per-parameter table, manifests) is escaped.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import InputError
from .files import write_atomic
from .grid import draw_grids
from .layout import GRIDS_DIR, REPORT_NAME
from .query import (
    RootSummary,
    cell_text,
    default_columns,
    export,
    latest_attempts,
    parameter_summary,
    root_summary,
    with_swept_columns,
)
from .report_data import page_data, to_script_json
from .results import read_results
from .text import markdown, one_line, shorten

PROBLEM_LIMIT = 2000  # characters of an error message kept in a problem line (the log has the rest)

log = logging.getLogger(__name__)


def write_report(out_root: Path) -> Path:
    """Write ``out_root/report.html`` from the results table and ``grids/*.json``, atomically; return its path.

    Writes the posters and manifest copies the page links first (``tasks.report_data``)."""
    attempts = read_results(out_root)
    grids = read_grids(out_root)
    page = render_report(attempts, grids, page_data(out_root, attempts))
    return write_atomic(out_root / REPORT_NAME, lambda scratch: scratch.write_text(page, encoding="utf-8"))


def refresh_report(out_root: Path, problems: list[str]) -> Path | None:
    """:func:`write_report`, for a command that added outputs: a page that cannot be written is a line added to
    ``problems`` (and None), never an error; the videos and the results table are what matter."""
    try:
        return write_report(out_root)
    except Exception as exc:  # noqa: BLE001 - the page is a view of what is on disk, never worth a command
        problems.append(f"report {out_root / REPORT_NAME}: {_reason(exc)}")
        log.debug("report not written", exc_info=True)
        return None


def read_grids(out_root: Path) -> list[dict[str, Any]]:
    """The grid sidecars (``grids/*.json``, written with each grid), by file name."""
    grids = []
    for path in sorted((out_root / GRIDS_DIR).glob("*.json")):
        try:
            grid = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"grid sidecar {path} is not valid JSON ({exc}); draw the grid again") from None
        if not isinstance(grid, dict):
            raise ValueError(f"grid sidecar {path} must hold a JSON object, not {type(grid).__name__}")
        grids.append(grid)
    return grids


def render_report(attempts, grids: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """The page's HTML for every attempt of an output root (``read_results``), its grid sidecars and its page data
    (``tasks.report_data.page_data``)."""
    table = with_swept_columns(latest_attempts(attempts))
    names = [axis["name"] for axis in data["axes"]]
    data = {**data, "start": next(({axis: grid.get(axis) for axis in "xyz"} for grid in grids if grid.get("x") in names), {})}
    sections = [
        _summary_section(root_summary(attempts)),
        _SWEEP,
        _RESULTS,
        _grids_section(grids),
        _parameters_section(table) if not table.empty else "",
        _manifests_section(data),
    ]
    page = resources.files(__package__).joinpath("report_page")
    return _PAGE.format(
        title=_e(data["title"]),
        style=page.joinpath("page.css").read_text(encoding="utf-8"),
        script=page.joinpath("page.js").read_text(encoding="utf-8"),
        data=to_script_json(data),
        body="\n".join(section for section in sections if section),
        written=_e(datetime.now(timezone.utc).isoformat(timespec="seconds")),
    )


def _summary_section(summary: RootSummary) -> str:
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_e(text or '-')}</dd>" for label, text in summary.items())
    return f'<section id="summary"><h2>Summary</h2><dl class="summary">{items}</dl></section>'


# The sweep's controls and the results table's frame; page.js fills them from the page's data.
_SWEEP = """<section id="sweep"><h2>Sweep</h2>
<div class="controls">
<label>X <select id="axis-x"></select></label>
<label>Y <select id="axis-y"></select></label>
<label>Page <select id="axis-z"></select></label>
<span><button type="button" id="page-prev" aria-label="previous page">&#9664;</button>
<select id="page-value" aria-label="page value"></select>
<button type="button" id="page-next" aria-label="next page">&#9654;</button></span>
<label>Shade by <select id="shade"></select></label><span class="legend" id="legend"></span>
<label>Cell size <input type="range" id="cell-size" min="80" max="480" value="200"></label>
</div>
<div class="playback">
<button type="button" id="play" aria-pressed="false">Play</button>
<input type="range" id="scrub" min="0" max="0" step="0.01" value="0" aria-label="time">
<span id="clock"></span>
<label>Speed <select id="speed"><option value="0.25">0.25x</option><option value="0.5">0.5x</option>
<option value="1" selected>1x</option><option value="2">2x</option><option value="4">4x</option></select></label>
<label><input type="checkbox" id="loop" checked> Loop</label>
</div>
<details class="filters" open><summary>Filters: <span id="shown-count"></span></summary>
<div class="filter-groups" id="filter-groups"></div></details>
<div id="hover-info" aria-live="polite"></div>
<p class="hint" id="cell-note"></p>
<p class="hint" id="audio-note" hidden></p>
<div class="grid-wrap" id="sweep-grid"></div>
<noscript><p>The sweep view needs JavaScript; the grids and tables below do not.</p></noscript>
</section>"""

_RESULTS = """<section id="results"><h2>Results</h2>
<div class="table-tools"><input type="search" id="search" placeholder="search ids, values, errors" aria-label="search"></div>
<div class="table-wrap"><table class="data" id="results-table"></table></div>
</section>"""


def _grids_section(grids: list[dict[str, Any]]) -> str:
    if not grids:
        return '<section id="grids"><h2>Grids</h2><p class="none">No grids in this output root.</p></section>'
    return '<section id="grids"><h2>Grids</h2>' + "".join(_grid_figure(grid) for grid in grids) + "</section>"


def _grid_figure(grid: dict[str, Any]) -> str:
    """A grid as a looping muted video, with its animated preview shown instead where the mp4 cannot play."""
    size = "".join(f' {side}="{int(grid[side])}"' for side in ("width", "height") if isinstance(grid.get(side), int))
    title = _e(grid.get("title") or grid.get("name") or "grid")
    mp4, preview = grid.get("mp4"), grid.get("preview")
    media = []
    if mp4:
        media.append(
            f'<video autoplay loop muted playsinline controls preload="auto"{size}>'
            f'<source src="{_url(mp4)}" type="video/mp4"></video>'
        )
    if preview:
        media.append(f'<img class="preview" src="{_url(preview)}" alt="{title}"{size}{" hidden" if mp4 else ""}>')
    axes = ", ".join(f"{axis}: {grid[axis]}" for axis in ("x", "y", "z") if grid.get(axis))
    group = grid.get("group") or ({grid["z"]: grid.get("z_value")} if grid.get("z") else {})
    this = ", ".join(f"{key}={cell_text(value)}" for key, value in group.items())
    fixed = ", ".join(f"{key}={cell_text(value)}" for key, value in (grid.get("fixed") or {}).items())
    cols, rows, frames, fps = (cell_text(grid.get(key)) or "?" for key in ("cols", "rows", "frames", "fps"))
    shape = f"{cols} x {rows} cells, {frames} frames at {fps} fps"
    empty = [cell for cell in grid.get("cells") or [] if cell.get("status") != "ok"]
    files = (("mp4", mp4), ("preview", preview))
    links = " · ".join(f'<a href="{_url(path)}">{label}</a>' for label, path in files if path)
    lines = [f"<strong>{title}</strong>", _e(axes), _e(f"this grid: {this}") if this else ""]
    lines += [_e(f"fixed: {fixed}") if fixed else "", _e(shape)]
    if empty:
        lines.append(_e(f"{len(empty)} empty cell(s): " + ", ".join(_cell_label(cell) for cell in empty)))
    lines.append(links)
    caption = "<br>".join(line for line in lines if line)
    name = _e(str(grid.get("name", "")))
    return f'<figure class="grid" data-name="{name}">{"".join(media)}<figcaption>{caption}</figcaption></figure>'


def _cell_label(cell: dict[str, Any]) -> str:
    return f"{cell_text(cell.get('x'))}/{cell_text(cell.get('y'))} ({cell.get('status') or 'missing'})"


def _parameters_section(table) -> str:
    summary = parameter_summary(table)
    if summary.empty:
        return ""
    rows = ["<tr>" + "".join(map(_td, row.values())) + "</tr>" for row in summary.to_dict(orient="records")]
    caption = "per swept value: jobs, ok jobs, and means over the ok jobs of time (s) and each metric"
    table_html = _table(list(summary.columns), rows, caption, "parameter-table")
    return f'<section id="parameters"><h2>By parameter</h2>{table_html}</section>'


def _table(columns: list[str], rows: list[str], caption: str, element_id: str) -> str:
    head = "".join(f'<th scope="col" tabindex="0">{_e(column)}</th>' for column in columns)
    return (
        f'<table class="data sortable" id="{element_id}"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _td(value: Any) -> str:
    """A cell; numbers carry their exact value in ``data-v`` for sorting."""
    text = _e(cell_text(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and text:
        return f'<td class="num" data-v="{float(value)!r}">{text}</td>'
    return f"<td>{text}</td>"


def _url(path: str) -> str:
    """A path relative to the output root as an escaped relative URL (no scheme can sneak in: ':' is quoted)."""
    return _e(quote(str(path)))


def _e(text: str) -> str:
    return html.escape(text, quote=True)



def _manifests_section(data: dict[str, Any]) -> str:
    """Each manifest as written (its kept copy), and the last run's lock file."""
    parts = []
    for manifest in data["manifests"]:
        head = f"{manifest['name']}: {manifest['path']} (sha256 {manifest['sha256'][:12]})"
        link = f' · <a href="{_url(manifest["file"])}">kept copy</a>' if manifest.get("file") else ""
        note = f'<p class="none">{_e(manifest["note"])}</p>' if manifest.get("note") else ""
        text = f'<pre class="manifest">{_e(manifest["text"])}</pre>' if "text" in manifest else ""
        parts.append(f"<details open><summary>{_e(head)}{link}</summary>{note}{text}</details>")
    if data["lock"]:
        parts.append(f'<p>The last run\'s expanded job table: <a href="{_url(data["lock"])}">{_e(data["lock"])}</a></p>')
    if not parts:
        return ""
    return '<section id="manifests"><h2>Manifest</h2>' + "".join(parts) + "</section>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<div class="page">
<main>
<h1>{title}</h1>
{body}
<footer>written by videosweep at {written}</footer>
</main>
<aside id="detail" aria-label="detail"></aside>
</div>
<script type="application/json" id="sweep-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""


@dataclass
class Outputs:
    """What a run draws once its jobs are done."""

    grids: list[Path] = field(default_factory=list)  # the grid videos
    problems: list[str] = field(default_factory=list)  # grids that could not be drawn, and why
    report: Path | None = None


def draw_outputs(out_root: Path, grids: list[dict[str, str]], job_ids: list[str]) -> Outputs:
    """Draw a manifest's declared ``grids`` over its ``job_ids``, then the report.

    Nothing here fails the run: a grid that cannot be drawn, for any reason (every job failed, a
    label, a bug), is a problem line and the next grid is drawn; a report that cannot be written
    is a problem line too.
    """
    outputs = Outputs()
    for spec in grids:
        axes = ", ".join(f"{axis}={key}" for axis, key in spec.items())
        try:
            outputs.grids += [grid.mp4 for grid in draw_grids(out_root, **spec, job_ids=job_ids) if grid.mp4]
        except Exception as exc:  # noqa: BLE001 - one grid never costs the others, the report or the summary
            outputs.problems.append(f"grid {axes}: {_reason(exc)}")
            log.debug("grid %s not drawn", axes, exc_info=True)
    outputs.report = refresh_report(out_root, outputs.problems)
    return outputs


def _reason(exc: BaseException) -> str:
    """A problem's cause in one line: the message of a refusal (InputError), else its type too."""
    text = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return shorten(one_line(text), PROBLEM_LIMIT)


def summary_markdown(out_root: Path, attempts, outputs: Outputs) -> str:
    """The output root's summary (``attempts``: its ``read_results``) for a Prefect markdown artifact.

    The UI renders it: every interpolated value (paths, manifest names, problems) is escaped
    (``tasks.text.markdown``), so none can add HTML, a link or markdown structure.
    """
    summary = root_summary(attempts)
    lines = [f"# videosweep: {markdown(out_root)}", ""]
    lines += [f"- **{markdown(label)}**: {markdown(text)}" for label, text in summary.items() if text]
    lines += ["", f"Report: {markdown(outputs.report)}" if outputs.report else ""]
    lines += [f"- grid {markdown(path)}" for path in outputs.grids]
    lines += [f"- {markdown(problem)}" for problem in outputs.problems]
    return "\n".join(lines)


def results_rows(attempts) -> list[dict[str, Any]]:
    """The latest attempt of every job of ``attempts`` (default columns), JSON-safe, for a Prefect table artifact."""
    table = with_swept_columns(latest_attempts(attempts))
    return json.loads(export(table[default_columns(table)], "json"))
