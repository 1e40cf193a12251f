"""The Kandinsky 5 text-to-video family on its tiny checkpoint: the contract (the docs' Lite recipe included), the
tiny twin's layout and tokenizer, and the frame, size and batching rules the pipeline leaves unchecked."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, kandinsky5, known_models
from videosweep.tasks.models.base import LoadOptions

from .family_contract import FamilyContract

PROMPT = "A rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "blurry, static, low quality"
DOCS_PROMPT = "A cat and a dog baking a cake together in a kitchen."
DOCS_NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, deformed, "
    "walking backwards"
)


class TestKandinsky5Contract(FamilyContract):
    family = "kandinsky5"

    def row(self, inputs):
        return dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=16, width=32, num_frames=5, num_inference_steps=2)

    docs_fps = 24  # the docs' export_to_video(output, "output.mp4", fps=24, quality=9)

    def docs_row(self, inputs):
        return dict(
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            height=16,
            width=32,
            num_frames=5,
            num_inference_steps=2,
            guidance_scale=5.0,
            dtype="bfloat16",
        )

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/kandinsky5_video, "Basic Text-to-Video Generation", Lite (huggingface/diffusers
        docs/source/en/api/pipelines/kandinsky5_video.md), as written, on the tiny checkpoint."""
        from diffusers import Kandinsky5T2VPipeline

        # Load the pipeline
        model_id = folder  # checkpoint path: the tiny folder
        pipe = Kandinsky5T2VPipeline.from_pretrained(model_id, dtype=torch.bfloat16)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        # Generate video
        prompt = "A cat and a dog baking a cake together in a kitchen."
        negative_prompt = "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, deformed, walking backwards"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=row["height"],  # sizes: 16 x 32, 5 frames, 2 steps (the docs: 512 x 768, 121 frames, 50 steps)
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
            guidance_scale=5.0,
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=24, quality=9) receives these PIL frames
        return np.stack([np.array(frame) for frame in output])


@pytest.fixture(scope="module")
def tiny_kandinsky5() -> Path:
    ref = known_models()["tiny-kandinsky5"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_kandinsky5):
    return kandinsky5.load(LoadOptions(str(tiny_kandinsky5), None, "float32", None), "cpu")


def small(**overrides) -> kandinsky5.Params:
    values = dict(prompt=PROMPT, height=16, width=32, num_frames=5, num_inference_steps=2)
    return kandinsky5.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return kandinsky5.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-kandinsky5", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_pipelines_components(tiny_kandinsky5: Path):
    index = json.loads((tiny_kandinsky5 / "model_index.json").read_text())
    assert index["_class_name"] == "Kandinsky5T2VPipeline"
    assert index["transformer"] == ["diffusers", "Kandinsky5Transformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLHunyuanVideo"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]  # the real repos' Qwen2VLProcessor's text part
    transformer = json.loads((tiny_kandinsky5 / "transformer" / "config.json").read_text())
    assert transformer["visual_cond"] and transformer["attention_type"] == "regular"
    assert (transformer["in_visual_dim"], transformer["out_visual_dim"], transformer["patch_size"]) == (16, 16, [1, 2, 2])
    vae = json.loads((tiny_kandinsky5 / "vae" / "config.json").read_text())
    assert (vae["spatial_compression_ratio"], vae["temporal_compression_ratio"], vae["latent_channels"]) == (8, 4, 16)
    scheduler = json.loads((tiny_kandinsky5 / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["shift"] == 5.0
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_kandinsky5 / f"{weights}.safetensors").is_file()
        assert (tiny_kandinsky5 / f"{weights}.fp16.safetensors").is_file()


def test_the_tokenizer_makes_the_template_the_128_tokens_the_pipeline_cuts(pipe):
    """The pipeline drops the first 128 Qwen states (the system prompt), keeping the prompt's and the closing tokens."""
    template = pipe.prompt_template
    assert pipe.prompt_template_encode_start_idx == 128
    assert len(pipe.tokenizer(template.split("{}")[0])["input_ids"]) == 128
    ids = pipe.tokenizer(template.format(DOCS_PROMPT))["input_ids"]
    assert pipe.tokenizer.decode(ids[128:-1]) == DOCS_PROMPT  # then <|im_end|>
    assert pipe.tokenizer.decode(pipe.tokenizer("Привет, мир!")["input_ids"]) == "Привет, мир!"  # any text: byte-level


def test_tiny_build_is_reproducible(tiny_kandinsky5: Path, tmp_path: Path):
    """Same bytes on every machine (the tokenizer is trained on the template), so job ids of tiny rows agree."""
    kandinsky5.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_kandinsky5)


def test_render_shape_fps_and_timings(pipe):
    rendered = kandinsky5.FAMILY.render_one(pipe, small(height=32, width=48, num_frames=9), torch.Generator(), "cpu")
    assert rendered.frames.shape == (9, 32, 48, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 24  # the docs export at 24 fps
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_frame_counts_other_than_4k_plus_1_are_refused(pipe, tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_frames=120)
    assert "num_frames=120" in message and "4k+1" in message and "render 121 frames for 120" in message
    assert "nearest: 117 or 121" in message
    assert "render 5 frames for 7" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=7)
    # why: the pipeline itself renders another count, with a warning only (7 -> 5, 8 -> 9)
    for asked, rendered in ((7, 5), (8, 9)):
        video = pipe(prompt=PROMPT, num_frames=asked, height=16, width=16, num_inference_steps=1, output_type="np")
        assert len(video.frames[0]) == rendered


def test_frames_and_sides_past_the_rotary_tables_are_refused(pipe, tmp_path: Path):
    """The transformer's rotary tables hold 128 positions an axis: 509 frames and 2048 pixels a side at most."""
    assert "num_frames=513" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=513)
    assert "height=2064" in manifest_problems(tmp_path, prompt=PROMPT, height=2064)
    assert kandinsky5.Params(prompt=PROMPT, num_frames=509, height=2048, width=2048).num_frames == 509
    for sizes in (dict(num_frames=513, height=16, width=16), dict(num_frames=1, height=2064, width=16)):
        with pytest.raises(IndexError):  # what the pipeline does with them: fails inside the transformer
            pipe(prompt=PROMPT, num_inference_steps=1, guidance_scale=1.0, output_type="latent", **sizes)


def test_long_sequence_lengths_and_odd_sizes_are_refused(tmp_path: Path):
    assert "max_sequence_length=2048" in manifest_problems(tmp_path, prompt=PROMPT, max_sequence_length=2048)
    assert "height=40" in manifest_problems(tmp_path, prompt=PROMPT, height=40, width=48)
    assert "missing 'prompt'" in manifest_problems(tmp_path, num_frames=5)


def test_an_unset_negative_prompt_is_the_pipelines_own(pipe):
    """The pipeline swaps None for its default negative prompt (the text the docs pass), with guidance on."""
    assert np.array_equal(frames(pipe), frames(pipe, negative_prompt=DOCS_NEGATIVE))


def test_prompt_negative_prompt_and_guidance_change_the_video(pipe):
    first = frames(pipe)
    assert not np.array_equal(first, frames(pipe, prompt="A quiet lake at night"))
    assert not np.array_equal(first, frames(pipe, negative_prompt=NEGATIVE))
    assert not np.array_equal(first, frames(pipe, guidance_scale=1.0))


def test_prompts_of_one_call_change_each_others_video(pipe):
    """Why the family renders one video per call: each prompt is padded to the call's longest, and the transformer
    attends to the padding (the pipeline passes no mask)."""
    sizes = dict(height=16, width=32, num_frames=5, num_inference_steps=2, output_type="latent")
    alone = pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **sizes).frames
    longer = PROMPT + ", seen from a helicopter circling the pad"
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    together = pipe(prompt=[PROMPT, longer], generator=generators, **sizes).frames
    assert (together[:1] - alone).abs().max() > 1e-3
    assert kandinsky5.FAMILY.batch_fields is None
