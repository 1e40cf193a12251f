"""The Wan image-to-video family on its tiny checkpoint: the contract, the docs' sizing from the
image's aspect ratio, the float32 image encoder and VAE, and a Wan 2.2-style checkpoint without an
image encoder but with two transformers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, wan, wan_i2v
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET, pipeline_call
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke billowing"
NEGATIVE = "Bright tones, overexposed, static, blurred details"
DOCS_PROMPT = (
    "An astronaut hatching from an egg, on the surface of the moon, the darkness and depth of space realised in the "
    "background. High quality, ultrarealistic detail and breath-taking movie-like camera shot."
)
DOCS_NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall "
    "gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, "
    "poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three "
    "legs, many people in the background, walking backwards"
)


class TestWanI2VContract(FamilyContract):
    family = "wan-i2v"
    # None: sized from the image's aspect ratio within max_area, as the docs do (see Params)
    defaults_differ = {"height", "width"}
    not_call_parameters = {"flow_shift", "max_area"}  # the docs' scheduler swap and their sizing (wan_i2v.output_size)
    float32_by_docs = {"vae", "image_encoder"}  # as the docs load them, whatever the pipeline's dtype

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            max_area=48 * 64,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
        )

    docs_fps = 16  # the docs' export_to_video(output, "output.mp4", fps=16)

    def docs_row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            max_area=48 * 64,
            num_frames=9,
            guidance_scale=5.0,
            num_inference_steps=2,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``WanImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
        from diffusers.utils import load_image
        from transformers import CLIPVisionModel

        model_id = folder  # checkpoint path: the tiny folder
        image_encoder = CLIPVisionModel.from_pretrained(model_id, subfolder="image_encoder", torch_dtype=torch.float32)
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = WanImageToVideoPipeline.from_pretrained(
            model_id, vae=vae, image_encoder=image_encoder, torch_dtype=torch.float32  # dtype: float32 (the docs: bfloat16)
        )
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        image = load_image(row["image"])  # path: a local image for the docs' astronaut.jpg URL
        max_area = row["max_area"]  # sizes: 48 * 64 (the docs: 480 * 832)
        aspect_ratio = image.height / image.width
        mod_value = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
        height = round(np.sqrt(max_area * aspect_ratio)) // mod_value * mod_value
        width = round(np.sqrt(max_area / aspect_ratio)) // mod_value * mod_value
        image = image.resize((width, height))
        prompt = (
            "An astronaut hatching from an egg, on the surface of the moon, the darkness and depth of space realised in "
            "the background. High quality, ultrarealistic detail and breath-taking movie-like camera shot."
        )
        negative_prompt = "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=row["num_frames"],  # sizes: 9 frames, 2 steps (the docs: 81 frames, 50 steps)
            guidance_scale=5.0,
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=16) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_wan_i2v() -> Path:
    ref = known_models()["tiny-wan-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_wan_i2v):
    return wan_i2v.load(LoadOptions(str(tiny_wan_i2v), None, "float32", None), "cpu")


def small(**overrides) -> wan_i2v.Params:
    values = dict(
        image=ROCKET, prompt=PROMPT, max_area=48 * 64, num_frames=9, num_inference_steps=2, max_sequence_length=16
    )
    return wan_i2v.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return wan_i2v.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-wan-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_wan21_i2v(tiny_wan_i2v: Path):
    index = json.loads((tiny_wan_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    assert index["image_encoder"] == ["transformers", "CLIPVisionModel"]
    assert index["image_processor"][1].startswith("CLIPImageProcessor")  # ...Pil where torchvision is absent
    assert index["transformer_2"] == [None, None] and index["boundary_ratio"] is None
    transformer = json.loads((tiny_wan_i2v / "transformer" / "config.json").read_text())
    assert transformer["in_channels"] == 36 and transformer["image_dim"] == 16
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "image_encoder/model"):
        assert (tiny_wan_i2v / f"{weights}.safetensors").is_file()
        assert (tiny_wan_i2v / f"{weights}.fp16.safetensors").is_file()


def test_tiny_build_is_reproducible(tiny_wan_i2v: Path, tmp_path: Path):
    wan_i2v.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_wan_i2v)


def test_size_follows_the_images_aspect_ratio_within_max_area(pipe):
    # rocket.png is 512x288: sqrt(3072 * 288/512) = 41.6 -> 42 // 16 * 16 = 32; sqrt(3072 * 512/288) = 73.9 -> 74 -> 64
    rendered = wan_i2v.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (9, 32, 64, 3) and rendered.fps == 16
    assert wan_i2v.output_size(pipe, (512, 288), small(max_area=480 * 832)) == (464, 832)
    assert wan_i2v.output_size(pipe, (512, 288), small(max_area=720 * 1280)) == (720, 1280)


def test_explicit_height_and_width_win(pipe):
    assert frames(pipe, height=32, width=32).shape == (9, 32, 32, 3)


def test_a_max_area_too_small_for_one_patch_is_refused(pipe):
    with pytest.raises(ValueError, match="raise max_area"):
        frames(pipe, max_area=256)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself, with the row's flow_shift in the scheduler it runs; the
    image resized to the size max_area gives it, as the docs do."""
    from PIL import Image

    params = small(negative_prompt=NEGATIVE, guidance_scale=4.0, flow_shift=8.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: wan_i2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 8.0
    assert np.array_equal(np.asarray(call.kwargs.pop("image")), np.asarray(Image.open(ROCKET).convert("RGB").resize((64, 32))))
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=32,
        width=64,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=4.0,
        guidance_scale_2=None,
        max_sequence_length=16,
        generator=generator,
        output_type="latent",
    )


def test_image_is_required(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT)
    assert "missing 'image'" in message and "image-to-video" in message


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, image=str(ROCKET))


def test_height_without_width_is_refused(tmp_path: Path):
    message = manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, height=32)
    assert "width=None" in message and "give both, or neither" in message


def test_num_frames_must_be_4k_plus_1(tmp_path: Path):
    assert "4k+1" in manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, num_frames=10)


@pytest.fixture(scope="module")
def wan22_i2v(tmp_path_factory, tiny_wan_i2v) -> Path:
    """A Wan 2.2 I2V A14B-style checkpoint: no image encoder or processor, two transformers, boundary_ratio."""
    from diffusers import WanImageToVideoPipeline

    folder = tmp_path_factory.mktemp("wan22-i2v") / "tiny-wan22-i2v"
    base = WanImageToVideoPipeline.from_pretrained(tiny_wan_i2v)
    experts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        expert = wan.tiny_transformer(in_channels=36)  # Wan 2.2 I2V: no image_dim, no CLIP features
        for parameter in expert.parameters():
            parameter.data.normal_(0.0, 0.05)
        experts.append(expert)
    WanImageToVideoPipeline(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        vae=base.vae,
        scheduler=base.scheduler,
        transformer=experts[0],
        transformer_2=experts[1],
        boundary_ratio=0.9,
    ).save_pretrained(folder)
    return folder


def test_wan22_checkpoint_without_image_encoder_loads_and_renders(wan22_i2v: Path):
    index = json.loads((wan22_i2v / "model_index.json").read_text())
    assert index["image_encoder"] == [None, None]
    pipe = wan_i2v.load(LoadOptions(str(wan22_i2v), None, "float32", None), "cpu")
    assert pipe.image_encoder is None and pipe.transformer_2 is not None
    default = frames(pipe, num_inference_steps=4)
    assert default.shape == (9, 32, 64, 3)
    assert not np.array_equal(default, frames(pipe, num_inference_steps=4, guidance_scale_2=2.0))


def test_guidance_scale_2_needs_a_two_expert_checkpoint(pipe):
    with pytest.raises(ValueError, match="boundary_ratio"):
        frames(pipe, guidance_scale_2=3.0)
