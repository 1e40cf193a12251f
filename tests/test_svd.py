"""The SVD family on its tiny checkpoint: real layout, shapes, timings, the call it makes (the rest: FamilyContract)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videosweep.tasks.models import folder_sha256, svd
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET, pipeline_call
from .family_contract import FamilyContract


class TestSVDContract(FamilyContract):
    family = "svd"

    def row(self, inputs):
        return dict(image=str(inputs / "rocket.png"), height=32, width=32, num_frames=2, num_inference_steps=2)

    def other_video(self, inputs):
        from PIL import Image

        with Image.open(inputs / "rocket.png") as image:
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inputs / "mirror.png")
        return {"image": str(inputs / "mirror.png")}

    docs_fps = 7  # the docs' export_to_video(frames, "generated.mp4", fps=7)

    def docs_row(self, inputs):
        return dict(image=str(inputs / "rocket.png"), height=48, width=64, num_frames=4, num_inference_steps=2, decode_chunk_size=8)

    def docs_recipe(self, folder, components, row, seed):
        """using-diffusers/svd, the first example, as written, on the tiny checkpoint."""
        from diffusers import StableVideoDiffusionPipeline
        from diffusers.utils import load_image

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.float16, variant="fp16")
        pipe = StableVideoDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.enable_model_cpu_offload() is left out (CPU only)

        # Load the conditioning image
        image = load_image(row["image"])  # path: the same rocket, local, for the docs' URL
        image = image.resize((row["width"], row["height"]))  # sizes: (1024, 576) in the docs

        generator = torch.manual_seed(seed)  # the docs' seed is 42
        frames = pipe(
            image,
            decode_chunk_size=8,
            generator=generator,
            height=row["height"],  # sizes: the docs leave the UNet's 576 x 1024, 25 frames, 25 steps
            width=row["width"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(frames, "generated.mp4", fps=7) receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])


@pytest.fixture(scope="module")
def pipe(tiny_svd):
    return svd.load(LoadOptions(str(tiny_svd), None, "float32", None), "cpu")


def small(**overrides) -> svd.Params:
    values = dict(image=ROCKET, height=48, width=64, num_frames=4, num_inference_steps=2)
    return svd.Params(**{**values, **overrides})


def test_tiny_checkpoint_has_the_layout_of_the_real_repo(tiny_svd: Path):
    index = json.loads((tiny_svd / "model_index.json").read_text())
    assert index["_class_name"] == "StableVideoDiffusionPipeline"
    assert set(index) >= {"feature_extractor", "image_encoder", "scheduler", "unet", "vae"}
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "image_encoder/model"):
        assert (tiny_svd / f"{weights}.safetensors").is_file()
        assert (tiny_svd / f"{weights}.fp16.safetensors").is_file()
    scheduler = json.loads((tiny_svd / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerDiscreteScheduler"
    assert scheduler["prediction_type"] == "v_prediction"


def test_tiny_build_is_reproducible(tiny_svd: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    svd.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_svd)


def test_render_shape_fps_and_timings(pipe):
    rendered = svd.FAMILY.render_one(pipe, small(fps=9), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (4, 48, 64, 3)
    assert rendered.frames.dtype == np.uint8
    assert rendered.fps == 9
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_num_frames_defaults_to_the_unets(pipe):
    rendered = svd.FAMILY.render_one(pipe, small(num_frames=None), torch.Generator().manual_seed(0), "cpu")
    assert len(rendered.frames) == pipe.unet.config.num_frames == 8


def test_call_parameters_reach_the_pipeline(pipe):
    """Every parameter reaches the pipeline's call as itself (a batch of one: the images and generators as lists);
    the image resized to the output size, as the docs do."""
    from PIL import Image

    params = small(
        num_frames=3, min_guidance_scale=1.5, max_guidance_scale=2.5, fps=9, motion_bucket_id=200, noise_aug_strength=0.1
    )
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: svd.FAMILY.render_one(pipe, params, generator, "cpu"))
    ((image,),) = call.args
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(ROCKET).convert("RGB").resize((64, 48))))
    assert call.kwargs == dict(
        height=48,
        width=64,
        num_frames=3,
        num_inference_steps=2,
        min_guidance_scale=1.5,
        max_guidance_scale=2.5,
        fps=9,
        motion_bucket_id=200,
        noise_aug_strength=0.1,
        generator=[generator],
        output_type="latent",
    )
