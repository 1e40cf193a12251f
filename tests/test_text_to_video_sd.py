"""The text-to-video-sd family (ModelScope, Zeroscope 576w) on its tiny checkpoint: contract, inputs, departures."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, text_to_video_sd
from videosweep.tasks.models.base import LoadOptions

from .conftest import REPO, pipeline_call
from .family_contract import FamilyContract


class TestTextToVideoSDContract(FamilyContract):
    family = "text-to-video-sd"

    def row(self, inputs):
        return dict(
            prompt="Spiderman is surfing",
            negative_prompt="blurry",
            height=32,
            width=48,
            num_frames=4,
            num_inference_steps=2,
        )

    def other_video(self, inputs):
        # no negative prompt: one video of the call on the empty prompt, the other on "blurry"
        return {"prompt": "a boat at sea, in the style of an oil painting", "negative_prompt": None}

    docs_fps = 10  # the docs' export_to_video(video_frames) writes at its default, 10 fps

    def docs_row(self, inputs):
        return dict(prompt="Spiderman is surfing", height=32, width=48, num_frames=4, num_inference_steps=2)

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/text_to_video, ``text-to-video-ms-1.7b``'s first example, as written, on the tiny checkpoint."""
        from diffusers import DiffusionPipeline

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.float16, variant="fp16")
        pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe = pipe.to("cuda") is left out (CPU only)

        prompt = "Spiderman is surfing"
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video_frames = pipe(
            prompt,
            height=row["height"],  # sizes: the docs leave the UNet's 256 x 256, 16 frames, 50 steps
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(video_frames) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in video_frames])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-text-to-video-sd"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return text_to_video_sd.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


def small(**overrides) -> text_to_video_sd.Params:
    values = dict(prompt="Spiderman is surfing", height=32, width=48, num_frames=4, num_inference_steps=2)
    return text_to_video_sd.Params(**{**values, **overrides})


def frames(pipe, seed: int = 7, **overrides) -> np.ndarray:
    return text_to_video_sd.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def write_manifest(tmp_path: Path, row: dict) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-text-to-video-sd", "seed": 1}, "rows": [row]}))
    return path


def problems(tmp_path: Path, row: dict) -> str:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_manifest(tmp_path, row), "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny: Path):
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "TextToVideoSDPipeline"
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert set(index) >= {"scheduler", "text_encoder", "tokenizer", "unet", "vae"}
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny / f"{weights}.safetensors").is_file()
        assert (tiny / f"{weights}.fp16.safetensors").is_file()
    scheduler = json.loads((tiny / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler" and scheduler["prediction_type"] == "epsilon"
    tokenizer = json.loads((tiny / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "CLIPTokenizer" and tokenizer["model_max_length"] == 77


def test_tiny_build_is_reproducible(tiny: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    text_to_video_sd.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny)


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in problems(tmp_path, {"num_frames": 4})


def test_empty_prompt_size_frames_and_clip_skip_are_refused(tmp_path: Path):
    message = problems(tmp_path, {"prompt": "", "height": 36, "num_frames": 0, "clip_skip": 1})
    assert "prompt=''" in message and "at least 1 character" in message
    assert "height=36" in message and "multiple of 8" in message
    assert "num_frames=0" in message
    assert "unknown key 'clip_skip'" in message


def test_loaded_as_the_docs_load_it(pipe):
    assert type(pipe).__name__ == "TextToVideoSDPipeline"
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # the repo's own: the docs keep it
    assert not pipe.vae.use_slicing  # the docs' first call decodes a video's frames in one VAE call


def test_render_shape_fps_and_timings(pipe):
    rendered = text_to_video_sd.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (4, 32, 48, 3)
    assert rendered.frames.dtype == np.uint8
    assert rendered.fps == 10  # the docs' export_to_video(video_frames) writes at its default, 10 fps
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_size_defaults_to_the_unets(pipe):
    rendered = text_to_video_sd.FAMILY.render_one(pipe, small(height=None, width=None), torch.Generator().manual_seed(0), "cpu")
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert rendered.frames.shape == (4, side, side, 3) == (4, 32, 32, 3)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists);
    the call stops at the latents, which render decodes."""
    params = small(prompt="a boat at sea", negative_prompt="blurry", num_frames=3, num_inference_steps=3, guidance_scale=1.0, eta=1.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: text_to_video_sd.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=["a boat at sea"],
        negative_prompt=["blurry"],
        height=32,
        width=48,
        num_frames=3,
        num_inference_steps=3,
        guidance_scale=1.0,
        eta=1.0,
        generator=[generator],
        output_type="latent",
    )


def test_vae_slicing_is_the_rows_choice_and_decodes_one_frame_per_vae_call(pipe, monkeypatch):
    from videosweep.tasks.pipeline_setup import Baseline, prepare_job

    calls = []
    decode_one = pipe.vae._decode
    monkeypatch.setattr(pipe.vae, "_decode", lambda z, *a, **k: calls.append(len(z)) or decode_one(z, *a, **k))
    baseline = Baseline.of(pipe)
    frames(pipe)
    assert calls == [4], "unless a row asks, all of a video's frames in one call, as the docs' first call"
    calls.clear()
    prepare_job(pipe, {"vae_slicing": True}, baseline)  # the docs' memory recipe: pipe.enable_vae_slicing()
    try:
        frames(pipe)
    finally:
        prepare_job(pipe, {}, baseline)
    assert calls == [1, 1, 1, 1]


def test_default_output_is_numpy_and_the_docs_vae_slicing_call_is_gone():
    """Why the docs' export truncates (export_to_video converts numpy frames with (frame * 255).astype(np.uint8))
    and why the row option vae_slicing calls pipe.vae.enable_slicing()."""
    from diffusers import TextToVideoSDPipeline

    assert inspect.signature(TextToVideoSDPipeline.__call__).parameters["output_type"].default == "np"
    assert not hasattr(TextToVideoSDPipeline, "enable_vae_slicing")


def test_clip_skip_fails_on_this_stack(pipe):
    """Why clip_skip is no parameter (diffusers #14124); if this starts passing, it may be exposed."""
    with pytest.raises(AttributeError, match="text_model"):
        pipe("a rocket", height=32, width=32, num_frames=2, num_inference_steps=1, clip_skip=1, output_type="latent")


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "text-to-video-sd.yaml", "cpu")
    tiny = load_manifest(REPO / "manifests" / "tiny" / "text-to-video-sd.yaml", "cpu")
    assert {job.model for job in real.jobs} == {"modelscope-1.7b", "zeroscope-576w"}
    assert {job.model for job in tiny.jobs} == {"tiny-text-to-video-sd"}
    assert len(real.jobs) == len(tiny.jobs)
    zeroscope = [job for job in real.jobs if job.model == "zeroscope-576w"]
    assert zeroscope and all(job.variant is None for job in zeroscope)  # the docs load it without a variant


def test_rows_with_eta_render_one_video_per_call(tmp_path):
    """The pipeline draws eta's noise for all videos' frames as one batch from one generator each: it cannot share a call."""
    from videosweep.tasks.render import batches

    contract = TestTextToVideoSDContract()
    row = contract.row(tmp_path)
    plain = contract.jobs(tmp_path, [row], [1, 2])
    noisy = contract.jobs(tmp_path, [{**row, "eta": 1.0}], [1, 2])
    assert plain[0].batch_key is not None and [len(batch) for batch in batches(plain, 4)] == [2]
    assert noisy[0].batch_key is None and [len(batch) for batch in batches(noisy, 4)] == [1, 1]


def test_videosweep_run_writes_the_docs_frames_at_the_docs_rate(tmp_path, tiny):
    """The whole CLI on the docs' row: its mp4 decodes to the docs' frames (truncated as ``export_to_video``
    converts them) encoded by the project's writer, at ``export_to_video``'s 10 fps."""
    from typer.testing import CliRunner

    from videosweep.flows.cli import app
    from videosweep.tasks.video import read_mp4, write_mp4

    contract = TestTextToVideoSDContract()
    row = contract.docs_row(tmp_path)
    manifest = tmp_path / "docs.yaml"
    manifest.write_text(yaml.safe_dump({"name": "docs", "defaults": {"model": "tiny-text-to-video-sd", "seed": 11}, "rows": [row]}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (video,) = sorted((out / "videos").glob("*.mp4"))
    ours, fps = read_mp4(video)

    write_mp4(contract.docs_recipe(tiny, {}, row, 11), 10, tmp_path / "hand.mp4")
    hand, _ = read_mp4(tmp_path / "hand.mp4")
    assert fps == 10
    assert np.abs(ours.astype(int) - hand.astype(int)).max() == 0
