"""Chains (``video: "@id"``): the taking job reads its source's frames exactly (lossless FFV1 beside the mp4),
through ``videosweep run`` and ``rerun``; resumes find the frames; roots from before they were kept still work."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.estimates import LOSSLESS_BYTES_PER_PIXEL_FRAME, estimated_output_bytes
from videosweep.tasks.layout import job_frames_path, job_video_path
from videosweep.tasks.manifest import load_manifest
from videosweep.tasks.models import file_sha256, text_to_video_sd
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.reproduce import find_record, plan_rerun, run_rerun
from videosweep.tasks.results import frames_intact, history, pending
from videosweep.tasks.video import read_mp4, write_lossless

from .conftest import use_render

PROMPT = "a rocket lifting off"


def videosweep(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def chain_manifest(folder: Path, name: str = "chain") -> Path:
    """The docs' two stages on the tiny checkpoints: text-to-video, then video-to-video at the input's size."""
    manifest = {
        "name": name,
        "defaults": {"prompt": PROMPT, "seed": 5, "num_inference_steps": 2},
        "rows": [
            {"id": "low-res", "model": "tiny-text-to-video-sd", "num_frames": 4, "height": 32, "width": 48},
            {"model": "tiny-video-to-video-sd", "video": "@low-res", "strength": 1.0},
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


@pytest.fixture
def spies(monkeypatch):
    """The first stage's rendered uint8 frames, and the frames the second stage's pipeline was handed, per call."""
    from diffusers import VideoToVideoSDPipeline

    seen = {"rendered": [], "handed": []}
    real_render, real_call = text_to_video_sd.FAMILY.render_one, VideoToVideoSDPipeline.__call__

    def render(*args, **kwargs):
        rendered = real_render(*args, **kwargs)
        seen["rendered"].append(rendered.frames.copy())
        return rendered

    def call(self, *args, **kwargs):
        seen["handed"].append(np.stack([np.asarray(frame) for frame in kwargs["video"]]))
        return real_call(self, *args, **kwargs)

    use_render(monkeypatch, text_to_video_sd, render)
    monkeypatch.setattr(VideoToVideoSDPipeline, "__call__", call)
    return seen


def test_write_lossless_keeps_every_value_at_any_size_and_rate(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 33, 47, 3), dtype=np.uint8)  # odd sides: no padding
    write_lossless(frames, 7.5, tmp_path / "a.mkv")
    back, fps = read_mp4(tmp_path / "a.mkv")
    assert np.array_equal(back, frames) and fps == 7.5
    write_lossless(frames, 7.5, tmp_path / "b.mkv")
    assert file_sha256(tmp_path / "a.mkv") == file_sha256(tmp_path / "b.mkv"), "equal frames, equal bytes"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left


def test_only_sources_keep_frames_and_the_ids_do_not_change(tmp_path):
    low, high = in_order(load_manifest(chain_manifest(tmp_path), "cpu").jobs)
    assert (low.keep_frames, high.keep_frames) == (True, False)
    spec = yaml.safe_load(chain_manifest(tmp_path).read_text())
    spec["rows"] = spec["rows"][:1]
    (tmp_path / "alone.yaml").write_text(yaml.safe_dump(spec))
    (alone,) = load_manifest(tmp_path / "alone.yaml", "cpu").jobs
    assert alone.job_id == low.job_id and not alone.keep_frames, "keeping frames changes no pixel: same id"
    frames, height, width = 4, 32, 48
    assert estimated_output_bytes([low]) - estimated_output_bytes([alone]) == frames * height * width * LOSSLESS_BYTES_PER_PIXEL_FRAME


def test_a_chain_through_run_reads_its_sources_frames_exactly_and_reruns_bit_identical(tmp_path, spies):
    """The docs hand the first stage's frames to the second in memory: the chained job gets exactly those frames
    (not the H.264 mp4's, up to 10 levels off), and ``rerun`` makes the chained video again bit for bit."""
    path, out = chain_manifest(tmp_path), tmp_path / "out"
    result = videosweep("run", path, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    low, high = in_order(load_manifest(path, "cpu").jobs)
    [rendered], [handed] = spies["rendered"], spies["handed"]
    assert handed.shape == rendered.shape and np.abs(handed.astype(int) - rendered.astype(int)).max() == 0

    source, chained = find_record(out, low.job_id), find_record(out, high.job_id)
    assert source["frames_path"] == job_frames_path(low.job_id) and frames_intact(out, source)
    assert np.array_equal(read_mp4(out / source["frames_path"])[0], rendered)
    assert chained["frames_path"] is None, "nothing takes the chained job's video"
    read = json.loads(chained["chain_inputs_json"])["video"]
    assert read == {
        "job_id": low.job_id,
        "path": job_frames_path(low.job_id),
        "lossless": True,
        "sha256": source["frames_sha256"],
    }
    assert history(out).frames == {low.job_id}

    again = videosweep("rerun", out, high.job_id, "--into", tmp_path / "again", "--device", "cpu")
    assert again.exit_code == 0 and "bit-identical to the recorded video" in again.output, again.output
    assert np.array_equal(spies["handed"][-1], rendered)

    # the frames gone from the root: the rerun renders the source again from its record, and is still bit-identical
    (out / job_frames_path(low.job_id)).unlink()
    gone = videosweep("rerun", out, high.job_id, "--into", tmp_path / "gone", "--device", "cpu")
    assert gone.exit_code == 0, gone.output
    assert "lossless frames" in gone.output and "are gone; rendered it again first" in gone.output, gone.output
    assert gone.output.rstrip().splitlines()[-1].startswith("bit-identical to the recorded video"), gone.output


def test_a_resume_renders_a_source_again_when_a_pending_job_needs_its_lost_frames(tmp_path):
    table = load_manifest(chain_manifest(tmp_path), "cpu")
    low, high = in_order(table.jobs)
    out = tmp_path / "out"
    run = RunContext.new(out, "cpu", table)
    assert [render_job(job, run)["status"] for job in (low, high)] == ["ok", "ok"]
    assert pending(table, out, force=False)[1] == []

    (out / job_video_path(high.job_id)).unlink()  # the chained job renders again; its source's frames are there
    assert [job.job_id for job in pending(table, out, force=False)[1]] == [high.job_id]
    (out / job_frames_path(low.job_id)).write_bytes(b"truncated")  # now they are not: the source renders first
    assert [job.job_id for job in pending(table, out, force=False)[1]] == [low.job_id, high.job_id]
    assert [job.job_id for job in pending(table, out, force=False, retry_failed=True)[1]] == [low.job_id, high.job_id]
    (out / job_video_path(low.job_id)).rename(out / "aside.mp4")  # a source not finished is rendered in any case
    assert [job.job_id for job in pending(table, out, force=False)[1]] == [low.job_id, high.job_id]


def test_a_root_from_before_frames_were_kept_reads_the_mp4_noted_as_lossy_and_reruns_bit_identical(tmp_path, spies):
    table = load_manifest(chain_manifest(tmp_path), "cpu")
    low, high = in_order(table.jobs)
    out = tmp_path / "out"
    run = RunContext.new(out, "cpu", table)
    old_source = render_job(low.model_copy(update={"keep_frames": False}), run)  # as videosweep rendered it before
    assert old_source["status"] == "ok" and old_source["frames_path"] is None
    chained = render_job(high, run)
    assert chained["status"] == "ok", chained["error"]
    read = json.loads(chained["chain_inputs_json"])["video"]
    assert read["path"] == job_video_path(low.job_id) and read["lossless"] is False and "lossy input" in read["note"]
    decoded, _ = read_mp4(out / job_video_path(low.job_id))
    assert np.array_equal(spies["handed"][-1], decoded)

    # rendered again with its frames kept: a rerun of the job that read the mp4 still reads the mp4
    assert render_job(low, run, attempt=2).get("frames_path") == job_frames_path(low.job_id)
    outcome = run_rerun(plan_rerun(out, high.job_id, [], "cpu", tmp_path / "again"))
    assert outcome.identical, outcome.message
    assert not (tmp_path / "again" / job_frames_path(low.job_id)).exists()
    assert np.array_equal(spies["handed"][-1], decoded)


def test_a_source_that_cannot_keep_its_frames_fails_and_its_dependant_is_skipped(tmp_path, monkeypatch):
    import errno

    from videosweep.tasks.render import export

    table = load_manifest(chain_manifest(tmp_path), "cpu")
    low, high = in_order(table.jobs)
    out = tmp_path / "out"

    def broken(frames, fps, path):
        raise OSError(errno.EIO, "encoder died (injected)")

    monkeypatch.setattr(export, "write_lossless", broken)
    run = RunContext.new(out, "cpu", table)
    source = render_job(low, run)
    assert source["status"] == "failed" and "encoder died" in source["error"]
    assert not (out / job_video_path(low.job_id)).exists(), "no mp4 without its frames"
    assert render_job(high, run)["status"] == "skipped"
    shutil.rmtree(out)
