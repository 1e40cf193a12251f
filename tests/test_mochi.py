"""The Mochi text-to-video family on its tiny checkpoint: the contract (the docs' bf16-variant recipe included),
the real repo's weight layout, and the frame, size and step rules the pipeline leaves unchecked."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, mochi
from videosweep.tasks.models.base import LoadOptions

from .family_contract import FamilyContract

PROMPT = "A rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "blurry, static, low quality"
DOCS_PROMPT = "Close-up of a chameleon's eye, with its scaly skin changing color. Ultra high resolution 4k."


class TestMochiContract(FamilyContract):
    family = "mochi"

    def row(self, inputs):
        # 16 x 16: in float16 and bfloat16 the VAE's 3D convolutions take torch's slow CPU path (10 s at 32 x 48)
        return dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=16, width=16, num_frames=7, num_inference_steps=2)

    def other_video(self, inputs):
        # another prompt, and no negative prompt: one video of the call on the empty one, the other on NEGATIVE
        return {"prompt": "A sailboat drifts across a calm lake at noon", "negative_prompt": None}

    docs_fps = 30  # the docs' export_to_video(frames, "mochi.mp4", fps=30)

    def docs_row(self, inputs):
        # the docs' bf16 variant in bfloat16 and their VAE tiling, as row keys; model CPU offload is GPU only
        return dict(
            prompt=DOCS_PROMPT,
            num_frames=7,
            height=16,
            width=16,
            num_inference_steps=2,
            dtype="bfloat16",
            variant="bf16",
            vae_tiling=True,
        )

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/mochi, "Using a lower precision variant to save memory" (huggingface/diffusers
        docs/source/en/api/pipelines/mochi.md), as written, on the tiny checkpoint."""
        from diffusers import MochiPipeline

        # checkpoint path: the tiny folder, which holds the repo's *.bf16.* transformer and VAE files
        pipe = MochiPipeline.from_pretrained(folder, variant="bf16", dtype=torch.bfloat16)

        # Enable memory savings
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)
        pipe.vae.enable_tiling()

        prompt = "Close-up of a chameleon's eye, with its scaly skin changing color. Ultra high resolution 4k."
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        frames = pipe(
            prompt,
            num_frames=row["num_frames"],  # sizes: 7 frames at 16 x 16, 2 steps (the docs: 85 frames, the
            height=row["height"],  # pipeline's 480 x 848 and 64 steps)
            width=row["width"],
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(frames, "mochi.mp4", fps=30) receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])


@pytest.fixture(scope="module")
def tiny_mochi() -> Path:
    ref = known_models()["tiny-mochi"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_mochi):
    return mochi.load(LoadOptions(str(tiny_mochi), None, "float32", None), "cpu")


def small(**overrides) -> mochi.Params:
    values = dict(prompt=PROMPT, height=16, width=16, num_frames=7, num_inference_steps=2)
    return mochi.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return mochi.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-mochi", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny_mochi: Path):
    index = json.loads((tiny_mochi / "model_index.json").read_text())
    assert index["_class_name"] == "MochiPipeline"
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    assert index["transformer"] == ["diffusers", "MochiTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLMochi"]
    scheduler = json.loads((tiny_mochi / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["invert_sigmas"]
    # genmo/mochi-1-preview: bf16 variants of the transformer and the VAE, plain files only for the T5
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model"):
        assert (tiny_mochi / f"{weights}.safetensors").is_file()
        assert (tiny_mochi / f"{weights}.bf16.safetensors").is_file()
    assert not list((tiny_mochi / "text_encoder").glob("*.bf16.*"))
    assert (tiny_mochi / "text_encoder" / "model.safetensors").is_file()
    assert (tiny_mochi / "tokenizer" / "tokenizer.json").is_file()  # built in memory, no download


def test_tiny_build_is_reproducible(tiny_mochi: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    mochi.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_mochi)


def test_the_bf16_variant_loads_its_own_files(tiny_mochi: Path):
    """The mochi-1 key's load: the *.bf16.* transformer and VAE, the T5 from its plain files, all in bfloat16."""
    from safetensors.torch import load_file

    pipe = mochi.load(LoadOptions(str(tiny_mochi), None, "bfloat16", "bf16"), "cpu")
    assert {pipe.transformer.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.bfloat16}
    saved = load_file(tiny_mochi / "transformer" / "diffusion_pytorch_model.bf16.safetensors")
    assert all(torch.equal(saved[name], value) for name, value in pipe.transformer.state_dict().items())


def test_render_shape_fps_and_timings(pipe):
    params = small(height=32, width=48, num_frames=13)
    rendered = mochi.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (13, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 30  # the docs export at 30 fps
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_the_pipeline_would_silently_shorten_other_frame_counts(pipe):
    """Why 12 is refused: the pipeline itself returns 7 frames for it (the docs' 85 is 6k+1; 84 would give 79)."""
    video = pipe(prompt=PROMPT, num_frames=12, height=16, width=16, num_inference_steps=2, output_type="np").frames[0]
    assert len(video) == 7


def test_frame_counts_other_than_6k_plus_1_are_refused(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=84)
    assert "num_frames=84" in message and "6k+1" in message and "into 79 frames" in message
    assert "nearest: 79 or 85" in message
    assert mochi.Params(prompt=PROMPT, num_frames=1).num_frames == 1


def test_sizes_must_be_multiples_of_16(pipe, tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, height=40, width=48)
    assert "height=40" in message and "multiple of 16" in message
    with pytest.raises(RuntimeError):  # the pipeline checks 8 only, then fails inside the transformer
        pipe(prompt=PROMPT, height=40, width=48, num_frames=1, num_inference_steps=2, output_type="latent")


def test_one_step_is_refused(pipe, tmp_path: Path):
    assert "num_inference_steps=1" in manifest_problems(tmp_path, prompt=PROMPT, num_inference_steps=1)
    with pytest.raises(ZeroDivisionError):  # the linear-quadratic schedule divides by half the steps
        pipe(prompt=PROMPT, height=16, width=16, num_frames=1, num_inference_steps=1, output_type="latent")


def test_prompt_is_required_and_not_empty(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, num_frames=7)
    assert "prompt=''" in manifest_problems(tmp_path, prompt="")


def test_prompt_negative_prompt_and_guidance_change_the_video(pipe):
    first = frames(pipe)
    assert not np.array_equal(first, frames(pipe, prompt="A quiet lake at night"))
    assert not np.array_equal(first, frames(pipe, negative_prompt=NEGATIVE))
    assert not np.array_equal(first, frames(pipe, guidance_scale=1.0))
    assert np.array_equal(first, frames(pipe))


def test_a_zeroing_checkpoint_refuses_calls_that_mix_empty_and_set_negative_prompts(tiny_mochi: Path):
    """The Genmo-style load zeroes empty negative prompts, the pipeline all of a call's by its last one: such a call
    fails (the run then renders each video alone), and a call of like negative prompts renders each as alone."""
    from diffusers import MochiPipeline

    pipe = MochiPipeline.from_pretrained(tiny_mochi, force_zeros_for_empty_prompt=True)
    pipe.set_progress_bar_config(disable=True)
    mixed = [small(negative_prompt=NEGATIVE), small()]
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    with pytest.raises(ValueError, match="force_zeros_for_empty_prompt"):
        mochi.render_batch(pipe, mixed, generators, "cpu")
    alike = [small(), small(prompt="A quiet lake at night")]
    batched = mochi.render_batch(pipe, alike, [torch.Generator().manual_seed(seed) for seed in (1, 2)], "cpu")
    for together, params, seed in zip(batched, alike, (1, 2)):
        alone = mochi.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames
        assert np.abs(together.frames.astype(int) - alone.astype(int)).max() <= 2
