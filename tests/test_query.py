"""Queries over the results table, and `videosweep results`, on synthetic records with known values."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.query import (
    QueryError,
    cell_text,
    default_columns,
    export,
    latest_attempts,
    parameter_summary,
    root_summary,
    select,
    varying_parameters,
    with_swept_columns,
)
from videosweep.tasks.results import read_results, write_record

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
# index, motion_bucket_id, seed, attempt, run, status, total_s, motion_score; job 3 failed once, then rendered
ATTEMPTS = [
    (1, 60, 42, 1, 1, "ok", 2.0, 0.01),
    (2, 60, 43, 1, 1, "ok", 4.0, 0.02),
    (3, 180, 42, 1, 1, "failed", 0.5, None),
    (4, 180, 43, 1, 1, "failed", 0.5, None),
    (3, 180, 42, 2, 2, "ok", 6.0, 0.05),
]
RUN_START = {1: T0, 2: T0 + timedelta(seconds=100)}


def job_id(index: int) -> str:
    return f"{index:x}" * 16


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    """Two runs into one root: run 1 renders 4 jobs (2 fail), run 2 renders job 3 again; 10 s + 6 s of wall time."""
    root = tmp_path_factory.mktemp("results")
    for index, motion, seed, attempt, run, status, total_s, motion_score in ATTEMPTS:
        start = RUN_START[run]
        write_record(
            root,
            {
                "job_id": job_id(index),
                "run_id": f"run-{run}",
                "attempt": attempt,
                "status": status,
                "error_type": None if status == "ok" else "RuntimeError",
                "error": None if status == "ok" else "out of luck",
                "manifest_name": "sweep",
                "job_index": index,
                "model": "tiny-svd",
                "sweep_json": json.dumps({"motion_bucket_id": motion, "scheduler": "euler", "seed": seed}),
                "motion_bucket_id": motion,
                "num_frames": 8,
                "seed": seed,
                "device": "cpu",
                "torch_version": "2.13.0",
                "video_path": f"videos/{job_id(index)}.mp4" if status == "ok" else None,
                "total_s": total_s,
                "denoise_s": total_s / 2,
                "motion_score": motion_score,
                "flicker": None if motion_score is None else 0.001,
                "queued_at": start,
                "started_at": start + timedelta(seconds=index),
                "finished_at": start + timedelta(seconds=6 if run == 2 else 6 + index),
            },
        )
    return root


@pytest.fixture(scope="module")
def table(out_root: Path) -> pd.DataFrame:
    return with_swept_columns(latest_attempts(read_results(out_root)))


def test_latest_attempt_of_each_job_in_manifest_order(table):
    assert list(table["job_id"]) == [job_id(index) for index in (1, 2, 3, 4)]
    assert list(table["status"]) == ["ok", "ok", "ok", "failed"]
    assert list(table["attempt"]) == [1, 1, 2, 1]


def test_varying_parameters_are_the_swept_keys_with_several_values(table):
    assert "scheduler" in table.columns and set(table["scheduler"]) == {"euler"}  # a swept option gets a column
    assert varying_parameters(table) == ["motion_bucket_id", "seed"]  # not num_frames, model, scheduler: one value
    assert varying_parameters(table[table["seed"] == 42]) == ["motion_bucket_id"]


def test_default_columns_show_varying_parameters_status_time_and_present_metrics(table):
    assert default_columns(table) == [
        "job_id", "motion_bucket_id", "seed", "status", "error_type", "total_s", "motion_score", "flicker"
    ]  # no first-frame metrics: null in every row
    assert "error_type" not in default_columns(table[table["status"] == "ok"])


def test_select_filters_sorts_and_projects(table):
    chosen = select(table, where="status == 'ok' and motion_bucket_id < 100", columns=["job_id", "seed"], sort="-seed")
    assert chosen.to_dict(orient="records") == [{"job_id": job_id(2), "seed": 43}, {"job_id": job_id(1), "seed": 42}]
    by_motion = select(table, sort="-motion_score")
    assert list(by_motion["job_id"]) == [job_id(3), job_id(2), job_id(1), job_id(4)]  # no score sorts last
    by_two = select(table, sort="motion_bucket_id,-seed", columns=["motion_bucket_id", "seed"])
    assert by_two.values.tolist() == [[60, 43], [60, 42], [180, 43], [180, 42]]
    assert list(select(table, where="total_s > 100", columns=["job_id"]).columns) == ["job_id"]


@pytest.mark.parametrize(
    "selection, message",
    [
        ({"columns": ["job_id", "motion"]}, r"unknown column 'motion' \(did you mean 'motion_score'\?\); columns: "),
        ({"sort": "-totl_s"}, r"unknown sort key 'totl_s' \(did you mean 'total_s'\?\)"),
        ({"where": "motion_bucket > 6"}, r"where 'motion_bucket > 6': name 'motion_bucket' is not defined .*columns: "),
        ({"where": "seed =="}, r"where 'seed ==' is not a pandas query over this table \(SyntaxError"),
    ],
)
def test_bad_selections_name_the_problem_and_the_columns(table, selection, message):
    with pytest.raises(QueryError, match=message) as raised:
        select(table, **selection)
    if "columns:" in message:
        assert "motion_bucket_id" in str(raised.value) and "first_frame_psnr" in str(raised.value)


def test_parameter_summary_averages_ok_jobs_by_value(table):
    summary = parameter_summary(table)
    measures = ["total_s", "denoise_s", "motion_score", "flicker"]  # no first-frame metrics: null in every row
    assert list(summary.columns) == ["parameter", "value", "jobs", "ok", *measures]
    rows = {(row["parameter"], row["value"]): row for row in summary.to_dict(orient="records")}
    assert list(rows) == [("motion_bucket_id", "60"), ("motion_bucket_id", "180"), ("seed", "42"), ("seed", "43")]
    assert (rows["motion_bucket_id", "60"]["jobs"], rows["motion_bucket_id", "60"]["ok"]) == (2, 2)
    assert rows["motion_bucket_id", "60"]["total_s"] == pytest.approx(3.0)
    assert rows["motion_bucket_id", "60"]["motion_score"] == pytest.approx(0.015)
    assert (rows["motion_bucket_id", "180"]["jobs"], rows["motion_bucket_id", "180"]["ok"]) == (2, 1)
    assert rows["motion_bucket_id", "180"]["total_s"] == pytest.approx(6.0)  # the failed job's 0.5 s left out
    assert rows["seed", "43"]["denoise_s"] == pytest.approx(2.0)


def test_root_summary_counts_latest_attempts_and_times_every_run(out_root: Path):
    summary = root_summary(read_results(out_root))
    assert (summary.jobs, summary.ok, summary.failed, summary.skipped, summary.runs) == (4, 3, 1, 0, 2)
    assert summary.seconds_per_video == pytest.approx(4.0)
    assert summary.videos_per_minute == pytest.approx(60 * 3 / 16)  # 3 videos over 10 s + 6 s of runs
    assert summary.manifests == ["sweep"] and summary.hardware == ["cpu"] and summary.software == ["torch 2.13.0"]
    assert ("jobs", "4: 3 ok, 1 failed, 0 skipped") in summary.items()


def test_cell_text_is_short_and_exact_where_it_matters():
    assert [cell_text(value) for value in (None, float("nan"), 60.0, 0.0123456, 2**40, "ok")] == [
        "", "", "60", "0.01235", "1099511627776", "ok"
    ]


def test_export_formats_round_trip(table, tmp_path: Path):
    chosen = select(table, columns=["job_id", "seed", "motion_score"])
    assert export(chosen, "csv").splitlines()[:2] == ["job_id,seed,motion_score", f"{job_id(1)},42,0.01"]
    assert json.loads(export(chosen, "json"))[3] == {"job_id": job_id(4), "seed": 43, "motion_score": None}
    export(chosen, "parquet", tmp_path / "chosen.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chosen.parquet"), chosen)
    with pytest.raises(QueryError, match="give an output path"):
        export(chosen, "parquet")


def videosweep(*args) -> object:
    return CliRunner().invoke(app, ["results", *map(str, args)], catch_exceptions=False)


def test_cli_prints_summary_table_and_means_by_parameter(out_root: Path):
    result = videosweep(out_root)
    assert result.exit_code == 0, result.output
    assert "jobs: 4: 3 ok, 1 failed, 0 skipped" in result.output and "runs: 2" in result.output
    assert "4 of 4 jobs" in result.output
    assert all(job_id(index)[:8] in result.output for index in (1, 2, 3, 4))
    assert job_id(1) not in result.output  # people get short ids
    assert "by motion_bucket_id" in result.output and "by seed" in result.output
    assert "by motion_bucket_id" not in videosweep(out_root, "--no-summary").output


def test_cli_csv_json_and_parquet(out_root: Path, tmp_path: Path):
    result = videosweep(out_root, "--format", "csv", "--sort", "-motion_score", "--columns", "job_id, motion_score")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "job_id,motion_score", f"{job_id(3)},0.05", f"{job_id(2)},0.02", f"{job_id(1)},0.01", f"{job_id(4)},"
    ]
    records = json.loads(videosweep(out_root, "--format", "json", "--where", "seed == 43").output)
    assert [record["job_id"] for record in records] == [job_id(2), job_id(4)]
    summary = json.loads(videosweep(out_root, "--format", "json", "--summary").output)
    assert {(row["parameter"], row["value"], row["ok"]) for row in summary} >= {("motion_bucket_id", "180", 1)}
    assert videosweep(out_root, "--format", "parquet", "--output", tmp_path / "t.parquet").exit_code == 0
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--where", "motion > 1"], "where 'motion > 1': name 'motion' is not defined"),
        (["--columns", "job_id,nope"], "unknown column 'nope'"),
        (["--format", "parquet"], "--format parquet writes a file: add --output FILE.parquet"),
        (["--output", "x.csv"], "--output needs --format csv, json or parquet"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(out_root: Path, args, message):
    result = videosweep(out_root, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_cli_refuses_a_folder_without_results(tmp_path: Path):
    result = videosweep(tmp_path)
    assert result.exit_code == 2 and f"no results under {tmp_path / 'results'}" in result.output
