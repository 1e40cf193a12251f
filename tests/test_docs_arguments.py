"""Docs arguments a row can express: torch.compile's ``fullgraph``, every argument of ``enable_free_init``, and
``enable_forward_chunking``'s ``chunk_size`` and ``dim`` (the docs' call by default). Each is checked where the
pipeline receives it (a spy on the method or on ``torch.compile``), validated, split by whether it changes pixels,
and listed by ``videosweep models``."""

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from videosweep.flows.cli import app
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.memory import ladder
from videosweep.tasks.models import ensure_built, known_models
from videosweep.tasks.render import RunContext, pipeline_cache, render_job
from videosweep.tasks.render.start import start_job
from videosweep.tasks.pipeline_options import compile_specs, forward_chunking_args
from videosweep.tasks.pipeline_setup import prepare_job
from videosweep.tasks.video import read_mp4

from .conftest import ROCKET

SVD = {"model": "tiny-svd", "image": str(ROCKET), "height": 32, "width": 48, "num_frames": 2, "num_inference_steps": 2}
ANIMATEDIFF = {"model": "tiny-animatediff", "prompt": "a rocket lifting off", "height": 32, "width": 32, "num_frames": 4,
               "num_inference_steps": 2}  # fmt: skip
PIA = {**ANIMATEDIFF, "model": "tiny-pia", "image": str(ROCKET), "scheduler": "ddim"}  # FreeInit needs DDIM (pia.py)
#: A row's FreeInit keys, none at its default, and the enable_free_init arguments they must reach the pipeline as.
FREE_INIT_ROW = {
    "free_init": True,
    "free_init_iters": 2,
    "free_init_method": "gaussian",
    "free_init_use_fast_sampling": True,
    "free_init_order": 2,
    "free_init_spatial_stop_frequency": 0.5,
    "free_init_temporal_stop_frequency": 0.3,
}
FREE_INIT_ARGS = {
    "num_iters": 2,
    "method": "gaussian",
    "use_fast_sampling": True,
    "order": 2,
    "spatial_stop_frequency": 0.5,
    "temporal_stop_frequency": 0.3,
}


@pytest.fixture(scope="module", autouse=True)
def built():
    """Tiny component folders exist before a manifest names them (see test_animatediff.built)."""
    for key in ("tiny-animatediff", "tiny-pia"):
        ensure_built(known_models()[key])


def manifest(folder: Path, rows: list[dict], seed: int = 3):
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "args", "rows": rows, "seeds": [seed]}, sort_keys=False))
    return load_manifest(path, "cpu")


def render(tmp_path: Path, rows: list[dict]) -> list[dict]:
    """Each row rendered in turn (a manifest and an output root each: rows of one job id may not share a manifest)."""
    records = []
    for index, row in enumerate(rows):
        (job,) = manifest(tmp_path, [row]).jobs
        records.append(render_job(job, RunContext.new(tmp_path / f"out{index}", "cpu", manifest(tmp_path, [row]))))
    assert [record["status"] for record in records] == ["ok"] * len(rows), [record["error"] for record in records]
    return records


def spy(monkeypatch, owner, name: str) -> list[tuple[tuple, dict]]:
    """Record every call of ``owner.name`` (args after self, kwargs) and let it run."""
    calls, real = [], getattr(owner, name)

    def recording(self, *args, **kwargs):
        calls.append((args, kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def free_init_defaults() -> dict:
    """enable_free_init's defaults, read from the installed diffusers."""
    from diffusers.pipelines.free_init_utils import FreeInitMixin

    parameters = inspect.signature(FreeInitMixin.enable_free_init).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


# -- FreeInit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "row", "pipeline"), [("pia", PIA, "PIAPipeline"), ("animatediff", ANIMATEDIFF, "AnimateDiffPipeline")])
def test_every_free_init_argument_reaches_enable_free_init(tmp_path, monkeypatch, family, row, pipeline):
    import diffusers

    owner = getattr(diffusers, pipeline)
    enabled, disabled = spy(monkeypatch, owner, "enable_free_init"), spy(monkeypatch, owner, "disable_free_init")
    render(tmp_path, [{**row, **FREE_INIT_ROW}, {**row, "free_init": True}, row])
    assert [kwargs for _, kwargs in enabled] == [FREE_INIT_ARGS, free_init_defaults()]
    assert all(not args for args, _ in enabled)
    assert len(disabled) == 1, "a job without free_init switches it off on the cached pipeline"


def test_free_init_defaults_are_diffusers_own():
    from videosweep.tasks.models import animatediff, pia

    defaults = free_init_defaults()
    for params in (animatediff.Params, pia.Params):
        fields = params.model_fields
        assert fields["free_init"].default is False
        for argument, default in defaults.items():
            key = "free_init_iters" if argument == "num_iters" else f"free_init_{argument}"
            assert fields[key].default == default, (params.__module__, key)


def test_the_animatediff_docs_free_init_example_as_a_row(tmp_path):
    """api/pipelines/animatediff, "Using FreeInit", on the tiny checkpoints: the docs' pipeline and DDIM scheduler,
    ``enable_free_init(method="butterworth", use_fast_sampling=True)``. Adapted: the tiny folders, fp32 on the CPU,
    32x32, 4 frames, 2 steps and 2 FreeInit rounds (the docs: 512x512, 16 frames, 20 steps, 3 rounds), the seed;
    ``pipe.vae.enable_slicing()`` for ``pipe.enable_vae_slicing()`` (gone in diffusers 0.42.1)."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    ref = known_models()["tiny-animatediff"]
    row = {**ANIMATEDIFF, "negative_prompt": "bad quality, worse quality", "guidance_scale": 7.5,
           "free_init": True, "free_init_use_fast_sampling": True, "free_init_iters": 2}  # fmt: skip
    table = manifest(tmp_path, [row], seed=0)
    rendering = start_job(table.jobs[0], RunContext.new(tmp_path / "out", "cpu", table))
    assert rendering.rendered is not None, rendering.record["error"]

    adapter = MotionAdapter.from_pretrained(dict(ref.components)["adapter"], dtype=torch.float32)
    pipe = AnimateDiffPipeline.from_pretrained(ref.source, motion_adapter=adapter, dtype=torch.float32)
    pipe.scheduler = DDIMScheduler.from_pretrained(
        ref.source, subfolder="scheduler", beta_schedule="linear", clip_sample=False, timestep_spacing="linspace",
        steps_offset=1,
    )  # fmt: skip
    pipe.vae.enable_slicing()
    pipe.enable_free_init(method="butterworth", use_fast_sampling=True, num_iters=row["free_init_iters"])
    output = pipe(
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        num_frames=row["num_frames"],
        height=row["height"],
        width=row["width"],
        guidance_scale=7.5,
        num_inference_steps=row["num_inference_steps"],
        generator=torch.Generator("cpu").manual_seed(0),
    )
    theirs = np.stack([np.asarray(frame) for frame in output.frames[0]])
    assert np.abs(rendering.rendered.frames.astype(int) - theirs.astype(int)).max() == 0


def test_free_init_keys_are_validated_and_count_in_the_job_id(tmp_path):
    plain, on, tuned = manifest(tmp_path, [PIA, {**PIA, "free_init": True}, {**PIA, **FREE_INIT_ROW}]).jobs
    assert len({plain.job_id, on.job_id, tuned.job_id}) == 3, "FreeInit's arguments change the video"
    for key, value, message in [
        ("free_init_order", 0, "greater than or equal to 1"),
        ("free_init_spatial_stop_frequency", 1.5, "less than or equal to 1"),
        ("free_init_temporal_stop_frequency", -0.1, "greater than or equal to 0"),
        ("free_init_use_fast_sampling", "sometimes", "valid boolean"),
    ]:
        with pytest.raises(ManifestError, match=f"{key}=.*{message}"):
            manifest(tmp_path, [{**ANIMATEDIFF, "free_init": True, key: value}])


# -- forward chunking ---------------------------------------------------------------------------------


def test_forward_chunking_follows_the_docs_unless_the_row_says_otherwise(tmp_path, monkeypatch):
    """``true`` is the docs' ``pipe.unet.enable_forward_chunking()`` (no arguments: chunks of 1 along dim 0)."""
    from diffusers import UNetSpatioTemporalConditionModel

    enabled = spy(monkeypatch, UNetSpatioTemporalConditionModel, "enable_forward_chunking")
    rows = [
        {**SVD, "forward_chunking": True},
        {**SVD, "forward_chunking": 2},
        {**SVD, "forward_chunking": {"chunk_size": 1, "dim": 1}},
        {**SVD, "forward_chunking": {"dim": 1}},
        SVD,
    ]
    records = render(tmp_path, rows)
    assert enabled == [((), {}), ((), {"chunk_size": 2}), ((), {"chunk_size": 1, "dim": 1}), ((), {"dim": 1})]
    # a row without it leaves the cached pipeline unchunked (SVD's UNet has no disable_forward_chunking)
    pipe, _, _, hit = pipeline_cache().get(manifest(tmp_path, [SVD]).jobs[0], "cpu", "after")
    blocks = [module for module in pipe.unet.modules() if hasattr(module, "set_chunk_feed_forward")]
    assert hit and blocks and all(module._chunk_size is None for module in blocks)
    assert len({record["job_id"] for record in records}) == 1, "chunking changes memory and speed, not pixels"
    first, *others = (read_mp4(tmp_path / f"out{index}" / record["video_path"])[0] for index, record in enumerate(records))
    assert all(np.array_equal(first, other) for other in others), "bit-exact on the CPU at this size"


def test_the_memory_ladder_still_chunks_one_token_at_a_time(tmp_path, monkeypatch):
    from diffusers import UNetSpatioTemporalConditionModel

    (job,) = manifest(tmp_path, [{**SVD, "forward_chunking": True}]).jobs
    rung = dict(ladder(job, "cpu"))["forward-chunking"]
    assert rung.options["forward_chunking"] == {"chunk_size": 1, "dim": 1} and rung.job_id == job.job_id
    enabled = spy(monkeypatch, UNetSpatioTemporalConditionModel, "enable_forward_chunking")
    pipe, baseline, _, _ = pipeline_cache().get(rung, "cpu", "ladder")
    prepare_job(pipe, rung.options, baseline)
    assert enabled == [((), {"chunk_size": 1, "dim": 1})]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "a chunk size must be a whole number greater than or equal to 1"),
        (1.5, "a chunk size must be a whole number"),
        ({"dim": 2}, "dim must be 0 .the batch. or 1 .the tokens."),
        ({"chunk": 2}, "takes chunk_size and dim"),
        ({"chunk_size": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_forward_chunking_is_refused_before_rendering(tmp_path, value, message):
    with pytest.raises(ManifestError, match=f"forward_chunking=.*{message}"):
        manifest(tmp_path, [{**SVD, "forward_chunking": value}])


def test_forward_chunking_args():
    assert forward_chunking_args(None) is None and forward_chunking_args(False) is None
    assert forward_chunking_args(True) == {} and forward_chunking_args(3) == {"chunk_size": 3}
    assert forward_chunking_args({"dim": 1}) == {"dim": 1}
    assert forward_chunking_args({}) == {}


# -- torch.compile(..., fullgraph=True) ---------------------------------------------------------------


def test_compile_fullgraph_reaches_torch_compile(tmp_path, monkeypatch):
    """The SVD guide's ``torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)`` as a row; torch.compile
    is replaced by a spy that compiles nothing, so the CPU renders eagerly."""
    calls = []

    def spy_compile(model, *args, **kwargs):
        calls.append((getattr(model, "__self__", model), args, kwargs))
        return model

    monkeypatch.setattr(torch, "compile", spy_compile)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    rows = [
        {**SVD, "compile": {"mode": "reduce-overhead", "fullgraph": True}},
        {**SVD, "compile": {"unet": {"mode": "max-autotune", "fullgraph": True}, "vae": "default"}},
        {**SVD, "compile": "max-autotune"},
    ]
    records = render(tmp_path, rows)
    parts = [(type(module).__name__, kwargs) for module, _, kwargs in calls]
    assert parts == [
        ("UNetSpatioTemporalConditionModel", {"mode": "reduce-overhead", "fullgraph": True}),
        ("UNetSpatioTemporalConditionModel", {"mode": "max-autotune", "fullgraph": True}),
        ("TemporalDecoder", {"mode": None, "fullgraph": False}),
        ("UNetSpatioTemporalConditionModel", {"mode": "max-autotune", "fullgraph": False}),
    ]
    assert len({record["job_id"] for record in records}) == 1, "compiling changes speed, not the job"


def test_compile_fullgraph_is_validated_and_parts_the_pipeline_key(tmp_path):
    rows = [SVD, {**SVD, "compile": {"mode": "reduce-overhead", "fullgraph": True}}, {**SVD, "compile": "reduce-overhead"}]
    plain, whole, mode_only = (manifest(tmp_path, [row]).jobs[0] for row in rows)
    assert whole.options == {"compile": {"denoiser": {"mode": "reduce-overhead", "fullgraph": True}}}
    assert plain.job_id == whole.job_id == mode_only.job_id
    assert len({plain.pipeline_key, whole.pipeline_key, mode_only.pipeline_key}) == 3
    assert compile_specs({"unet": {"fullgraph": True}})["unet"].mode == "default"
    for value, message in [
        ({"unet": {"fullgraf": True}}, "unet takes mode and fullgraph, not fullgraf"),
        ({"mode": "reduce-overhead", "unet": "default"}, "compile takes parts denoiser"),
        ({"unet": {"mode": "fastest"}}, "Input should be 'default', 'reduce-overhead'"),
    ]:
        with pytest.raises(ManifestError, match=f"compile=.*{message}"):
            manifest(tmp_path, [{**SVD, "compile": value}])


# -- listed -------------------------------------------------------------------------------------------


def test_videosweep_models_lists_the_new_arguments(monkeypatch):
    from rich.console import Console

    from videosweep.flows.cli import models

    # wide enough for every name: the command's console took its width when it was imported
    monkeypatch.setattr(models, "out", Console(width=400))
    shown = CliRunner().invoke(app, ["models"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    for key in (
        "free_init_use_fast_sampling",
        "free_init_order",
        "free_init_spatial_stop_frequency",
        "free_init_temporal_stop_frequency",
        "{chunk_size: N, dim: 0|1}",
        "fullgraph",
    ):
        assert key in shown.output, key
    animatediff = shown.output[shown.output.index("animatediff (AnimateDiffPipeline)") :]
    assert "free_init_method" in animatediff.split("pia (PIAPipeline)")[0]
