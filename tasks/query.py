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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import InputError
from .metrics import METRICS
from .models import FAMILIES

FORMATS = ("table", "csv", "json", "parquet")
SHORT_ID = 8  # characters of a job_id shown to people; programs get the whole id
CELL_LIMIT = 500  # characters of a value shown in a terminal table (a 100k-character prompt); exports keep all
_TIMES = ("total_s", "denoise_s")  # the timings a per-value summary averages
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


def varying_parameters(table) -> list[str]:
    """Model, swept keys, call parameters and seed that take more than one value in ``table``."""
    params = [name for spec in FAMILIES.values() for name in spec.params.model_fields]
    candidates = dict.fromkeys(["model", *swept_keys(table), *params, "seed"])
    return [name for name in candidates if name in table.columns and table[name].nunique(dropna=True) > 1]


def metric_columns(table) -> list[str]:
    """The metric columns present in ``table`` with at least one value (first-frame ones are null for text rows)."""
    return [name for name in METRICS if name in table.columns and table[name].notna().any()]


def default_columns(table) -> list[str]:
    """What a person looks at first: job, the parameters that vary, status, time, metrics."""
    status = ["status", "error_type"] if (table["status"] != "ok").any() else ["status"]
    return ["job_id", *varying_parameters(table), *status, "total_s", *metric_columns(table)]


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
    """Per varying parameter and value: jobs, ok jobs, and the means over ok jobs of time and each metric.

    One row per (parameter, value); ``value`` is text, so parameters of any type share the column.
    """
    import pandas as pd

    parameters = varying_parameters(table) if parameters is None else parameters
    _check_columns(table, parameters, "parameter")
    measures = [name for name in _TIMES if name in table.columns and table[name].notna().any()] + metric_columns(table)
    rows = []
    for name in parameters:
        for value, group in table.groupby(name, sort=True, dropna=False):
            ok = group[group["status"] == "ok"]
            means = {measure: ok[measure].mean() if len(ok) else math.nan for measure in measures}
            label = cell_text(value) or "(none)"
            rows.append({"parameter": name, "value": label, "jobs": len(group), "ok": len(ok), **means})
    return pd.DataFrame(rows, columns=["parameter", "value", "jobs", "ok", *measures])


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


def rich_table(frame, title: str | None = None):
    """``frame`` as a rich Table, job ids shortened to SHORT_ID characters.

    Title, headers and cells are plain ``Text`` made ``printable`` (one line, no escape sequence),
    never rich markup: a prompt may hold ``[bold]``; a cell shows at most CELL_LIMIT characters.
    """
    from rich.table import Table
    from rich.text import Text

    from .text import printable

    table = Table(title=Text(printable(title)) if title is not None else None, title_justify="left")
    for column in frame.columns:
        numeric = frame[column].dtype.kind in "iuf"
        # fold rather than cut: on a narrow terminal a long name wraps instead of losing its end
        table.add_column(
            Text(printable(column)), justify="right" if numeric else "left", overflow="fold", no_wrap=column == "job_id"
        )
    for row in frame.itertuples(index=False):
        cells = [cell_text(value) for value in row]
        shown = (text[:SHORT_ID] if name == "job_id" else text for name, text in zip(frame.columns, cells))
        table.add_row(*(Text(printable(text, CELL_LIMIT)) for text in shown))
    return table


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
