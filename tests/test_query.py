"""Queries over the results table, and `videosweep results`, on synthetic records with known values."""

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.query import (
    QueryError,
    cell_text,
    compare_runs,
    default_columns,
    export,
    latest_attempts,
    parameter_summary,
    rich_table,
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
        ({"columns": ["job_id", "motion_scor"]}, r"unknown column 'motion_scor' \(did you mean 'motion_score'\?\); columns: "),
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
    measures = ["render_s", "denoise_s", "motion_score", "flicker"]  # no first-frame metrics: null in every row
    assert list(summary.columns) == ["parameter", "value", "jobs", "ok", *measures]  # no load recorded: no load columns
    rows = {(row["parameter"], row["value"]): row for row in summary.to_dict(orient="records")}
    assert list(rows) == [("motion_bucket_id", "60"), ("motion_bucket_id", "180"), ("seed", "42"), ("seed", "43")]
    assert (rows["motion_bucket_id", "60"]["jobs"], rows["motion_bucket_id", "60"]["ok"]) == (2, 2)
    assert rows["motion_bucket_id", "60"]["render_s"] == pytest.approx(3.0)
    assert rows["motion_bucket_id", "60"]["motion_score"] == pytest.approx(0.015)
    assert (rows["motion_bucket_id", "180"]["jobs"], rows["motion_bucket_id", "180"]["ok"]) == (2, 1)
    assert rows["motion_bucket_id", "180"]["render_s"] == pytest.approx(6.0)  # the failed job's 0.5 s left out
    assert rows["seed", "43"]["denoise_s"] == pytest.approx(2.0)


def test_time_means_leave_the_first_jobs_pipeline_load_apart(table):
    """Job 1 loads the pipeline (30 s) and renders in 2 s: its value must not look 10x slower than the others."""
    first = table["job_index"] == 1
    loaded = table.assign(load_s=first * 30.0, total_s=table["total_s"] + first * 30.0)  # job 1: 32 s in all
    summary = parameter_summary(loaded)
    assert list(summary.columns) == [
        "parameter", "value", "jobs", "ok", "render_s", "denoise_s", "loads", "load_s", "motion_score", "flicker"
    ]
    rows = {(row["parameter"], row["value"]): row for row in summary.to_dict(orient="records")}
    assert rows["motion_bucket_id", "60"]["render_s"] == pytest.approx(3.0)  # (2 + 4) / 2, not (32 + 4) / 2
    assert (rows["motion_bucket_id", "60"]["loads"], rows["motion_bucket_id", "60"]["load_s"]) == (1, 30.0)
    assert (rows["motion_bucket_id", "180"]["loads"], rows["motion_bucket_id", "180"]["load_s"]) == (0, 0.0)
    assert rows["seed", "42"]["render_s"] == pytest.approx(4.0)  # jobs 1 and 3: (2 + 6) / 2
    assert rows["seed", "43"]["render_s"] == pytest.approx(4.0)  # the same: the seeds no longer differ by the load


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


def test_cli_all_attempts_lists_every_attempt_with_its_run(out_root: Path):
    result = videosweep(out_root, "--all-attempts", "--no-summary")
    assert result.exit_code == 0, result.output
    assert "5 attempts of 4 jobs" in result.output
    assert "run-1" in result.output and "run-2" in result.output
    records = json.loads(videosweep(out_root, "--all-attempts", "--format", "json").output)
    assert [(r["job_id"], r["attempt"], r["run_id"], r["status"]) for r in records] == [
        (job_id(1), 1, "run-1", "ok"),
        (job_id(2), 1, "run-1", "ok"),
        (job_id(3), 1, "run-1", "failed"),
        (job_id(3), 2, "run-2", "ok"),
        (job_id(4), 1, "run-1", "failed"),
    ]
    failed = json.loads(videosweep(out_root, "--all-attempts", "--format", "json", "--where", "status == 'failed'").output)
    assert [(r["job_id"], r["attempt"]) for r in failed] == [(job_id(3), 1), (job_id(4), 1)]


def test_compare_puts_the_jobs_of_two_runs_side_by_side(out_root: Path):
    compared = compare_runs(read_results(out_root), "run-1", "run-2")
    assert (compared.run_a, compared.run_b, compared.only_a, compared.only_b) == ("run-1", "run-2", 3, 0)
    [row] = compared.table.to_dict(orient="records")  # job 3: failed in run 1, rendered in run 2
    assert (row["job_id"], row["status_a"], row["status_b"]) == (job_id(3), "failed", "ok")
    assert (row["render_s_a"], row["render_s_b"], row["render_s_diff"]) == (0.5, 6.0, 5.5)
    assert pd.isna(row["motion_score_a"]) and row["motion_score_b"] == 0.05 and pd.isna(row["motion_score_diff"])

    result = videosweep(out_root, "--compare", "run-1", "run-2")
    assert result.exit_code == 0, result.output
    assert "A = run run-1, B = run run-2: jobs in both 1, only in A 3, only in B 0" in result.output
    assert job_id(3)[:8] in result.output and "failed" in result.output
    rows = json.loads(videosweep(out_root, "--compare", "run-1", "run-2", "--format", "json").output)
    assert rows[0]["render_s_diff"] == 5.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compare", "run-", "run-2"], "'run-' is the start of several runs; its runs, oldest first: run-1 (attempts: 4), run-2"),
        (["--compare", "run-9", "run-2"], "'run-9' names no run of this output root"),
        (["--compare", "run-2", "run-2"], "give two different runs"),
        (["--compare", "run-1", "run-2", "--all-attempts"], "leave out --all-attempts"),
    ],
)
def test_compare_refuses_runs_it_cannot_name(out_root: Path, args, message):
    result = videosweep(out_root, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


SWEPT = {"motion_bucket_id": [60, 120, 180], "noise_aug_strength": [0.02, 0.1, 0.2], "num_inference_steps": [25, 25, 50]}


def rendered_text(table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 60])
def test_narrow_terminals_show_swept_names_and_values_whole_or_name_what_is_left_out(width):
    frame = pd.DataFrame({
        "job_id": [job_id(index) for index in (1, 2, 3)], **SWEPT, "status": ["ok"] * 3, "total_s": [32.5, 3.25, 3.5],
        "motion_score": [0.01, 0.02, 0.03], "flicker": [0.001] * 3, "first_frame_psnr": [30.1, 31.2, 29.0],
    })
    text = rendered_text(rich_table(frame, "sweep", width=width, keep=["job_id", *SWEPT, "status"]), width)
    assert "…" not in text and max(map(len, text.splitlines())) <= width
    left_out = text.split(f"left out to fit {width} characters: ")[1].replace("\n", " ") if "left out" in text else ""
    for name in frame.columns[1:]:
        if name in left_out:
            continue
        assert name in text, f"{name} neither shown whole nor named as left out"
        assert all(cell_text(value) in text for value in frame[name]), name
    shown_swept = [name for name in SWEPT if name not in left_out]
    assert shown_swept == (list(SWEPT) if width == 80 else ["motion_bucket_id", "noise_aug_strength"])


def test_cli_results_fit_the_terminal(out_root: Path, monkeypatch):
    from videosweep.flows.cli import results as command

    monkeypatch.setattr(command, "out", Console(width=60))
    result = videosweep(out_root)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) <= 60 and "…" not in result.output
    assert "motion_bucket_id" in result.output and "left out to fit 60 characters" in result.output


def test_validate_fits_the_terminal_without_cutting_swept_names(demo_copy: Path, monkeypatch):
    """At 60 characters, validate's table (rich_table, as results') shows the swept keys that fit whole, names the rest."""
    from videosweep.flows.cli import run as command
    from videosweep.tasks.manifest import load_manifest

    width = 60
    monkeypatch.setattr(command, "out", Console(width=width))
    result = CliRunner().invoke(app, ["validate", str(demo_copy), "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) <= width and "…" not in result.output
    jobs = load_manifest(demo_copy, "cpu").jobs
    assert all(job.job_id in result.output for job in jobs)  # validate shows whole ids
    table, _, grid_line = result.output.partition("grid: ")  # the grid line names the swept keys too
    left_out = table.split(f"left out to fit {width} characters: ")[1] if "left out" in table else ""
    shown = [key for key in ("motion_bucket_id", "noise_aug_strength", "seed") if key not in left_out]
    assert shown == ["motion_bucket_id", "noise_aug_strength"] and "seed" in left_out
    for key in shown:
        assert key in table and all(str(job.coords[key]) in table for job in jobs)
