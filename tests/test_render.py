"""Rendering without Prefect: plan order, the pipeline cache, and failures that stay per job."""

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, pipeline_cache, render_job
from videosweep.tasks.render.cache import PipelineCache

from .conftest import ROCKET, use_render


def write_manifest(folder: Path, models: list[str]) -> Path:
    rows = "\n".join(f"  - {{model: {model}}}" for model in models)
    text = f"""
name: t
defaults: {{image: {ROCKET}, height: 32, width: 48, num_frames: 2, num_inference_steps: 1}}
rows:
{rows}
seeds: [1, 2]
"""
    (folder / "m.yaml").write_text(text)
    return folder / "m.yaml"


def test_plan_groups_jobs_by_pipeline_in_order_of_first_use(tiny_svd, tmp_path):
    copy = shutil.copytree(tiny_svd, tmp_path / "other-svd")
    (copy / "scheduler" / "scheduler_config.json").write_text(
        (copy / "scheduler" / "scheduler_config.json").read_text().replace('"steps_offset": 1', '"steps_offset": 0')
    )
    jobs = load_manifest(write_manifest(tmp_path, ["tiny-svd", str(copy), "tiny-svd, fps: 9"]), "cpu").jobs
    ordered = in_order(jobs)
    assert sorted(job.job_id for job in ordered) == sorted(job.job_id for job in jobs)
    assert [job.origin for job in ordered] == ["rows[0]"] * 2 + ["rows[2]"] * 2 + ["rows[1]"] * 2


def test_cache_loads_once_and_evicts_beyond_capacity(tiny_svd, tmp_path):
    copy = shutil.copytree(tiny_svd, tmp_path / "svd-copy")
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + "\n")
    first, second = (
        load_manifest(write_manifest(tmp_path, [model]), "cpu").jobs[0] for model in ("tiny-svd", str(copy))
    )
    assert first.pipeline_key != second.pipeline_key
    cache = PipelineCache(capacity=1)
    pipe, baseline, load_s, hit = cache.get(first, "cpu", "run")
    assert not hit and load_s > 0
    assert cache.get(first, "cpu", "run") == (pipe, baseline, 0.0, True)
    assert not cache.get(second, "cpu", "run")[3]
    assert not cache.get(first, "cpu", "run")[3], "capacity 1: the first pipeline was evicted"


def test_a_pipeline_loaded_ahead_is_the_first_jobs_load_in_its_record(tiny_svd, tmp_path):
    job, later = load_manifest(write_manifest(tmp_path, ["tiny-svd"]), "cpu").jobs
    cache = PipelineCache()
    cache.preload(job, "cpu")  # while the Prefect API boots
    assert cache.loaded == [(job.pipeline_key, "cpu")]
    pipe, baseline, load_s, hit = cache.get(job, "cpu", "run")
    assert not hit and load_s > 0, "the first job's record says it loaded the pipeline, and how long that took"
    assert cache.get(later, "cpu", "run") == (pipe, baseline, 0.0, True)

    broken = shutil.copytree(tiny_svd, tmp_path / "broken-svd")
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    [failing, _] = load_manifest(write_manifest(tmp_path, [str(broken)]), "cpu").jobs
    cache.preload(failing, "cpu")  # a failed load ahead is the job's to try again and record
    with pytest.raises(Exception) as failed:
        cache.get(failing, "cpu", "run")
    assert "earlier in this run" not in str(failed.value)


def test_a_broken_checkpoint_fails_its_jobs_once_each_and_quickly(tiny_svd, tmp_path):
    broken = shutil.copytree(tiny_svd, tmp_path / "broken-svd")
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    manifest = load_manifest(write_manifest(tmp_path, [str(broken), "tiny-svd"]), "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", manifest)
    records = [render_job(job, run) for job in in_order(manifest.jobs)]

    assert [record["status"] for record in records] == ["failed", "failed", "ok", "ok"]
    assert "earlier in this run" not in records[0]["error"]
    assert records[1]["error_type"] == "PipelineLoadError" and "earlier in this run" in records[1]["error"]
    table = pd.read_parquet(tmp_path / "out" / "results")
    assert sorted(table["status"]) == ["failed", "failed", "ok", "ok"]

    # a new run tries the load again rather than trusting an old failure
    retry = RunContext.new(tmp_path / "out", "cpu", manifest)
    assert "earlier in this run" not in render_job(manifest.jobs[0], retry, attempt=2)["error"]


def test_pipeline_cache_is_one_per_process():
    assert pipeline_cache() is pipeline_cache()


def test_cache_keeps_what_fits_in_memory_and_frees_what_does_not(tiny_svd, tmp_path, monkeypatch):
    from videosweep.tasks.render import cache as pipelines

    copy = shutil.copytree(tiny_svd, tmp_path / "svd-copy")
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + "\n")
    first, second = (
        load_manifest(write_manifest(tmp_path, [model]), "cpu").jobs[0] for model in ("tiny-svd", str(copy))
    )
    assert pipelines.weights_bytes(first) > 0  # estimated from the weight files before the first load

    cache = PipelineCache()
    cache.get(first, "cpu", "run")
    cache.get(second, "cpu", "run")
    assert cache.get(first, "cpu", "run")[3], "both tiny pipelines fit in this machine's memory"

    monkeypatch.setattr(pipelines, "free_bytes", lambda device: 0)  # a full device: make room first
    third = load_manifest(write_manifest(tmp_path, ["tiny-svd, fps: 9, scheduler: euler-a"]), "cpu").jobs[0]
    assert third.pipeline_key == first.pipeline_key  # per-job options share the pipeline: still a hit
    copy2 = shutil.copytree(tiny_svd, tmp_path / "svd-copy-2")
    (copy2 / "vae" / "config.json").write_text((copy2 / "vae" / "config.json").read_text() + "\n")
    fourth = load_manifest(write_manifest(tmp_path, [str(copy2)]), "cpu").jobs[0]
    cache.get(fourth, "cpu", "run")
    assert cache.loaded == [(fourth.pipeline_key, "cpu")], "everything else freed to make room"


def test_a_failed_source_skips_the_jobs_that_take_its_video(tmp_path, monkeypatch):
    from videosweep.tasks.models import text_to_video_sd

    (tmp_path / "chain.yaml").write_text(
        "name: chain\ndefaults: {prompt: a rocket, num_inference_steps: 2}\nrows:\n"
        "  - {id: low, model: tiny-text-to-video-sd, height: 32, width: 48, num_frames: 4}\n"
        "  - {model: tiny-video-to-video-sd, video: '@low', strength: 0.6}\n"
        "  - {model: tiny-text-to-video-sd, height: 32, width: 48, num_frames: 3}\n"  # no chain: unaffected
        "seeds: [1, 2]\n"
    )
    table = load_manifest(tmp_path / "chain.yaml", "cpu")
    real = text_to_video_sd.FAMILY.render_one

    def fails_for_seed_1(pipe, params, generator, device):
        if generator.initial_seed() == 1 and params.num_frames == 4:
            raise RuntimeError("source broke")
        return real(pipe, params, generator, device)

    use_render(monkeypatch, text_to_video_sd, fails_for_seed_1)
    run = RunContext.new(tmp_path / "out", "cpu", table)
    records = {record["job_id"]: record for record in (render_job(job, run) for job in in_order(table.jobs))}
    chained = [job for job in table.jobs if job.depends_on]
    assert len(chained) == 2
    by_source_seed = {records[job.depends_on[0]]["seed"]: records[job.job_id] for job in chained}
    assert by_source_seed[1]["status"] == "skipped" and by_source_seed[1]["error_type"] == "SourceNotRendered"
    assert by_source_seed[2]["status"] == "ok"
    assert sorted(r["status"] for r in records.values()) == ["failed", "ok", "ok", "ok", "ok", "skipped"]


@pytest.mark.parametrize("overlap", [True, False])
def test_a_job_exports_while_the_next_renders_holding_two_videos_at_most(tiny_svd, tmp_path, monkeypatch, overlap):
    import threading
    import time

    from videosweep.tasks.render import export
    from videosweep.tasks.render.loop import render_shard

    real_write, exporting, most = export.write_mp4, [], [0]
    lock = threading.Lock()

    def slow_write(*args, **kwargs):  # an encoder slower than a render: exports would pile up if unbounded
        with lock:
            exporting.append(1)
            most[0] = max(most[0], len(exporting))
        time.sleep(1.0)
        try:
            return real_write(*args, **kwargs)
        finally:
            with lock:
                exporting.pop()

    monkeypatch.setattr(export, "write_mp4", slow_write)
    table = load_manifest(write_manifest(tmp_path, ["tiny-svd", "tiny-svd, fps: 9"]), "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", table, overlap_export=overlap)
    records = render_shard(in_order(table.jobs), run, {}, datetime.now(timezone.utc))

    assert [record["status"] for record in records] == ["ok"] * 4
    assert [record["job_id"] for record in records] == [job.job_id for job in in_order(table.jobs)]
    assert most[0] == 1, "one export at a time"
    assert all(record["export_overlapped"] is overlap for record in records)
    pairs = list(zip(records, records[1:]))
    if overlap:  # each next job started before the one before it had finished exporting
        assert all(later["started_at"] < earlier["finished_at"] for earlier, later in pairs)
    else:
        assert all(later["started_at"] >= earlier["finished_at"] for earlier, later in pairs)
    assert all(record["total_s"] >= record["export_s"] >= 1.0 for record in records)
