"""The CogVideoX image-to-video family on its tiny checkpoint: the contract, its own transformer
(image latents concatenated, learned positional embeddings), the required image and prompt, and
the size and prompt-length limits of learned embeddings."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import cogvideox_i2v, ensure_built, folder_sha256, known_models
from videosweep.tasks.models.base import LoadOptions

from .conftest import ROCKET, pipeline_call
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke and steam billowing as it climbs into a clear sky"
DOCS_PROMPT = (
    "An astronaut hatching from an egg, on the surface of the moon, the darkness and depth of space realised in the "
    "background. High quality, ultrarealistic detail and breath-taking movie-like camera shot."
)


class TestCogVideoXI2VContract(FamilyContract):
    family = "cogvideox-i2v"

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            num_frames=9,
            num_inference_steps=2,
            use_dynamic_cfg=True,
        )

    docs_fps = 8  # the docs' export_to_video(video.frames[0], "output.mp4", fps=8)

    def docs_row(self, inputs):
        return dict(image=str(inputs / "rocket.png"), prompt=DOCS_PROMPT, use_dynamic_cfg=True, num_frames=9, num_inference_steps=2)

    def docs_recipe(self, folder, components, row, seed):
        """The ``CogVideoXImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import CogVideoXImageToVideoPipeline
        from diffusers.utils import load_image

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16); device: no pipe.to("cuda")
        pipe = CogVideoXImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)

        prompt = "An astronaut hatching from an egg, on the surface of the moon, the darkness and depth of space realised in the background. High quality, ultrarealistic detail and breath-taking movie-like camera shot."
        image = load_image(row["image"])  # path: a local image for the docs' astronaut.jpg URL
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        # sizes: 9 frames, 2 steps (the docs: the pipeline's 49 frames, 50 steps)
        video = pipe(image, prompt, use_dynamic_cfg=True, num_frames=row["num_frames"], num_inference_steps=row["num_inference_steps"])
        # export_to_video(video.frames[0], "output.mp4", fps=8) receives these PIL frames
        return np.stack([np.array(frame) for frame in video.frames[0]])


@pytest.fixture(scope="module")
def tiny_cogvideox_i2v() -> Path:
    ref = known_models()["tiny-cogvideox-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_cogvideox_i2v):
    return cogvideox_i2v.load(LoadOptions(str(tiny_cogvideox_i2v), None, "float32", None), "cpu")


def small(**overrides) -> cogvideox_i2v.Params:
    values = dict(image=ROCKET, prompt=PROMPT, num_frames=9, num_inference_steps=2)
    return cogvideox_i2v.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return cogvideox_i2v.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-cogvideox-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_5b_i2v(tiny_cogvideox_i2v: Path):
    index = json.loads((tiny_cogvideox_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "CogVideoXImageToVideoPipeline"
    assert index["scheduler"] == ["diffusers", "CogVideoXDDIMScheduler"]
    transformer = json.loads((tiny_cogvideox_i2v / "transformer" / "config.json").read_text())
    assert transformer["in_channels"] == 8 and transformer["out_channels"] == 4  # noise + image latents in
    assert transformer["use_learned_positional_embeddings"] and transformer["use_rotary_positional_embeddings"]
    vae = json.loads((tiny_cogvideox_i2v / "vae" / "config.json").read_text())
    assert vae["invert_scale_latents"] is True
    for weights in ("transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_cogvideox_i2v / f"{weights}.safetensors").is_file()
        assert (tiny_cogvideox_i2v / f"{weights}.fp16.safetensors").is_file()


def test_its_own_checkpoint_not_text_to_videos():
    models = known_models()
    assert models["tiny-cogvideox-i2v"].source != models["tiny-cogvideox"].source
    assert models["cogvideox-5b-i2v"].source == "THUDM/CogVideoX-5b-I2V"
    assert models["cogvideox-5b-i2v"].family == "cogvideox-i2v"


def test_tiny_build_is_reproducible(tiny_cogvideox_i2v: Path, tmp_path: Path):
    cogvideox_i2v.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_cogvideox_i2v)


def test_defaults_render_the_trained_size_at_8_fps(pipe):
    rendered = cogvideox_i2v.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (9, 32, 48, 3) and rendered.fps == 8


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself; the image as loaded (the pipeline resizes it)."""
    from diffusers.utils import load_image

    params = small(negative_prompt="blurry", guidance_scale=4.0, use_dynamic_cfg=True)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: cogvideox_i2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert np.array_equal(np.asarray(call.kwargs.pop("image")), np.asarray(load_image(str(ROCKET))))
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        height=None,
        width=None,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=4.0,
        use_dynamic_cfg=True,
        eta=0.0,
        max_sequence_length=226,
        generator=generator,
        output_type="latent",
    )


def test_image_is_required(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT)
    assert "missing 'image'" in message and "image-to-video" in message


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, image=str(ROCKET))


def test_frame_count_rule_is_text_to_videos(tmp_path: Path):
    assert "8k or 8k+1" in manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, num_frames=13)


def test_learned_embeddings_render_their_trained_size_only(pipe):
    with pytest.raises(ValueError, match="render 32 x 48 only"):
        frames(pipe, height=32, width=64)
    assert frames(pipe, height=32, width=48).shape == (9, 32, 48, 3)


def test_learned_embeddings_take_exactly_their_prompt_length(pipe):
    with pytest.raises(ValueError, match="exactly 226 prompt tokens"):
        frames(pipe, max_sequence_length=16)
