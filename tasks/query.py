"""Questions asked of the results table: each job's latest attempt, what a sweep varied, a selection, summaries.

Plain functions over ``tasks.results.read_results`` (one row per attempt), shared by ``videosweep
results``, ``OUT/report.html`` and the flow's artifacts. A selection is a pandas ``query`` (``where``),
sort keys (``"-motion_score,seed"``: comma-separated, a leading ``-`` sorts descending, nulls last)
and a column list; every name is checked against the table and a wrong one is refused with the
names available.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import InputError
from .metrics import METRICS
from .models import FAMILIES
from .record import result_columns

FORMATS = ("table", "csv", "json", "parquet")
SHORT_ID = 8  # characters of a job_id shown to people; programs get the whole id
CELL_LIMIT = 500  # characters of a value shown in a terminal table (a 100k-character prompt); exports keep all
FIT_LIMIT = 40  # characters of a terminal column a longer value (a prompt) folds into when the table must fit a width
_COLUMN_EDGES, _TABLE_EDGE = 3, 1  # a rich table's default box and padding: a border and a space each side per column
_TIMES = ("render_s", "denoise_s")  # the timings a per-value summary averages (render_s: without the pipeline load)
_SOFTWARE = {
    "python_version": "python",
    "torch_version": "torch",
    "diffusers_version": "diffusers",
    "transformers_version": "transformers",
    "videosweep_version": "videosweep",
    "git_commit": "commit",
}


class QueryError(InputError):
    """A selection the table cannot answer; the message names what is wrong and what is available."""


class UnknownName(QueryError):
    """A ``where`` expression that names something the table has no column for (``name``)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def latest_attempts(table):
    """One row per job, its latest attempt (highest ``attempt``, then latest ``finished_at``), in manifest order."""
    ordered = table.sort_values(["attempt", "finished_at"], kind="stable", na_position="first")
    latest = ordered.drop_duplicates("job_id", keep="last")
    return latest.sort_values(["job_index", "job_id"], kind="stable", na_position="last").reset_index(drop=True)


def swept_keys(table) -> list[str]:
    """The keys the manifest swept (from ``sweep_json``: sweep, zip and seed keys), in first-seen order."""
    keys: dict[str, None] = {}
    for text in table["sweep_json"].dropna().unique():
        keys.update(dict.fromkeys(json.loads(text)))
    return list(keys)


def with_swept_columns(table):
    """The table plus a column for each swept key that has none (a pipeline option such as ``scheduler``)."""
    missing = [key for key in swept_keys(table) if key not in table.columns]
    if not missing:
        return table
    coords = [json.loads(text) if isinstance(text, str) else {} for text in table["sweep_json"]]
    extra = {key: [_scalar(values.get(key)) for values in coords] for key in missing}
    return table.assign(**extra)


def _scalar(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


#: Every column a part of a curated family has: any other is a parameter of a family by class name.
_RECORD_COLUMNS = frozenset(name for name, _ in result_columns())


def varying_parameters(table) -> list[str]:
    """Model, swept keys, call parameters and seed that take more than one value in ``table``."""
    params = [name for spec in FAMILIES.values() for name in spec.params.model_fields]
    params += [  # a family by class name's own, not its input hashes
        name for name in table.columns if name not in _RECORD_COLUMNS and not re.fullmatch(r"input_\w+_sha256", name)
    ]
    candidates = dict.fromkeys(["model", *swept_keys(table), *params, "seed"])
    return [name for name in candidates if name in table.columns and table[name].nunique(dropna=True) > 1]


def metric_columns(table) -> list[str]:
    """The metric columns present in ``table`` with at least one value (first-frame ones are null for text rows)."""
    return [name for name in METRICS if name in table.columns and table[name].notna().any()]


def default_columns(table) -> list[str]:
    """What a person looks at first: job, the parameters that vary, status, time, metrics."""
    status = ["status", "error_type"] if (table["status"] != "ok").any() else ["status"]
    return ["job_id", *varying_parameters(table), *status, "total_s", *metric_columns(table)]


def attempt_columns(table) -> list[str]:
    """:func:`default_columns` for a table of every attempt: which attempt, of which run, beside the job."""
    first, *rest = default_columns(table)
    return [first, "attempt", "run_id", *rest]


def render_seconds(table):
    """Each row's time without its pipeline load (``total_s - load_s``; all of ``total_s`` where no load is recorded).

    The first job on a pipeline carries its load (30 s against 3 s of rendering): compared with
    this, one value of a parameter no longer looks slower because its job came first.
    """
    load = table["load_s"].fillna(0.0) if "load_s" in table.columns else 0.0
    return table["total_s"] - load


def select(table, where: str | None = None, columns: list[str] | None = None, sort: str | None = None):
    """The rows matching ``where`` (a pandas query), sorted by ``sort``, with ``columns`` (default_columns if None).

    ``sort`` is one or more comma-separated column names, each with an optional leading ``-`` for
    descending order, e.g. ``"-motion_score,seed"``; rows with no value sort last. Columns not shown
    can still be used in ``where`` and ``sort``.
    """
    # 1. filter
    if where:
        table = rows_where(table, where)
    # 2. sort
    if sort:
        keys = [key.strip() for key in sort.split(",") if key.strip()]
        names = [key.lstrip("-") for key in keys]
        _check_columns(table, names, "sort key")
        ascending = [not key.startswith("-") for key in keys]
        table = table.sort_values(names, ascending=ascending, kind="stable", na_position="last")
    # 3. project
    columns = default_columns(table) if columns is None else columns
    _check_columns(table, columns, "column")
    return table[columns].reset_index(drop=True)


def rows_where(table, where: str):
    """The rows of ``table`` matching ``where``, a pandas query; a QueryError (UnknownName for a name that
    is no column) says what is wrong with it."""
    from pandas.errors import UndefinedVariableError

    try:
        selected = table.query(where)
    except UndefinedVariableError as exc:
        found = re.search(r"name '([^']+)'", str(exc))
        name = found.group(1) if found else str(exc)
        hint = _did_you_mean(name, table.columns) if found else ""
        raise UnknownName(f"where {where!r}: {exc}{hint}; columns: {', '.join(table.columns)}", name) from None
    except Exception as exc:  # pandas raises SyntaxError, TypeError, ValueError, KeyError... for a bad expression
        raise QueryError(
            f"where {where!r} is not a pandas query over this table ({type(exc).__name__}: {exc}); "
            "write e.g. 'seed == 42 and status == \"ok\"'"
        ) from None
    if not hasattr(selected, "columns"):
        raise QueryError(f"where {where!r} must be a condition on rows, e.g. 'motion_bucket_id > 100'")
    return selected


def _check_columns(table, names: list[str], what: str) -> None:
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        hint = _did_you_mean(unknown[0], table.columns)
        raise QueryError(f"unknown {what} {', '.join(map(repr, unknown))}{hint}; columns: {', '.join(table.columns)}")


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parameter_summary(table, parameters: list[str] | None = None):
    """Per varying parameter and value: jobs, ok jobs, the means over ok jobs of render time and each metric,
    and apart from them the pipeline loads of those jobs.

    One row per (parameter, value); ``value`` is text, so parameters of any type share the column.
    ``render_s`` leaves the load out (:func:`render_seconds`): averaged in, the first job's load
    would make its value look slower. ``loads`` counts the ok jobs that loaded a pipeline (``load_s`` > 0)
    and ``load_s`` sums their load time.
    """
    import pandas as pd

    parameters = varying_parameters(table) if parameters is None else parameters
    _check_columns(table, parameters, "parameter")
    if "total_s" in table.columns:
        table = table.assign(render_s=render_seconds(table))
    measures = [name for name in _TIMES if name in table.columns and table[name].notna().any()]
    loads = ["loads", "load_s"] if "load_s" in table.columns and table["load_s"].notna().any() else []
    metrics = metric_columns(table)
    rows = []
    for name in parameters:
        for value, group in table.groupby(name, sort=True, dropna=False):
            ok = group[group["status"] == "ok"]
            row = {"parameter": name, "value": cell_text(value) or "(none)", "jobs": len(group), "ok": len(ok)}
            row |= {measure: ok[measure].mean() if len(ok) else math.nan for measure in measures}
            if loads:
                row |= {"loads": int((ok["load_s"] > 0).sum()), "load_s": float(ok["load_s"].sum())}
            row |= {metric: ok[metric].mean() if len(ok) else math.nan for metric in metrics}
            rows.append(row)
    return pd.DataFrame(rows, columns=["parameter", "value", "jobs", "ok", *measures, *loads, *metrics])


@dataclass(frozen=True)
class RunComparison:
    """The jobs two runs of one output root both rendered, side by side (:func:`compare_runs`)."""

    run_a: str
    run_b: str
    table: Any  # one row per job in both runs
    only_a: int  # jobs run A rendered and run B did not
    only_b: int
    keep: list[str]  # the columns that say which job a row is: job, varying parameters, statuses

    def title(self) -> str:
        return (
            f"A = run {self.run_a}, B = run {self.run_b}: jobs in both {len(self.table)}, only in A {self.only_a}, "
            f"only in B {self.only_b}; _diff is B - A, render_s without the pipeline load"
        )


def run_ids(attempts) -> list[str]:
    """The runs that wrote ``attempts``, in the order they started."""
    started = attempts.groupby("run_id")["started_at"].min().sort_values(kind="stable")
    return list(started.index)


def resolve_run(attempts, ref: str) -> str:
    """The run id ``ref`` names: the id, or a prefix of exactly one (``20260101T1200``); a QueryError lists the runs."""
    runs = run_ids(attempts)
    matches = [run for run in runs if run == ref] or [run for run in runs if run.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    counts = attempts["run_id"].value_counts()
    listing = ", ".join(f"{run} (attempts: {counts[run]})" for run in runs)
    what = "is the start of several runs" if matches else "names no run of this output root"
    raise QueryError(f"{ref!r} {what}; its runs, oldest first: {listing}")


def compare_runs(attempts, run_a: str, run_b: str) -> RunComparison:
    """The jobs both runs rendered (each by its latest attempt in that run), in manifest order: job, the parameters
    that vary among them, each run's status, then per measure (render time, each metric) its value in A
    (``_a``), in B (``_b``) and ``_diff``, B - A. Runs are named as :func:`resolve_run` takes them."""
    import pandas as pd

    run_a, run_b = resolve_run(attempts, run_a), resolve_run(attempts, run_b)
    if run_a == run_b:
        raise QueryError(f"both runs to compare are {run_a}: give two different runs")
    a = with_swept_columns(latest_attempts(attempts[attempts["run_id"] == run_a])).set_index("job_id", drop=False)
    b = with_swept_columns(latest_attempts(attempts[attempts["run_id"] == run_b])).set_index("job_id", drop=False)
    common = [job for job in a.index if job in b.index]
    only_a, only_b = len(a) - len(common), len(b) - len(common)
    a, b = a.loc[common], b.loc[common]
    parameters = varying_parameters(a)
    columns = {"job_id": common, **{name: a[name].to_numpy() for name in parameters}}
    columns |= {"status_a": a["status"].to_numpy(), "status_b": b["status"].to_numpy()}
    measured = [("render_s", render_seconds(a), render_seconds(b))]
    measured += [(name, a[name], b[name]) for name in metric_columns(pd.concat([a, b]))]
    for name, in_a, in_b in measured:
        columns |= {f"{name}_a": in_a.to_numpy(), f"{name}_b": in_b.to_numpy(), f"{name}_diff": (in_b - in_a).to_numpy()}
    keep = ["job_id", *parameters, "status_a", "status_b"]
    return RunComparison(run_a, run_b, pd.DataFrame(columns), only_a, only_b, keep)


@dataclass(frozen=True)
class RootSummary:
    """What an output root holds, over every run that wrote into it (each job counted by its latest attempt)."""

    jobs: int
    ok: int
    failed: int
    skipped: int
    seconds_per_video: float | None  # mean total_s of the ok jobs, load included
    videos_per_minute: float | None  # ok attempts over the summed wall time of the runs
    runs: int
    manifests: list[str]
    software: list[str]  # "torch 2.13.0", ... (several values where runs differed)
    hardware: list[str]  # GPU names, else devices

    def items(self) -> list[tuple[str, str]]:
        """(label, text) pairs, in reading order."""
        rate = "" if self.videos_per_minute is None else f"{self.videos_per_minute:.1f}"
        per_video = "" if self.seconds_per_video is None else f"{self.seconds_per_video:.2f} s"
        return [
            ("manifest", ", ".join(self.manifests)),
            ("jobs", f"{self.jobs}: {self.ok} ok, {self.failed} failed, {self.skipped} skipped"),
            ("time per video", per_video),
            ("videos per minute", rate),
            ("runs", str(self.runs)),
            ("hardware", ", ".join(self.hardware)),
            ("software", ", ".join(self.software)),
        ]


def root_summary(attempts) -> RootSummary:
    """The RootSummary of every attempt in an output root (``read_results``, not yet reduced to latest)."""
    latest = latest_attempts(attempts)
    status = latest["status"].value_counts()
    ok = latest[latest["status"] == "ok"]
    done = attempts[attempts["status"] == "ok"]
    wall = 0.0
    for _, run in attempts.groupby("run_id"):
        begun = run["queued_at"].fillna(run["started_at"]).min()
        if not _missing(begun) and not _missing(run["finished_at"].max()):
            wall += (run["finished_at"].max() - begun).total_seconds()
    hardware = _distinct(attempts["gpu_name"]) or _distinct(attempts["device"])
    software = [f"{label} {value}" for column, label in _SOFTWARE.items() for value in _distinct(attempts[column])]
    return RootSummary(
        jobs=len(latest),
        ok=int(status.get("ok", 0)),
        failed=int(status.get("failed", 0)),
        skipped=int(status.get("skipped", 0)),
        seconds_per_video=float(ok["total_s"].mean()) if ok["total_s"].notna().any() else None,
        videos_per_minute=60 * len(done) / wall if wall > 0 else None,
        runs=attempts["run_id"].nunique(),
        manifests=_distinct(attempts["manifest_name"]),
        software=software,
        hardware=hardware,
    )


def _distinct(column) -> list[str]:
    return [str(value) for value in column.dropna().unique()]


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def cell_text(value: Any) -> str:
    """A value as people read it: empty for null, whole floats without '.0', others to 4 significant digits."""
    if _missing(value):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(getattr(value, "item", lambda: value)())


def rich_table(
    frame,
    title: str | None = None,
    *,
    width: int | None = None,
    keep: Sequence[str] = (),
    id_length: int | None = SHORT_ID,
    hint: str = "",
):
    """``frame`` as a rich Table, job ids shortened to ``id_length`` characters (None: whole).

    Title, headers and cells are plain ``Text`` made ``printable`` (one line, no escape sequence),
    never rich markup: a prompt may hold ``[bold]``; a cell shows at most CELL_LIMIT characters.

    Given the terminal's ``width``, no header or value is cut or folded mid-word to fit ("motio…"):
    every column is as wide as its values (a value longer than FIT_LIMIT, a prompt, folds within
    FIT_LIMIT) and its header, whole for the columns of ``keep`` (a swept parameter's name), else
    broken after underscores ("motion_" over "score"). The first column, then those of ``keep`` in
    ``keep``'s order (most wanted first), then the others, are shown while they fit, in the frame's
    order; a caption names those left out (and ``hint``: how to see them).
    """
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    from .text import printable

    texts = {}
    for name in frame.columns:
        cells = (cell_text(value) for value in frame[name])
        texts[name] = [printable(text[:id_length] if name == "job_id" else text, CELL_LIMIT) for text in cells]
    headers = {name: printable(str(name)) for name in frame.columns}
    values = {name: max([0] + [min(cell_len(text), FIT_LIMIT) for text in texts[name]]) for name in frame.columns}
    widths = {name: max(values[name], cell_len(headers[name])) for name in frame.columns}
    shown = list(frame.columns)
    if width is not None and _TABLE_EDGE + sum(widths[name] + _COLUMN_EDGES for name in shown) > width:
        for name in shown:
            if name not in keep:
                headers[name] = _break_at_underscores(headers[name], values[name])
                widths[name] = max(values[name], *map(cell_len, headers[name].splitlines()))
        chosen, used = set(), _TABLE_EDGE
        for name in dict.fromkeys([shown[0], *(name for name in keep if name in shown), *shown]):  # first column: always
            if not chosen or used + widths[name] + _COLUMN_EDGES <= width:
                chosen.add(name)
                used += widths[name] + _COLUMN_EDGES
        shown = [name for name in shown if name in chosen]
    left_out = [str(name) for name in frame.columns if name not in shown]
    caption = None
    if left_out:
        caption = Text(f"left out to fit {width} characters: {', '.join(left_out)}" + (f" ({hint})" if hint else ""))
    table = Table(
        title=Text(printable(title)) if title is not None else None,
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    for name in shown:
        numeric = frame[name].dtype.kind in "iuf"
        fitted = {"min_width": widths[name], "max_width": widths[name]} if width is not None else {}
        table.add_column(
            Text(headers[name]), justify="right" if numeric else "left", overflow="fold", no_wrap=name == "job_id", **fitted
        )
    for row in zip(*(texts[name] for name in shown)):
        table.add_row(*(Text(text) for text in row))
    return table


def _break_at_underscores(header: str, width: int) -> str:
    """``header`` over several lines, each break after an underscore, each line at most ``width`` characters
    where its words allow ("first_frame_psnr" at 6: "first_", "frame_", "psnr"; "total_s" whole)."""
    words = re.findall(r"[^_]*_+|[^_]+", header)
    if len(words) > 1 and len(words[-1]) <= 2:  # a unit ("total_s") stays with its word
        words[-2:] = [words[-2] + words[-1]]
    lines = [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) > width:
            lines.append("")
        lines[-1] += word
    return "\n".join(lines)


def export(frame, fmt: str, path: Path | None = None) -> str | None:
    """``frame`` as csv, json (a list of records) or parquet, written to ``path``, or returned as text if none.

    Parquet is binary and needs a ``path``.
    """
    if fmt not in FORMATS[1:]:
        raise QueryError(f"format {fmt!r} cannot be exported; choose one of {', '.join(FORMATS[1:])}")
    if fmt == "parquet":
        if path is None:
            raise QueryError("parquet is written to a file: give an output path")
        frame.to_parquet(path, index=False)
        return None
    text = frame.to_csv(index=False) if fmt == "csv" else frame.to_json(orient="records", date_format="iso") + "\n"
    if path is None:
        return text
    path.write_text(text)
    return None
