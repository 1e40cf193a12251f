"""The HunyuanVideo 1.5 image-to-video family on its tiny checkpoint: the contract (the docstring's recipe), the
conversion script's layout with the SigLIP image encoder, and the pipeline's own sizing from the image."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, hunyuan_video15_i2v, known_models
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET, pipeline_call
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke billowing"
NEGATIVE = "blurry, static, low quality"
DOCS_PROMPT = (
    "Summer beach vacation style, a white cat wearing sunglasses sits on a surfboard. The fluffy-furred feline gazes "
    "directly at the camera with a relaxed expression. Blurred beach scenery forms the background featuring "
    "crystal-clear waters, distant green hills, and a blue sky dotted with white clouds. The cat assumes a naturally "
    "relaxed posture, as if savoring the sea breeze and warm sunlight. A close-up shot highlights the feline's "
    "intricate details and the refreshing atmosphere of the seaside."
)


class TestHunyuanVideo15I2VContract(FamilyContract):
    family = "hunyuan-video15-i2v"
    not_call_parameters = {"guidance_scale"}  # set on the pipeline's guider, as the docs do (hunyuan_video15.guidance)

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            num_frames=5,
            num_inference_steps=2,
        )

    docs_fps = 24  # the docstring's export_to_video(output, "output.mp4", fps=24)

    def docs_row(self, inputs):
        # the docstring's float16 read from the plain files (no variant) and its VAE tiling, as row keys
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=DOCS_PROMPT,
            num_frames=5,
            num_inference_steps=2,
            dtype="float16",
            variant="none",
            vae_tiling=True,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``HunyuanVideo15ImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny
        checkpoint."""
        from diffusers import HunyuanVideo15ImageToVideoPipeline
        from diffusers.utils import load_image

        model_id = folder  # checkpoint path: the tiny folder
        pipe = HunyuanVideo15ImageToVideoPipeline.from_pretrained(model_id, torch_dtype=torch.float16)
        pipe.vae.enable_tiling()
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        image = load_image(row["image"])  # path: a local image for the docs' wan_i2v_input.JPG URL

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            prompt="Summer beach vacation style, a white cat wearing sunglasses sits on a surfboard. The fluffy-furred feline gazes directly at the camera with a relaxed expression. Blurred beach scenery forms the background featuring crystal-clear waters, distant green hills, and a blue sky dotted with white clouds. The cat assumes a naturally relaxed posture, as if savoring the sea breeze and warm sunlight. A close-up shot highlights the feline's intricate details and the refreshing atmosphere of the seaside.",
            image=image,
            num_frames=row["num_frames"],  # sizes: 5 frames, 2 steps (the docs: the pipeline's 121 frames, 50 steps)
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=24) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_hunyuan_i2v() -> Path:
    ref = known_models()["tiny-hunyuan-video15-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_hunyuan_i2v):
    return hunyuan_video15_i2v.load(LoadOptions(str(tiny_hunyuan_i2v), None, "float32", None), "cpu")


def small(**overrides) -> hunyuan_video15_i2v.Params:
    values = dict(image=ROCKET, prompt=PROMPT, num_frames=5, num_inference_steps=2)
    return hunyuan_video15_i2v.Params(**{**values, **overrides})


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-hunyuan-video15-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_conversion_script(tiny_hunyuan_i2v: Path):
    index = json.loads((tiny_hunyuan_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "HunyuanVideo15ImageToVideoPipeline"
    assert index["image_encoder"] == ["transformers", "SiglipVisionModel"]
    assert index["feature_extractor"][1].startswith("SiglipImageProcessor")  # ...Pil where torchvision is absent
    assert index["guider"] == ["diffusers", "ClassifierFreeGuidance"]
    transformer = json.loads((tiny_hunyuan_i2v / "transformer" / "config.json").read_text())
    assert transformer["task_type"] == "i2v" and transformer["image_embed_dim"] == 16  # the SigLIP's width
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "image_encoder/model"):
        assert (tiny_hunyuan_i2v / f"{weights}.safetensors").is_file()
        assert (tiny_hunyuan_i2v / f"{weights}.fp16.safetensors").is_file()


def test_tiny_build_is_reproducible(tiny_hunyuan_i2v: Path, tmp_path: Path):
    hunyuan_video15_i2v.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_hunyuan_i2v)


def test_the_size_is_the_checkpoints_bucket_nearest_the_images_aspect(pipe, tmp_path: Path):
    """The pipeline sizes the video itself: rocket.png (16:9) -> 32 x 48 for the tiny target_size, the same image
    turned upright -> 48 x 32 (480p: 480 x 848)."""
    rendered = hunyuan_video15_i2v.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (5, 32, 48, 3) and rendered.fps == 24
    upright = tmp_path / "upright.png"
    Image.open(ROCKET).transpose(Image.Transpose.ROTATE_90).save(upright)
    tall = hunyuan_video15_i2v.FAMILY.render_one(pipe, small(image=upright), torch.Generator().manual_seed(0), "cpu")
    assert tall.frames.shape == (5, 48, 32, 3)


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself, the image as the file's pixels; no size, no guidance."""
    params = small(negative_prompt=NEGATIVE, guidance_scale=3.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: hunyuan_video15_i2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert np.array_equal(np.asarray(call.kwargs.pop("image")), np.asarray(Image.open(ROCKET).convert("RGB")))
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_frames=5,
        num_inference_steps=2,
        generator=generator,
        output_type="latent",
    )


def test_guidance_scale_sets_the_guider_for_one_job(pipe):
    loaded = pipe.guider
    render = hunyuan_video15_i2v.FAMILY.render_one
    default = render(pipe, small(), torch.Generator().manual_seed(0), "cpu").frames
    off = render(pipe, small(guidance_scale=1.0), torch.Generator().manual_seed(0), "cpu").frames
    assert not np.array_equal(off, default)
    assert pipe.guider is loaded and pipe.guider.guidance_scale == 6.0


def test_size_keys_are_refused(tmp_path: Path):
    """The pipeline takes no height or width: a row cannot ask for a size it would not get."""
    assert "unknown key 'height'" in manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, height=32)


def test_image_and_prompt_are_required(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT)
    assert "missing 'image'" in message and "image-to-video" in message
    assert "missing 'prompt'" in manifest_problems(tmp_path, image=str(ROCKET))


def test_num_frames_must_be_4k_plus_1(tmp_path: Path):
    assert "4k+1" in manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, num_frames=10)
