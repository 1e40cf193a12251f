"""The Wan text-to-video family on its tiny checkpoint: the contract, the docs' scheduler shift,
the float32 VAE, the 4k+1 frame rule, and a Wan 2.2-style checkpoint with two transformers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, wan
from videosweep.tasks.models.base import LoadOptions

from .conftest import pipeline_call
from .family_contract import FamilyContract

PROMPT = "A rocket lifts off at dawn, smoke billowing"
NEGATIVE = "Bright tones, overexposed, static, blurred details"
DOCS_PROMPT = (
    "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is "
    "stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
)
DOCS_NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall "
    "gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, "
    "poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three "
    "legs, many people in the background, walking backwards"
)


class TestWanContract(FamilyContract):
    family = "wan"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32, "for better decoding quality"

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
            flow_shift=5.0,
        )

    def other_video(self, inputs):
        # prompts shorter than max_sequence_length (16 tokens), where the row's are cut at it: other padding
        return {"prompt": "A sailboat", "negative_prompt": "Dark, noisy"}

    docs_fps = 16  # the docs' export_to_video(output, "output.mp4", fps=16)

    def docs_row(self, inputs):
        return dict(
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            height=32,
            width=32,
            num_frames=9,
            guidance_scale=5.0,
            flow_shift=5.0,
            num_inference_steps=2,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``WanPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, WanPipeline
        from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

        model_id = folder  # checkpoint path: the tiny folder
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = WanPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.float32)  # dtype: float32 (the docs: bfloat16)
        flow_shift = 5.0  # 5.0 for 720P, 3.0 for 480P
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
        negative_prompt = "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=row["height"],  # sizes: 32 x 32, 9 frames, 2 steps (the docs: 720 x 1280, 81 frames, 50 steps)
            width=row["width"],
            num_frames=row["num_frames"],
            guidance_scale=5.0,
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=16) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_wan() -> Path:
    ref = known_models()["tiny-wan"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_wan):
    return wan.load(LoadOptions(str(tiny_wan), None, "float32", None), "cpu")


def small(**overrides) -> wan.Params:
    values = dict(prompt=PROMPT, height=32, width=32, num_frames=9, num_inference_steps=2, max_sequence_length=16)
    return wan.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return wan.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-wan", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny_wan: Path):
    index = json.loads((tiny_wan / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert index["transformer_2"] == [None, None] and index["boundary_ratio"] is None  # Wan 2.1
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_wan / f"{weights}.safetensors").is_file()
        assert (tiny_wan / f"{weights}.fp16.safetensors").is_file()
    scheduler = json.loads((tiny_wan / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "UniPCMultistepScheduler"
    assert scheduler["prediction_type"] == "flow_prediction" and scheduler["use_flow_sigmas"]
    assert scheduler["flow_shift"] == 3.0
    assert (tiny_wan / "tokenizer" / "tokenizer.json").is_file()  # built in memory, no download


def test_tiny_build_is_reproducible(tiny_wan: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    wan.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_wan)


def test_render_shape_fps_and_timings(pipe):
    rendered = wan.FAMILY.render_one(pipe, small(width=48), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (9, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 16  # the docs export at 16 fps
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_flow_shift_swaps_the_scheduler_for_one_job_only(pipe):
    loaded = pipe.scheduler
    default = frames(pipe)
    shifted = frames(pipe, flow_shift=8.0)
    assert not np.array_equal(default, shifted)
    assert pipe.scheduler is loaded and pipe.scheduler.config.flow_shift == 3.0  # a cached pipeline stays as loaded
    assert np.array_equal(frames(pipe), default)
    # the checkpoint's own shift (3.0) through the docs' from_config swap is the same scheduler
    assert np.array_equal(frames(pipe, flow_shift=3.0), default)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists), with
    the row's flow_shift in the scheduler it runs."""
    params = small(prompt="A quiet lake at night", negative_prompt=NEGATIVE, guidance_scale=1.0, flow_shift=8.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: wan.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 8.0
    assert call.args == () and call.kwargs == dict(
        prompt=["A quiet lake at night"],
        negative_prompt=[NEGATIVE],
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=1.0,
        guidance_scale_2=None,
        max_sequence_length=16,
        generator=[generator],
        output_type="latent",
    )


def test_num_frames_must_be_4k_plus_1(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=80)
    assert "num_frames=80" in message and "4k+1" in message and "77 or 81" in message
    assert wan.Params(prompt=PROMPT, num_frames=1).num_frames == 1


def test_sizes_must_be_multiples_of_16(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, height=40)
    assert "height=40" in message and "multiple of 16" in message


def test_prompt_is_required_and_not_empty(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, num_frames=9)
    assert "prompt=''" in manifest_problems(tmp_path, prompt="")


def test_clip_skip_is_not_a_parameter(tmp_path: Path):
    assert "unknown key 'clip_skip'" in manifest_problems(tmp_path, prompt=PROMPT, clip_skip=1)


def test_guidance_scale_2_needs_a_two_expert_checkpoint(pipe):
    """On Wan 2.1 (one transformer) the pipeline refuses guidance_scale_2; the job fails with its reason."""
    with pytest.raises(ValueError, match="boundary_ratio"):
        frames(pipe, guidance_scale_2=3.0)


@pytest.fixture(scope="module")
def two_experts(tmp_path_factory, tiny_wan) -> Path:
    """A Wan 2.2 A14B-style checkpoint: the same WanPipeline with transformer_2 and boundary_ratio."""
    from diffusers import WanPipeline

    folder = tmp_path_factory.mktemp("wan22") / "tiny-wan22"
    one = WanPipeline.from_pretrained(tiny_wan)
    torch.manual_seed(1)
    low_noise = wan.tiny_transformer()
    for parameter in low_noise.parameters():  # a different expert: other weights than `transformer`
        parameter.data.normal_(0.0, 0.05)
    WanPipeline(**{**one.components, "transformer_2": low_noise}, boundary_ratio=0.875).save_pretrained(folder)
    return folder


def test_two_expert_checkpoint_loads_both_and_takes_guidance_scale_2(two_experts: Path):
    from diffusers import AutoencoderKLWan, WanPipeline

    pipe = wan.load(LoadOptions(str(two_experts), None, "float32", None), "cpu")
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.875
    # 4 steps with shift 3: the last steps fall below the 875 boundary, where transformer_2 denoises
    ours = frames(pipe, num_inference_steps=4, guidance_scale_2=2.0)
    assert not np.array_equal(ours, frames(pipe, num_inference_steps=4))

    vae = AutoencoderKLWan.from_pretrained(two_experts, subfolder="vae", torch_dtype=torch.float32)
    reference = WanPipeline.from_pretrained(two_experts, vae=vae, torch_dtype=torch.float32)
    theirs = reference(
        prompt=PROMPT,
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=4,
        guidance_scale_2=2.0,
        max_sequence_length=16,
        generator=torch.manual_seed(0),
    ).frames[0]
    assert np.array_equal(ours, (theirs * 255).astype(np.uint8))  # converted as the docs' export_to_video does


def test_the_record_names_the_scheduler_the_job_used(tmp_path):
    """flow_shift swaps UniPC in for one job: the results row says so, not the loaded scheduler."""
    import json

    from videosweep.tasks.manifest import load_manifest
    from videosweep.tasks.render import RunContext, render_job

    (tmp_path / "m.yaml").write_text(
        "name: t\ndefaults: {model: tiny-wan, prompt: a rocket, height: 32, width: 48, num_frames: 5,"
        " num_inference_steps: 2, seed: 1}\nrows: [{}, {flow_shift: 8.0}]\n"
    )
    table = load_manifest(tmp_path / "m.yaml", "cpu")
    run = RunContext.new(tmp_path / "out", "cpu", table)
    loaded, shifted = (render_job(job, run) for job in table.jobs)
    assert json.loads(loaded["scheduler_config_json"])["flow_shift"] == 3.0
    assert json.loads(shifted["scheduler_config_json"])["flow_shift"] == 8.0
