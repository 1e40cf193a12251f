"""The Kandinsky 5 image-to-video family on its tiny checkpoint: the contract (the pipeline docstring's recipe), the
repo layout, the image as conditioning, and the frame floor the pipeline leaves unchecked."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, kandinsky5_i2v, known_models
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke billowing"
DOCS_PROMPT = "An astronaut floating in space with Earth in the background, cinematic shot"
DOCS_NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, deformed, "
    "walking backwards"
)


class TestKandinsky5I2VContract(FamilyContract):
    family = "kandinsky5-i2v"

    def row(self, inputs):
        # 17 frames: the fewest the pipeline renders (5 latent frames; see test_fewer_than_17_frames_are_refused)
        return dict(image=str(inputs / "rocket.png"), prompt=PROMPT, height=16, width=32, num_frames=17, num_inference_steps=2)

    docs_fps = 24  # the docstring's export_to_video(output, "output.mp4", fps=24, quality=9)

    def docs_row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            height=16,
            width=32,
            num_frames=17,
            num_inference_steps=2,
            guidance_scale=5.0,
            dtype="bfloat16",
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``Kandinsky5I2VPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import Kandinsky5I2VPipeline
        from diffusers.utils import load_image

        model_id = folder  # checkpoint path: the tiny folder
        pipe = Kandinsky5I2VPipeline.from_pretrained(model_id, torch_dtype=torch.bfloat16)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        image = load_image(row["image"])  # path: a local image for the docs' astronaut.jpg URL
        prompt = "An astronaut floating in space with Earth in the background, cinematic shot"
        negative_prompt = "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, deformed, walking backwards"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=row["height"],  # sizes: 16 x 32, 17 frames, 2 steps (the docs: 512 x 768, 121 frames, 50 steps)
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
            guidance_scale=5.0,
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=24, quality=9) receives these PIL frames
        return np.stack([np.array(frame) for frame in output])


@pytest.fixture(scope="module")
def tiny_kandinsky5_i2v() -> Path:
    ref = known_models()["tiny-kandinsky5-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_kandinsky5_i2v):
    return kandinsky5_i2v.load(LoadOptions(str(tiny_kandinsky5_i2v), None, "float32", None), "cpu")


def frames(pipe, image: Path = ROCKET, seed: int = 0) -> np.ndarray:
    params = kandinsky5_i2v.Params(image=image, prompt=PROMPT, height=16, width=32, num_frames=17, num_inference_steps=2)
    return kandinsky5_i2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


def test_tiny_checkpoint_is_the_image_to_video_pipelines(tiny_kandinsky5_i2v: Path, tmp_path: Path):
    index = json.loads((tiny_kandinsky5_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "Kandinsky5I2VPipeline"
    assert index["transformer"] == ["diffusers", "Kandinsky5Transformer3DModel"]
    assert json.loads((tiny_kandinsky5_i2v / "transformer" / "config.json").read_text())["visual_cond"]
    kandinsky5_i2v.build_tiny(tmp_path / "again")  # the same bytes on every machine
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_kandinsky5_i2v)


def test_the_image_decides_the_video(pipe, tmp_path: Path):
    Image.new("RGB", (64, 32), (20, 200, 40)).save(tmp_path / "green.png")
    first = frames(pipe)
    assert np.array_equal(first, frames(pipe))
    # a random VAE reconstructs nothing: the image moves the frames by 2.3 levels on average (measured), not by its colours
    assert np.abs(first.astype(int) - frames(pipe, tmp_path / "green.png").astype(int)).mean() > 1


def test_fewer_than_17_frames_are_refused(pipe, tmp_path: Path):
    """The pipeline normalises the first 4 latent frames against the ones after them: with none, the video is NaN."""
    path = tmp_path / "m.yaml"
    row = {"image": str(ROCKET), "prompt": PROMPT, "num_frames": 13}
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-kandinsky5-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError, match="num_frames=13"):
        load_manifest(path, "cpu")
    image = Image.open(ROCKET)
    video = pipe(image=image, prompt=PROMPT, height=16, width=16, num_frames=13, num_inference_steps=1, output_type="np")
    assert np.isnan(video.frames[0]).all()  # what the pipeline renders for 13 frames: NaN, a black mp4
    with pytest.raises(AttributeError):  # and for 1 frame: normalize_first_frame returns a tuple
        pipe(image=image, prompt=PROMPT, height=16, width=16, num_frames=1, num_inference_steps=1)
