"""``OUT/report.html``: one static page with the run summary, every grid playing, and the sortable results table.

The page is self-contained (inline CSS and JS, nothing fetched from a network) and lives in the
output root, so the relative paths of videos and grids work when it is opened from the file system.
Every value from the table or a grid sidecar is escaped.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import InputError
from .files import write_atomic
from .grid import draw_grids
from .layout import GRIDS_DIR, REPORT_NAME
from .query import (
    SHORT_ID,
    RootSummary,
    cell_text,
    default_columns,
    export,
    latest_attempts,
    parameter_summary,
    root_summary,
    with_swept_columns,
)
from .results import read_results
from .text import markdown, one_line, shorten

PROBLEM_LIMIT = 2000  # characters of an error message kept in a problem line (the log has the rest)

log = logging.getLogger(__name__)


def write_report(out_root: Path) -> Path:
    """Write ``out_root/report.html`` from the results table and ``grids/*.json``, atomically; return its path."""
    attempts = read_results(out_root)
    page = render_report(attempts, read_grids(out_root))
    return write_atomic(out_root / REPORT_NAME, lambda scratch: scratch.write_text(page, encoding="utf-8"))


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


def render_report(attempts, grids: list[dict[str, Any]]) -> str:
    """The page's HTML for every attempt of an output root (``read_results``) and its grid sidecars."""
    table = with_swept_columns(latest_attempts(attempts))
    summary = root_summary(attempts)
    title = "videosweep: " + (", ".join(summary.manifests) or "no results yet")
    sections = [_summary_section(summary), _grids_section(grids), _results_section(table)]
    if not table.empty:
        sections.append(_parameters_section(table))
    written = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return _PAGE.format(
        title=_e(title),
        style=_STYLE,
        script=_SCRIPT,
        body="\n".join(sections),
        written=_e(written),
    )


def _summary_section(summary: RootSummary) -> str:
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_e(text or '-')}</dd>" for label, text in summary.items())
    return f'<section id="summary"><h2>Summary</h2><dl>{items}</dl></section>'


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


def _results_section(table) -> str:
    if table.empty:
        return '<section id="results"><h2>Results</h2><p class="none">No results yet.</p></section>'
    columns = default_columns(table)
    rows = []
    for record in table.to_dict(orient="records"):
        cells = []
        for column in columns:
            value = record.get(column)
            if column == "job_id":
                link = record.get("video_path")
                text = _e(cell_text(value)[:SHORT_ID])
                text = f'<a href="{_url(link)}">{text}</a>' if isinstance(link, str) and link else text
                cells.append(f'<td class="id" title="{_e(cell_text(value))}">{text}</td>')
            elif column == "status" and cell_text(record.get("error")):
                cells.append(f'<td title="{_e(cell_text(record["error"]))}">{_e(cell_text(value))}</td>')
            else:
                cells.append(_td(value))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"{len(table)} jobs, the latest attempt of each; click a column to sort"
    return f'<section id="results"><h2>Results</h2>{_table(columns, rows, caption, "results-table")}</section>'


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
        f'<table class="sortable" id="{element_id}"><caption>{_e(caption)}</caption>'
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


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
figure.grid { display: inline-block; vertical-align: top; margin: 0 1.5rem 1.5rem 0; max-width: 100%; }
figure.grid video, figure.grid img { display: block; max-width: 100%; height: auto; background: #000; }
figure.grid [hidden] { display: none; }
figcaption { font-size: .85rem; color: #444; margin-top: .3rem; max-width: 60em; }
table { border-collapse: collapse; margin: .5rem 0; background: #fff; }
caption { text-align: left; color: #555; padding-bottom: .3rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; }
th { background: #eee; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.id { font-family: monospace; }
tbody tr:nth-child(even) { background: #f6f6f6; }
footer { margin-top: 2rem; color: #777; font-size: .8rem; }
"""

# Sorting: numbers by data-v, text by locale with numeric collation; empty cells last either way.
# Grids: show the animated preview instead of a video the browser cannot play.
_SCRIPT = """
(function () {
  "use strict";
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    function key(row) {
      var cell = row.cells[index];
      if (cell.dataset.v !== undefined) { return parseFloat(cell.dataset.v); }
      return cell.textContent.trim();
    }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      if (typeof x === "number" && typeof y === "number") { return direction * (x - y); }
      return direction * String(x).localeCompare(String(y), undefined, {numeric: true});
    });
    table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sortBy(th); } });
  });
  document.querySelectorAll("figure.grid").forEach(function (figure) {
    var video = figure.querySelector("video"), preview = figure.querySelector("img.preview");
    if (!video || !preview) { return; }
    function showPreview() { video.hidden = true; preview.hidden = false; }
    var source = video.querySelector("source");
    if (!video.canPlayType("video/mp4") || video.networkState === HTMLMediaElement.NETWORK_NO_SOURCE) {
      showPreview();
    } else if (source) {
      source.addEventListener("error", showPreview);
    }
  });
})();
"""

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
<h1>{title}</h1>
{body}
<footer>written by videosweep at {written}</footer>
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
    try:
        outputs.report = write_report(out_root)
    except Exception as exc:  # noqa: BLE001 - the videos and the results table are what matter
        outputs.problems.append(f"report {out_root / REPORT_NAME}: {_reason(exc)}")
        log.debug("report not written", exc_info=True)
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
