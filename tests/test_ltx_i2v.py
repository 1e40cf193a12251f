"""The LTX-Video image-to-video family on the tiny checkpoint it shares with ``ltx``: the contract,
the required image, the image's effect, the shared repo, and the decode the pipeline does itself."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tasks.manifest import ManifestError, load_manifest
from tasks.models import ensure_built, known_models, ltx, ltx_i2v, resolve
from tasks.models.base import LoadOptions

from .conftest import ROCKET
from .family_contract import FamilyContract

REPO = Path(__file__).resolve().parent.parent
PROMPT = "A white rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"


class TestLTXImageToVideoContract(FamilyContract):
    family = "ltx-i2v"

    def row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=32,
            width=64,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The LTXImageToVideoPipeline docstring: from_pretrained, load_image, image + prompt + negative
        prompt, size, frames, steps, frames out (float32 on the CPU).

        One addition, the module's own determinism measure: the decoder's injected noise comes from
        torch's global RNG, seeded with the seed inside ``fork_rng``, next to a CPU generator of it.
        """
        from diffusers import LTXImageToVideoPipeline
        from diffusers.utils import load_image

        pipe = LTXImageToVideoPipeline.from_pretrained(folder, dtype=torch.float32)
        image = load_image(row["image"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            video = pipe(
                image=image,
                prompt=row["prompt"],
                negative_prompt=row["negative_prompt"],
                width=row["width"],
                height=row["height"],
                num_frames=row["num_frames"],
                num_inference_steps=row["num_inference_steps"],
                max_sequence_length=row["max_sequence_length"],
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
            ).frames[0]
        return (video * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_ltx() -> Path:
    ref = known_models()["tiny-ltx-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_ltx):
    return ltx_i2v.load(LoadOptions(str(tiny_ltx), None, "float32", None), "cpu")


def small(**overrides) -> ltx_i2v.Params:
    values = dict(
        image=ROCKET,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=32,
        width=64,
        num_frames=9,
        num_inference_steps=2,
        max_sequence_length=16,
    )
    return ltx_i2v.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return ltx_i2v.render(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-ltx-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_repo_and_tiny_checkpoint_of_text_to_video(tiny_ltx: Path):
    models = known_models()
    assert models["tiny-ltx-i2v"].source == models["tiny-ltx"].source == str(tiny_ltx)
    assert models["ltx-video-i2v"].source == models["ltx-video"].source == "Lightricks/LTX-Video"
    assert json.loads((tiny_ltx / "model_index.json").read_text())["_class_name"] == "LTXPipeline"
    # a folder says LTXPipeline: text-to-video unless the row asks for this family
    assert resolve(str(tiny_ltx)).family == "ltx"
    assert resolve(str(tiny_ltx), family="ltx-i2v").family == "ltx-i2v"


def test_params_are_text_to_videos_and_the_image():
    assert set(ltx_i2v.Params.model_fields) == set(ltx.Params.model_fields) | {"image"}
    assert ltx_i2v.Params.model_fields["image"].is_required()


def test_render_shape_fps_and_timings(pipe):
    rendered = ltx_i2v.render(pipe, small(frame_rate=24, num_frames=17), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (17, 32, 64, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 24
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_the_image_conditions_the_video(pipe, tmp_path: Path):
    from PIL import Image

    flipped = tmp_path / "flipped.png"
    Image.open(ROCKET).transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
    first = frames(pipe)
    assert not np.array_equal(first, frames(pipe, image=flipped))
    assert not np.array_equal(first, frames(pipe, frame_rate=24))
    assert not np.array_equal(first, frames(pipe, decode_timestep=0.05))


def test_same_seed_same_frames_whatever_the_global_rng(pipe):
    torch.manual_seed(1)
    first = frames(pipe, seed=5)
    torch.manual_seed(2)
    assert np.array_equal(first, frames(pipe, seed=5))


def test_decode_matches_the_pipelines_own_with_decode_noise(pipe):
    """With decode_timestep and decode_noise_scale set, the noise drawn after the loop lines up too."""
    from diffusers.utils import load_image

    params = small(decode_timestep=0.05, decode_noise_scale=0.025)
    ours = ltx_i2v.render(pipe, params, torch.Generator().manual_seed(4), "cpu").frames
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        theirs = pipe(
            image=load_image(str(ROCKET)),
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            height=params.height,
            width=params.width,
            num_frames=params.num_frames,
            num_inference_steps=params.num_inference_steps,
            max_sequence_length=params.max_sequence_length,
            decode_timestep=0.05,
            decode_noise_scale=0.025,
            generator=torch.Generator().manual_seed(4),
            output_type="np",
        ).frames[0]
    assert np.array_equal(ours, (theirs * 255).round().astype(np.uint8))


def test_image_is_required(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT)
    assert "missing 'image'" in message and "image-to-video" in message


def test_prompt_is_required(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, image=str(ROCKET))


def test_frame_and_size_rules_are_text_to_videos(tmp_path: Path):
    message = manifest_problems(tmp_path, image=str(ROCKET), prompt=PROMPT, num_frames=10, width=100)
    assert "8k+1" in message and "nearest: 9 or 17" in message
    assert "width=100" in message and "multiple of 32" in message


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "ltx-i2v.yaml", "cuda")  # validation only: what auto means on a GPU
    tiny = load_manifest(REPO / "manifests" / "tiny" / "ltx-i2v.yaml", "cpu")
    assert {job.family for job in real.jobs + tiny.jobs} == {"ltx-i2v"}
    assert {job.model for job in real.jobs} == {"ltx-video-i2v"}
    assert all(job.dtype == "bfloat16" and job.variant is None for job in real.jobs)
    sizes = {(job.params["height"], job.params["width"], job.params["num_frames"]) for job in real.jobs}
    assert sizes == {(480, 704, 161)}
    assert real.jobs[0].input_sha256["image"] == tiny.jobs[0].input_sha256["image"]  # the same rocket
    assert {job.params["prompt"] for job in real.jobs} == {job.params["prompt"] for job in tiny.jobs}
