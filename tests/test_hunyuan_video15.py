"""The HunyuanVideo 1.5 text-to-video family on its tiny checkpoint: the contract (the docs' bf16 recipe included),
the conversion script's layout, the guider's scale as a row key, and the frame and size rules the pipeline leaves
unchecked."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, hunyuan_video15, known_models
from videosweep.tasks.models.base import LoadOptions

from .conftest import pipeline_call
from .family_contract import FamilyContract

PROMPT = "A rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "blurry, static, low quality"
DOCS_PROMPT = "A fluffy teddy bear sits on a bed of soft pillows surrounded by children's toys."


class TestHunyuanVideo15Contract(FamilyContract):
    family = "hunyuan-video15"
    not_call_parameters = {"guidance_scale"}  # set on the pipeline's guider, as the docs do (hunyuan_video15.guidance)

    def row(self, inputs):
        return dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=32, num_frames=5, num_inference_steps=2)

    def other_video(self, inputs):
        # another prompt with quoted text (the glyph encoder reads it), and no negative prompt: the empty one
        return {"prompt": 'A sign that reads "LAUNCH" glows at night', "negative_prompt": None}

    docs_fps = 15  # the docs' export_to_video(video, "output.mp4", fps=15)

    def docs_row(self, inputs):
        # the docs' bfloat16 and VAE tiling as row keys, the pipeline's own size (no height or width, as the docs
        # call it: 32 x 48 for the tiny target_size); model CPU offload is GPU only
        return dict(prompt=DOCS_PROMPT, num_frames=5, num_inference_steps=2, dtype="bfloat16", vae_tiling=True)

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/hunyuan_video15, the "memory" example (huggingface/diffusers
        docs/source/en/api/pipelines/hunyuan_video15.md), as written, on the tiny checkpoint."""
        from diffusers import HunyuanVideo15Pipeline

        pipeline = HunyuanVideo15Pipeline.from_pretrained(
            folder,  # checkpoint path: the tiny folder (the docs: "HunyuanVideo-1.5-Diffusers-480p_t2v")
            dtype=torch.bfloat16,
        )

        # model-offloading and tiling
        # device: the docs' pipeline.enable_model_cpu_offload() is left out (CPU only)
        pipeline.vae.enable_tiling()

        prompt = "A fluffy teddy bear sits on a bed of soft pillows surrounded by children's toys."
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        # sizes: 5 frames, 2 steps (the docs: 61 frames, 30 steps)
        video = pipeline(
            prompt=prompt, num_frames=row["num_frames"], num_inference_steps=row["num_inference_steps"]
        ).frames[0]
        # export_to_video(video, "output.mp4", fps=15) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in video])


@pytest.fixture(scope="module")
def tiny_hunyuan() -> Path:
    ref = known_models()["tiny-hunyuan-video15"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_hunyuan):
    return hunyuan_video15.load(LoadOptions(str(tiny_hunyuan), None, "float32", None), "cpu")


def small(**overrides) -> hunyuan_video15.Params:
    values = dict(prompt=PROMPT, height=32, width=32, num_frames=5, num_inference_steps=2)
    return hunyuan_video15.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return hunyuan_video15.FAMILY.render_one(pipe, small(**overrides), generator, "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-hunyuan-video15", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_conversion_script(tiny_hunyuan: Path):
    index = json.loads((tiny_hunyuan / "model_index.json").read_text())
    assert index["_class_name"] == "HunyuanVideo15Pipeline"
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLTextModel"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    assert index["tokenizer_2"] == ["transformers", "ByT5Tokenizer"]
    assert index["transformer"] == ["diffusers", "HunyuanVideo15Transformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLHunyuanVideo15"]
    assert index["guider"] == ["diffusers", "ClassifierFreeGuidance"]
    scheduler = json.loads((tiny_hunyuan / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["shift"] == 5.0  # 480p's
    assert json.loads((tiny_hunyuan / "guider" / "guider_config.json").read_text())["guidance_scale"] == 6.0
    vae = json.loads((tiny_hunyuan / "vae" / "config.json").read_text())
    assert (vae["spatial_compression_ratio"], vae["temporal_compression_ratio"]) == (16, 4)  # as the real VAE
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model",
                    "text_encoder_2/model"):  # fmt: skip
        assert (tiny_hunyuan / f"{weights}.safetensors").is_file()
        assert (tiny_hunyuan / f"{weights}.fp16.safetensors").is_file()
    assert (tiny_hunyuan / "tokenizer" / "chat_template.jinja").is_file()  # built in memory, no download


def test_tiny_build_is_reproducible(tiny_hunyuan: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    hunyuan_video15.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_hunyuan)


def test_model_keys_load_the_plain_files_in_bfloat16():
    """The conversion script saves no weight variants: `dtype: auto` reads bfloat16 from the plain files."""
    keys = {name: ref for name, ref in known_models().items() if ref.family == "hunyuan-video15" and not ref.tiny}
    assert sorted(keys) == [
        "hunyuanvideo1.5-480p-t2v", "hunyuanvideo1.5-480p-t2v-distilled", "hunyuanvideo1.5-720p-t2v"
    ]
    assert keys["hunyuanvideo1.5-480p-t2v"].source == "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v"
    assert {(ref.variant, ref.gpu_dtype) for ref in keys.values()} == {("none", "bfloat16")}


def test_render_shape_fps_and_timings(pipe):
    rendered = hunyuan_video15.FAMILY.render_one(pipe, small(width=48), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (5, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 15  # the docs export at 15 fps
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_no_size_is_the_pipelines_16_by_9_bucket(pipe):
    """Height and width unset: the pipeline's own size for the checkpoint's target_size (48: 32 x 48; 640:
    480 x 848)."""
    assert frames(pipe, height=None, width=None).shape == (5, 32, 48, 3)
    assert pipe.video_processor.calculate_default_height_width(9, 16, 640) == (480, 848)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself (a batch of one: prompts and generators as lists); the
    guidance scale is not one of them."""
    params = small(prompt="A quiet lake at night", negative_prompt=NEGATIVE, guidance_scale=3.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: hunyuan_video15.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=["A quiet lake at night"],
        negative_prompt=[NEGATIVE],
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        generator=[generator],
        output_type="latent",
    )


def test_guidance_scale_sets_the_guider_for_one_job_as_the_docs_do(pipe):
    """`guidance_scale` is the docs' `pipe.guider = pipe.guider.new(guidance_scale=...)`, for that job only."""
    loaded = pipe.guider
    default = frames(pipe)
    assert np.array_equal(frames(pipe, guidance_scale=6.0), default)  # the checkpoint's own guider
    weaker = frames(pipe, guidance_scale=3.0)
    assert not np.array_equal(weaker, default)
    assert pipe.guider is loaded and pipe.guider.guidance_scale == 6.0  # a cached pipeline stays as loaded

    pipe.guider = pipe.guider.new(guidance_scale=3.0)  # the docs' way, by hand
    try:
        theirs = pipe(prompt=PROMPT, height=32, width=32, num_frames=5, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0)).frames[0]  # fmt: skip
    finally:
        pipe.guider = loaded
    assert np.array_equal(weaker, (theirs * 255).astype(np.uint8))


def test_prompt_negative_prompt_and_glyph_text_change_the_video(pipe):
    first = frames(pipe)
    assert not np.array_equal(first, frames(pipe, prompt="A quiet lake at night"))
    assert not np.array_equal(first, frames(pipe, negative_prompt=NEGATIVE))
    # the same prompt with its words in quotes: the ByT5 glyph encoder reads them too
    assert not np.array_equal(first, frames(pipe, prompt=f'"{PROMPT}"'))


def test_the_pipeline_would_silently_shorten_other_frame_counts(pipe):
    """Why 8 is refused: the pipeline itself returns 5 frames for it."""
    video = pipe(prompt=PROMPT, num_frames=8, height=32, width=32, num_inference_steps=1).frames[0]
    assert len(video) == 5


def test_frame_counts_other_than_4k_plus_1_are_refused(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=120)
    assert "num_frames=120" in message and "4k+1" in message and "nearest: 117 or 121" in message
    assert hunyuan_video15.Params(prompt=PROMPT, num_frames=1).num_frames == 1


def test_sizes_must_be_multiples_of_16(pipe, tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, height=40, width=48)
    assert "height=40" in message and "multiple of 16" in message
    # the pipeline floors them to the VAE's 16 px silently
    video = pipe(prompt=PROMPT, height=40, width=48, num_frames=1, num_inference_steps=1).frames[0]
    assert video.shape[1:3] == (32, 48)


def test_height_without_width_is_refused(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, height=32)
    assert "width=None" in message and "give both, or neither" in message


def test_prompt_is_required_and_not_empty(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, num_frames=5)
    assert "prompt=''" in manifest_problems(tmp_path, prompt="")
