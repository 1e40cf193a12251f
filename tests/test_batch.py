"""Batching (``videosweep run --batch N``): rows that share a pipeline and a shape in one pipeline call, on tiny SVD."""

import shutil
from datetime import datetime, timezone
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.memory import LADDER
from videosweep.tasks.models import FAMILIES, svd
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, batches
from videosweep.tasks.render.loop import render_shard

from .conftest import ROCKET


def write_manifest(folder: Path, rows: list[str], seeds: list[int]) -> Path:
    """Tiny SVD rows over ``seeds``, with rocket.png, its mirror image and a grey one beside the manifest."""
    shutil.copy(ROCKET, folder / "rocket.png")
    with Image.open(ROCKET) as image:
        image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirror.png")
        image.convert("L").convert("RGB").save(folder / "grey.png")
    lines = "\n".join(f"  - {{{row}}}" for row in rows)
    (folder / "m.yaml").write_text(
        "name: batch\n"
        "defaults: {model: tiny-svd, image: rocket.png, height: 32, width: 48, num_frames: 2, num_inference_steps: 1}\n"
        f"rows:\n{lines}\nseeds: {seeds}\n"
    )
    return folder / "m.yaml"


def render(manifest: Path, out: Path, batch: int) -> list[dict]:
    table = load_manifest(manifest, "cpu")
    run = RunContext.new(out, "cpu", table, batch=batch)
    return render_shard(in_order(table.jobs), run, {}, datetime.now(timezone.utc))


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture
def written(monkeypatch) -> dict:
    """The decoded frames each job hands to the mp4 writer, by output root and job id."""
    from videosweep.tasks.render import export

    frames_by_job = {}
    real_write = export.write_mp4

    def write_mp4(frames, fps, path, **kwargs):
        frames_by_job[path.parent.parent.name, path.stem] = frames
        return real_write(frames, fps, path, **kwargs)

    monkeypatch.setattr(export, "write_mp4", write_mp4)
    return frames_by_job


def test_a_batch_renders_what_each_job_renders_alone(tmp_path, written):
    rows = ["image: rocket.png", "image: mirror.png", "image: rocket.png, motion_bucket_id: 200"]
    manifest = write_manifest(tmp_path, rows, [1, 2])
    alone = render(manifest, tmp_path / "alone", 1)
    together = render(manifest, tmp_path / "together", 3)

    assert [r["job_id"] for r in together] == [r["job_id"] for r in alone], "records come back in job order"
    assert [r["status"] for r in together] == ["ok"] * 6
    # rocket s1, rocket s2, mirror s1 | mirror s2 (the batch is full) | motion 200 s1, s2 (another motion: another call)
    assert [r["batch_size"] for r in together] == [3, 3, 3, 1, 2, 2]
    assert [r["batch_size"] for r in alone] == [1] * 6
    assert all(r["memory_rung"] == LADDER[0].name and r.get("batch_error") is None for r in together)
    first = together[0]
    assert first["denoise_s"] > 0 and first["decode_s"] > 0
    assert [r["denoise_s"] for r in together[:3]] == [first["denoise_s"]] * 3, "each video's share of the call"
    assert all(r["load_s"] == 0.0 and r["cache_hit"] for r in together[1:3]), "the load is the first job's"
    assert all(r["total_s"] >= r["load_s"] + r["denoise_s"] + r["decode_s"] + r["export_s"] for r in together)

    # each job's frames, batched or alone, agree up to floating-point noise (measured: 1 level at most);
    # another seed or another image differs by more than 100 levels
    batched = [written["together", r["job_id"]] for r in together]
    single = [written["alone", r["job_id"]] for r in alone]
    assert max(max_diff(a, b) for a, b in zip(batched, single)) <= 2
    assert max_diff(batched[0], single[1]) > 50 and max_diff(batched[0], single[2]) > 50, "the bound tells seeds and images apart"


def test_deep_cache_and_guidance_cutoff_hold_in_a_batch(tmp_path, written):
    """The hooks cut the batch's guidance halves and keep its deep features: the same videos as alone."""
    trades = "num_inference_steps: 4, step_cache: {type: deep_cache, interval: 2}, guidance_cutoff: 0.5"
    manifest = write_manifest(tmp_path, [f"image: rocket.png, {trades}", f"image: mirror.png, {trades}"], [1])
    alone = render(manifest, tmp_path / "alone", 1)
    together = render(manifest, tmp_path / "together", 2)
    assert [r["batch_size"] for r in alone] == [1, 1]
    assert [r["batch_size"] for r in together] == [2, 2] and [r["status"] for r in together] == ["ok", "ok"]
    pairs = [(written["together", r["job_id"]], written["alone", r["job_id"]]) for r in together]
    assert max(max_diff(a, b) for a, b in pairs) <= 2
    assert max_diff(pairs[0][0], pairs[1][1]) > 50, "the bound tells the two images apart"


def test_only_consecutive_jobs_alike_but_for_seed_and_image_share_a_call(tmp_path, monkeypatch):
    rows = [
        "image: rocket.png",
        "image: mirror.png",
        "motion_bucket_id: 200",  # a parameter that is not per video
        "scheduler: euler-a",  # another pipeline option
        "image: grey.png",  # alike the first two, but not next to them
    ]
    jobs = load_manifest(write_manifest(tmp_path, rows, [1, 2]), "cpu").jobs
    assert len({job.pipeline_key for job in jobs}) == 1, "one loaded pipeline for all: the call is what differs"
    origins = [[job.origin for job in batch] for batch in batches(jobs, 8)]
    assert origins == [["rows[0]"] * 2 + ["rows[1]"] * 2, ["rows[2]"] * 2, ["rows[3]"] * 2, ["rows[4]"] * 2]
    assert [len(batch) for batch in batches(jobs, 3)] == [3, 1, 2, 2, 2]
    assert [len(batch) for batch in batches(jobs, 1)] == [1] * 10

    monkeypatch.setitem(FAMILIES, "svd", replace(svd.FAMILY, batch_fields=None))  # one video per call
    assert [len(batch) for batch in batches(jobs, 8)] == [1] * 10


def test_a_failed_batch_renders_each_job_again_alone_with_its_own_error(tmp_path, monkeypatch):
    import diffusers.utils

    manifest = write_manifest(tmp_path, ["image: rocket.png", "image: grey.png", "image: mirror.png"], [1])
    real_load = diffusers.utils.load_image

    def load_image(path, *args, **kwargs):  # readable when the manifest was read, not when rendered
        if Path(path).name == "grey.png":
            raise OSError(f"cannot read {path}")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(diffusers.utils, "load_image", load_image)
    records = render(manifest, tmp_path / "out", 3)

    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert [r["batch_size"] for r in records] == [1, 1, 1]
    assert records[1]["error_type"] == "OSError" and "cannot read" in records[1]["error"]
    assert all("cannot read" in r["batch_error"] for r in records), "the records say why the batch fell apart"
    assert [r.get("memory_rung") for r in records] == [LADDER[0].name, None, LADDER[0].name]


def test_a_batch_out_of_memory_falls_back_to_one_video_per_call(tmp_path, monkeypatch):
    real = svd.FAMILY.render

    def out_of_memory_when_batched(pipe, params_list, generators, device):
        if len(params_list) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(pipe, params_list, generators, device)

    monkeypatch.setitem(FAMILIES, "svd", replace(svd.FAMILY, render=out_of_memory_when_batched))
    records = render(write_manifest(tmp_path, ["image: rocket.png"], [1, 2, 3]), tmp_path / "out", 3)
    assert [(r["status"], r["batch_size"], r["memory_rung"]) for r in records] == [("ok", 1, LADDER[0].name)] * 3
    assert all(r["batch_error"].startswith("OutOfMemoryError") for r in records)


def test_after_a_batch_runs_out_of_memory_later_batches_of_its_kind_hold_half(tmp_path, monkeypatch):
    """A --batch too large for the GPU costs one failed call per halving, not one per batch all night."""
    real = svd.FAMILY.render
    calls = []

    def out_of_memory_above_two(pipe, params_list, generators, device):
        calls.append(len(params_list))
        if len(params_list) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(pipe, params_list, generators, device)

    monkeypatch.setitem(FAMILIES, "svd", replace(svd.FAMILY, render=out_of_memory_above_two))
    records = render(write_manifest(tmp_path, ["image: rocket.png"], [1, 2, 3, 4, 5, 6, 7, 8]), tmp_path / "out", 4)
    # 4 fail together and go alone (4 calls of 1); then 2 at a time
    assert calls == [4, 1, 1, 1, 1, 2, 2]
    assert [r["batch_size"] for r in records] == [1, 1, 1, 1, 2, 2, 2, 2] and all(r["status"] == "ok" for r in records)
    other_run = render(write_manifest(tmp_path, ["image: rocket.png"], [1, 2, 3, 4]), tmp_path / "again", 4)
    assert calls[7:] == [4, 1, 1, 1, 1], "a limit is the run's own: the next run tries the size it is given"
    assert len(other_run) == 4


def test_jobs_whose_inputs_are_not_ready_go_alone_and_the_rest_share_the_call(tmp_path):
    manifest = write_manifest(tmp_path, ["image: rocket.png", "image: mirror.png"], [1, 2])
    table = load_manifest(manifest, "cpu")
    shutil.copy(ROCKET, tmp_path / "mirror.png")  # changed since the manifest was read: not the job's input any more
    run = RunContext.new(tmp_path / "out", "cpu", table, batch=4)
    records = render_shard(in_order(table.jobs), run, {}, datetime.now(timezone.utc))

    assert [(r["origin"], r["status"], r["batch_size"]) for r in records] == [
        ("rows[0]", "ok", 2),
        ("rows[0]", "ok", 2),
        ("rows[1]", "failed", 1),
        ("rows[1]", "failed", 1),
    ]
    assert all(r["error_type"] == "ReproduceError" and r.get("batch_error") is None for r in records[2:])


def test_a_shard_handed_out_again_batches_only_what_it_had_not_recorded(tmp_path):
    manifest = write_manifest(tmp_path, ["image: rocket.png", "image: mirror.png"], [1, 2])
    table = load_manifest(manifest, "cpu")
    jobs = in_order(table.jobs)
    run = RunContext.new(tmp_path / "out", "cpu", table, batch=4)
    first = render_shard(jobs[:1], run, {}, datetime.now(timezone.utc))
    rest = render_shard(jobs, run, {}, datetime.now(timezone.utc))
    assert [r["job_id"] for r in first + rest] == [job.job_id for job in jobs]
    assert [r["batch_size"] for r in first + rest] == [1, 3, 3, 3]


def test_run_batch_through_the_cli(tmp_path):
    manifest = write_manifest(tmp_path, ["image: rocket.png", "image: mirror.png"], [1, 2])
    out = tmp_path / "out"
    refused = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--batch", "0"])
    assert refused.exit_code == 2 and not out.exists()

    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--device", "cpu", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "4 jobs: 4 ok" in result.output
    table = pd.read_parquet(out / "results")
    assert list(table["batch_size"]) == [2, 2, 2, 2]
