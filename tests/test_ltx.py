"""The LTX-Video text-to-video family on its tiny checkpoint: the contract, the 8k+1 and 32 px rules,
frame_rate as conditioning and mp4 rate, the timestep-aware decode, and the decoder's seeded noise."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, ltx
from videosweep.tasks.models.base import LoadOptions

from .conftest import REPO, pipeline_call
from .family_contract import FamilyContract

PROMPT = "A woman with long brown hair smiles at another woman with long blonde hair, warm sunset light"
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
DOCS_PROMPT = (
    "A woman with long brown hair and light skin smiles at another woman with long blonde hair. The woman with brown "
    "hair wears a black jacket and has a small, barely noticeable mole on her right cheek. The camera angle is a "
    "close-up, focused on the woman with brown hair's face. The lighting is warm and natural, likely from the setting "
    "sun, casting a soft glow on the scene. The scene appears to be real-life footage"
)


class TestLTXContract(FamilyContract):
    family = "ltx"

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=32,
            width=64,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
            decode_timestep=0.03,
            decode_noise_scale=0.025,
        )

    def other_video(self, inputs):
        # prompts shorter than max_sequence_length (16 tokens), where the row's are cut at it: other padding
        return {"prompt": "A sailboat", "negative_prompt": "dark, noisy"}

    docs_fps = 24  # the docs' export_to_video(video, "output.mp4", fps=24)
    fps_differs = "one rate, frame_rate: conditioning and the mp4's; the docs condition on the pipeline's 25 and export at 24"

    def docs_row(self, inputs):
        return dict(prompt=DOCS_PROMPT, negative_prompt=NEGATIVE, width=64, height=32, num_frames=9, num_inference_steps=2)

    def docs_recipe(self, folder, components, row, seed):
        """The ``LTXPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import LTXPipeline

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16)
        pipe = LTXPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A woman with long brown hair and light skin smiles at another woman with long blonde hair. The woman with brown hair wears a black jacket and has a small, barely noticeable mole on her right cheek. The camera angle is a close-up, focused on the woman with brown hair's face. The lighting is warm and natural, likely from the setting sun, casting a soft glow on the scene. The scene appears to be real-life footage"
        negative_prompt = "worst quality, inconsistent motion, blurry, jittery, distorted"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=row["width"],  # sizes: 64 x 32, 9 frames, 2 steps (the docs: 704 x 480, 161 frames, 50 steps)
            height=row["height"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(video, "output.mp4", fps=24) receives these PIL frames
        return np.stack([np.array(frame) for frame in video])


@pytest.fixture(scope="module")
def tiny_ltx() -> Path:
    ref = known_models()["tiny-ltx"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_ltx):
    return ltx.load(LoadOptions(str(tiny_ltx), None, "float32", None), "cpu")


def small(**overrides) -> ltx.Params:
    values = dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=32,
        width=64,
        num_frames=9,
        num_inference_steps=2,
        max_sequence_length=16,
    )
    return ltx.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return ltx.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-ltx", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny_ltx: Path):
    index = json.loads((tiny_ltx / "model_index.json").read_text())
    assert index["_class_name"] == "LTXPipeline"
    assert set(index) >= {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_ltx / f"{weights}.safetensors").is_file()
        assert (tiny_ltx / f"{weights}.fp16.safetensors").is_file()
    scheduler = json.loads((tiny_ltx / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["use_dynamic_shifting"]
    vae = json.loads((tiny_ltx / "vae" / "config.json").read_text())
    assert vae["timestep_conditioning"] and any(vae["decoder_inject_noise"])  # as LTX-Video 0.9.1


def test_tiny_vae_compresses_as_the_real_one(pipe):
    assert pipe.vae_spatial_compression_ratio == ltx.SPATIAL_FACTOR == 32
    assert pipe.vae_temporal_compression_ratio == ltx.TEMPORAL_FACTOR == 8
    assert pipe.tokenizer.model_max_length == 128


def test_tiny_build_is_reproducible(tiny_ltx: Path, tmp_path: Path):
    ltx.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_ltx)


def test_render_shape_timings_and_frames_of_17(pipe):
    rendered = ltx.FAMILY.render_one(pipe, small(num_frames=17, height=64), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (17, 64, 64, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 25  # the pipeline's frame_rate
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists);
    frame_rate conditions the video (and is the mp4's rate: FamilyContract's fps check)."""
    params = small(frame_rate=24, guidance_scale=4.0, guidance_rescale=0.7)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: ltx.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=[PROMPT],
        negative_prompt=[NEGATIVE],
        height=32,
        width=64,
        num_frames=9,
        frame_rate=24,
        num_inference_steps=2,
        guidance_scale=4.0,
        guidance_rescale=0.7,
        max_sequence_length=16,
        generator=[generator],
        output_type="latent",
    )


def test_decode_timestep_and_noise_scale_act_on_a_timestep_aware_vae(pipe):
    default = frames(pipe)
    with_timestep = frames(pipe, decode_timestep=0.05)
    assert not np.array_equal(default, with_timestep)
    # decode_noise_scale defaults to decode_timestep: giving it the same value changes nothing
    assert np.array_equal(with_timestep, frames(pipe, decode_timestep=0.05, decode_noise_scale=0.05))
    assert not np.array_equal(with_timestep, frames(pipe, decode_timestep=0.05, decode_noise_scale=0.5))


def test_the_pipeline_alone_draws_decoder_noise_from_the_global_rng(pipe):
    """The source of the irreproducibility: same generator, another global RNG state, other frames."""

    def call(global_seed: int) -> np.ndarray:
        torch.manual_seed(global_seed)
        params = small()
        return pipe(
            prompt=params.prompt,
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            max_sequence_length=params.max_sequence_length,
            generator=torch.Generator().manual_seed(7),
            output_type="np",
        ).frames[0]

    assert not np.array_equal(call(1), call(2))


def test_a_job_leaves_the_callers_global_rng_as_it_was(pipe):
    """The decoder's global-RNG noise is drawn from the job's own stream (same seed, same frames whatever the global
    RNG: FamilyContract); the caller's RNG state is kept."""
    torch.manual_seed(1)
    state = torch.get_rng_state()
    frames(pipe, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.fixture(scope="module")
def ltx_090(tmp_path_factory, tiny_ltx) -> Path:
    """An LTX-Video 0.9.0-style checkpoint: a VAE with neither timestep conditioning nor injected noise."""
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline

    folder = tmp_path_factory.mktemp("ltx-090") / "tiny-ltx-090"
    base = LTXPipeline.from_pretrained(tiny_ltx)
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        timestep_conditioning=False,
        patch_size=4,
    )
    LTXPipeline(
        scheduler=base.scheduler,
        vae=vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        transformer=base.transformer,
    ).save_pretrained(folder)
    return folder


def test_a_090_checkpoint_renders_as_the_plain_pipeline_and_ignores_decode_timestep(ltx_090: Path):
    pipe = ltx.load(LoadOptions(str(ltx_090), None, "float32", None), "cpu")
    assert not pipe.vae.config.timestep_conditioning
    ours = frames(pipe, seed=3)
    assert ours.shape == (9, 32, 64, 3)
    params = small()
    theirs = pipe(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=params.height,
        width=params.width,
        num_frames=params.num_frames,
        num_inference_steps=params.num_inference_steps,
        max_sequence_length=params.max_sequence_length,
        generator=torch.Generator().manual_seed(3),
        output_type="np",
    ).frames[0]
    assert np.array_equal(ours, (theirs * 255).round().astype(np.uint8))
    assert np.array_equal(ours, frames(pipe, seed=3, decode_timestep=0.05, decode_noise_scale=0.025))


def test_num_frames_must_be_8k_plus_1(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=160)
    assert "num_frames=160" in message and "8k+1" in message and "nearest: 153 or 161" in message
    assert ltx.Params(prompt=PROMPT, num_frames=1).num_frames == 1


def test_height_and_width_must_be_multiples_of_32(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, height=48, width=64)
    assert "height=48" in message and "multiple of 32" in message
    assert "width=64" not in message


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, height=32)


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "ltx.yaml", "cuda")  # validation only: what auto means on a GPU
    tiny = load_manifest(REPO / "manifests" / "tiny" / "ltx.yaml", "cpu")
    assert {job.model for job in real.jobs} == {"ltx-video"} and {job.model for job in tiny.jobs} == {"tiny-ltx"}
    assert len(real.jobs) == len(tiny.jobs) == 4
    assert all(job.dtype == "bfloat16" and job.variant is None for job in real.jobs)
    for ours, theirs in zip(real.jobs, tiny.jobs):
        for key in ("prompt", "negative_prompt", "frame_rate", "decode_timestep", "decode_noise_scale"):
            assert ours.params[key] == theirs.params[key], key
    assert {(job.params["height"], job.params["width"]) for job in real.jobs} == {(480, 704), (512, 768)}
    assert all(job.params["num_frames"] == 161 and job.params["frame_rate"] == 24 for job in real.jobs)
