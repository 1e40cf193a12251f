"""Per-row pipeline options: validated, applied per job without leaking, counted in ids where they change pixels."""

import json
from pathlib import Path

import numpy as np
import pytest

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.metrics import psnr
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.pipeline_options import PipelineOptions, compile_targets, load_options, option_kind, pixel_options
from videosweep.tasks.pipeline_setup import compile_cache_dir, use_compile_cache
from videosweep.tasks.video import read_mp4

from .conftest import ROCKET

SVD = f"model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: 2, num_inference_steps: 2, seed: 1"
WAN = "model: tiny-wan, prompt: a rocket, height: 32, width: 32, num_frames: 5, num_inference_steps: 6, seed: 3"


def manifest(folder: Path, rows: list[str], device: str = "cpu", defaults: str = SVD):
    body = "\n".join(f"  - {{{row}}}" for row in rows)
    (folder / "m.yaml").write_text(f"name: t\ndefaults: {{{defaults}}}\nrows:\n{body}\n")
    return load_manifest(folder / "m.yaml", device)


def test_pixel_options_change_the_job_id_and_speed_options_do_not(tmp_path):
    jobs = manifest(tmp_path, ["", "scheduler: euler-a", "scheduler_config: {timestep_spacing: trailing}"]).jobs
    assert len({job.job_id for job in jobs}) == 3
    shortcuts = manifest(tmp_path, ["guidance_cutoff: 0.6", "step_cache: {type: deep_cache}", "step_cache: {type: deep_cache, interval: 4}"]).jobs
    assert len({job.job_id for job in jobs + shortcuts}) == 6, "quality trades change the video"
    assert shortcuts[0].options == {"guidance_cutoff": 0.6} and shortcuts[0].pipeline_key == jobs[0].pipeline_key
    (chunked,) = manifest(tmp_path, ["forward_chunking: 2"]).jobs
    assert chunked.job_id == jobs[0].job_id, "forward chunking only trades memory for time"
    assert chunked.options == {"forward_chunking": 2} and chunked.pipeline_key == jobs[0].pipeline_key



def test_every_option_declares_what_it_changes():
    """Its field's kind decides where an option counts: the job id (pixels), the pipeline key (load), neither (speed)."""
    kinds = {name: option_kind(name) for name in PipelineOptions.model_fields}
    assert kinds == {
        "scheduler": "pixels",
        "scheduler_config": "pixels",
        "offload": "load",
        "vae_slicing": "speed",
        "vae_tiling": "pixels",
        "forward_chunking": "speed",
        "freeu": "pixels",
        "compile": "load",
        "channels_last": "load",
        "cudnn_benchmark": "speed",
        "attention": "load",
        "step_cache": "pixels",
        "guidance_cutoff": "pixels",
    }
    chosen = {"scheduler": "ddim", "offload": "model", "vae_slicing": True, "compile": {"vae": "default"}}
    assert pixel_options(chosen) == {"scheduler": "ddim"}
    assert load_options(chosen) == (("compile", '{"vae": "default"}'), ("offload", "model"))

@pytest.mark.parametrize(
    "row, message",
    [
        ("scheduler: eulr", "unknown scheduler; use one of ddim"),
        ("offload: model", "offload='model' needs a CUDA device"),
        ("freeu: {s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4}", "StableVideoDiffusionPipeline has no FreeU"),
        ("freeu: {s1: 0.9}", "FreeU takes exactly s1, s2, b1, b2"),
        ("forward_chunking: 0", "greater than or equal to 1"),
    ],
)
def test_bad_options_are_refused_before_rendering(tmp_path, row, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(")):
        manifest(tmp_path, [row])


def test_options_apply_per_job_and_reset_after(tmp_path, fresh_pipeline_cache):
    """A scheduler swap for one job must not leak into the next job on the same cached pipeline."""
    table = manifest(tmp_path, ["seed: 1", "scheduler: euler-a, seed: 2", "seed: 3", "forward_chunking: 1, seed: 4"])
    run = RunContext.new(tmp_path / "out", "cpu", table)
    records = [render_job(job, run) for job in in_order(table.jobs)]
    assert [r["status"] for r in records] == ["ok"] * 4, [r["error"] for r in records]
    assert [r["scheduler_class"] for r in records] == [
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "EulerDiscreteScheduler",
    ]
    assert [r["cache_hit"] for r in records] == [False, True, True, True], "options set per job need no reload"
    assert json.loads(records[1]["options_json"]) == {"scheduler": "euler-a"}
    assert json.loads(records[1]["scheduler_config_json"])["use_karras_sigmas"] is True  # the loaded config, carried over


def test_an_unsupported_option_fails_its_job_only(tmp_path):
    table = manifest(tmp_path, ["vae_tiling: true", "seed: 2"])
    run = RunContext.new(tmp_path / "out", "cpu", table)
    tiled, plain = (render_job(job, run) for job in table.jobs)
    assert tiled["status"] == "failed" and "vae_tiling is not supported by AutoencoderKLTemporalDecoder" in tiled["error"]
    assert plain["status"] == "ok"


def test_speed_options_validate_are_recorded_and_split_by_kind(tmp_path):
    """Load-time options part the pipeline key, not the job id; the step cache changes the video, so the id."""
    (plain,) = manifest(tmp_path, [""]).jobs
    (fast,) = manifest(
        tmp_path,
        ["compile: {unet: max-autotune-no-cudagraphs, vae: default}, channels_last: true, cudnn_benchmark: true"],
    ).jobs
    assert fast.options == {
        "compile": {"unet": "max-autotune-no-cudagraphs", "vae": "default"},
        "channels_last": True,
        "cudnn_benchmark": True,
    }
    assert fast.job_id == plain.job_id and fast.pipeline_key != plain.pipeline_key
    wan_plain, wan_cached = manifest(tmp_path, ["", "step_cache: {type: first_block, threshold: 0.2}"], defaults=WAN).jobs
    assert wan_cached.options == {"step_cache": {"type": "first_block", "threshold": 0.2}}
    assert wan_cached.job_id != wan_plain.job_id and wan_cached.pipeline_key == wan_plain.pipeline_key
    assert compile_targets(True) == {"denoiser": "default"} and compile_targets("max-autotune") == {"denoiser": "max-autotune"}


@pytest.mark.parametrize(
    "row, message",
    [
        ("compile: {text_encoder: default}", "compile takes parts denoiser, unet, transformer, vae"),
        ("compile: fastest", "Input should be 'default', 'reduce-overhead'"),
        ("attention: flash3", "Input should be 'sdpa'"),
        ("step_cache: {type: deep}", "Input tag 'deep' found using 'type' does not match any of the expected tags: 'first_block'"),
        ("step_cache: {type: first_block, threshold: 0}", "greater than 0"),
        ("step_cache: {type: first_block}", "StableVideoDiffusionPipeline denoises with a UNet"),
        ("step_cache: {type: deep_cache, interval: 0}", "greater than or equal to 1"),
        ("guidance_cutoff: 1.5", "less than or equal to 1"),
        ("guidance_cutoff: 0.5, max_guidance_scale: 1", "max_guidance_scale is 1.0, so there is no guidance to cut"),
    ],
)
def test_bad_speed_options_are_refused_before_rendering(tmp_path, row, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(")):
        manifest(tmp_path, [row])


def test_channels_last_and_cudnn_benchmark_render_the_same_frames(tmp_path):
    """Speed-only options: the video of eager and channels-last SVD agree to floating-point noise."""
    videos = []
    for name, row in (("eager", ""), ("fast", "channels_last: true, cudnn_benchmark: true")):
        (tmp_path / name).mkdir()
        table = manifest(tmp_path / name, [row])
        record = render_job(table.jobs[0], RunContext.new(tmp_path / name / "out", "cpu", table))
        assert record["status"] == "ok", record["error"]
        videos.append(read_mp4(tmp_path / name / "out" / record["video_path"])[0])
    assert json.loads(record["options_json"]) == {"channels_last": True, "cudnn_benchmark": True}
    assert psnr(*videos) > 40


def test_attention_backend_is_refused_where_the_denoiser_does_not_dispatch(tmp_path):
    table = manifest(tmp_path, ["attention: sdpa-flash"])
    (record,) = (render_job(job, RunContext.new(tmp_path / "out", "cpu", table)) for job in table.jobs)
    assert record["status"] == "failed"
    assert "attention: UNetSpatioTemporalConditionModel calls torch's SDPA itself" in record["error"]


def test_step_cache_renders_a_different_video_and_is_removed_after(tmp_path, fresh_pipeline_cache):
    table = manifest(tmp_path, ["", "step_cache: {type: first_block, threshold: 0.5}"], defaults=WAN)
    run = RunContext.new(tmp_path / "out", "cpu", table)
    plain, cached = (render_job(job, run) for job in table.jobs)
    assert [r["status"] for r in (plain, cached)] == ["ok"] * 2, [r["error"] for r in (plain, cached)]
    assert cached["cache_hit"] and json.loads(cached["options_json"])["step_cache"]["type"] == "first_block"
    video = {name: read_mp4(tmp_path / "out" / r["video_path"])[0] for name, r in (("plain", plain), ("cached", cached))}
    assert psnr(video["plain"], video["cached"]) < 60, "the step cache skipped no work"
    again = render_job(table.jobs[0], run, attempt=2)  # the same pipeline, the cache removed again
    assert np.array_equal(read_mp4(tmp_path / "out" / again["video_path"])[0], video["plain"])


def test_compile_cache_lives_under_videosweep_home(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing torch sets
    assert use_compile_cache() == compile_cache_dir() and compile_cache_dir().is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache() == tmp_path / "mine", "a folder the user chose is kept"
