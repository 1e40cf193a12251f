"""The SkyReels-V2 image-to-video family on its tiny checkpoint: the contract (the pipeline docstring's recipe), the
conversion script's layout (a CLIPProcessor as image processor), and the image as conditioning."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videosweep.tasks.models import ensure_built, folder_sha256, known_models, skyreels_v2_i2v
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke billowing"
DOCS_PROMPT = (
    "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is "
    "stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
)


class TestSkyReelsV2I2VContract(FamilyContract):
    family = "skyreels-v2-i2v"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docstring loads the VAE alone in float32

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            negative_prompt="Static, blurred",
            height=32,
            width=48,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
            flow_shift=5.0,
        )

    docs_fps = 24  # the docstring's export_to_video(output, "video.mp4", fps=24, quality=8)

    def docs_row(self, inputs):
        return dict(image=str(inputs / "rocket.png"), prompt=DOCS_PROMPT, height=32, width=48, num_frames=9,
                    guidance_scale=5.0, flow_shift=5.0, num_inference_steps=2, dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """The ``SkyReelsV2ImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny
        checkpoint."""
        from diffusers import AutoencoderKLWan, SkyReelsV2ImageToVideoPipeline, UniPCMultistepScheduler

        model_id = folder  # checkpoint path: the tiny folder
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = SkyReelsV2ImageToVideoPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.bfloat16)
        flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
        image = Image.open(row["image"])  # path: the row's image for the docs' "path/to/image.png"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            image=image,
            prompt=prompt,
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps, 32 x 48, 9 frames (the docs: 50, 544 x 960, 97)
            height=row["height"],
            width=row["width"],
            guidance_scale=5.0,  # 6.0 for T2V, 5.0 for I2V
            num_frames=row["num_frames"],
        ).frames[0]
        # export_to_video(output, "video.mp4", fps=24, quality=8) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_skyreels_i2v() -> Path:
    ref = known_models()["tiny-skyreels-v2-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_skyreels_i2v):
    return skyreels_v2_i2v.load(LoadOptions(str(tiny_skyreels_i2v), None, "float32", None), "cpu")


def frames(pipe, image: Path = ROCKET, seed: int = 0) -> np.ndarray:
    params = skyreels_v2_i2v.Params(image=image, prompt=PROMPT, height=32, width=48, num_frames=9, num_inference_steps=2)
    return skyreels_v2_i2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


def test_tiny_checkpoint_has_the_layout_of_the_conversion_script(tiny_skyreels_i2v: Path, tmp_path: Path):
    index = json.loads((tiny_skyreels_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "SkyReelsV2ImageToVideoPipeline"
    assert index["image_encoder"] == ["transformers", "CLIPVisionModelWithProjection"]
    assert index["image_processor"] == ["transformers", "CLIPProcessor"]  # AutoProcessor of laion's CLIP-ViT-H-14
    transformer = json.loads((tiny_skyreels_i2v / "transformer" / "config.json").read_text())
    assert (transformer["in_channels"], transformer["image_dim"]) == (36, 16)
    assert (tiny_skyreels_i2v / "image_encoder" / "model.fp16.safetensors").is_file()
    skyreels_v2_i2v.build_tiny(tmp_path / "again")  # the same bytes on every machine
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_skyreels_i2v)


def test_render_shape_and_fps(pipe):
    params = skyreels_v2_i2v.Params(image=ROCKET, prompt=PROMPT, height=32, width=32, num_frames=5, num_inference_steps=2)
    rendered = skyreels_v2_i2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (5, 32, 32, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 24 and rendered.denoise_s > 0 and rendered.decode_s > 0


def test_the_image_decides_the_video(pipe, tmp_path: Path):
    Image.new("RGB", (96, 64), (20, 200, 40)).save(tmp_path / "green.png")
    first = frames(pipe)
    assert np.array_equal(first, frames(pipe))
    # a random VAE reconstructs nothing: the image moves the frames (measured: a quarter of the values, by up to 33
    # levels, 0.57 on average), not to its colours
    moved = np.abs(first.astype(int) - frames(pipe, tmp_path / "green.png").astype(int))
    assert np.count_nonzero(moved) > moved.size // 10 and moved.max() > 8
