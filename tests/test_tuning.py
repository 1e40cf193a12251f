"""Per-row pipeline options: validated, applied per job without leaking, counted in ids where they change pixels."""

import json
from pathlib import Path

import pytest

from tasks.manifest import ManifestError, load_manifest
from tasks.plan import in_order
from tasks.render import RunContext, render_job

from .conftest import ROCKET


def manifest(folder: Path, rows: list[str], device: str = "cpu"):
    body = "\n".join(f"  - {{{row}}}" for row in rows)
    (folder / "m.yaml").write_text(
        f"name: t\ndefaults: {{model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: 2,"
        f" num_inference_steps: 2, seed: 1}}\nrows:\n{body}\n"
    )
    return load_manifest(folder / "m.yaml", device)


def test_pixel_options_change_the_job_id_and_speed_options_do_not(tmp_path):
    jobs = manifest(tmp_path, ["", "scheduler: euler-a", "scheduler_config: {timestep_spacing: trailing}"]).jobs
    assert len({job.job_id for job in jobs}) == 3
    (chunked,) = manifest(tmp_path, ["forward_chunking: 2"]).jobs
    assert chunked.job_id == jobs[0].job_id, "forward chunking only trades memory for time"
    assert chunked.options == {"forward_chunking": 2} and chunked.pipeline_key == jobs[0].pipeline_key


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
