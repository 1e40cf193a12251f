"""The LTX-Video image-to-video family on the tiny checkpoint it shares with ``ltx``: the contract,
the required image, the image's effect, the shared repo, and the decode the pipeline does itself."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, ltx, ltx_i2v, resolve
from videosweep.tasks.models.base import LoadOptions

from .conftest import REPO, ROCKET, pipeline_call
from .family_contract import FamilyContract

PROMPT = "A white rocket lifts off from its launch pad at dawn, smoke billowing"
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
DOCS_PROMPT = (
    "A young girl stands calmly in the foreground, looking directly at the camera, as a house fire rages in the "
    "background. Flames engulf the structure, with smoke billowing into the air. Firefighters in protective gear rush "
    "to the scene, a fire truck labeled '38' visible behind them. The girl's neutral expression contrasts sharply with "
    "the chaos of the fire, creating a poignant and emotionally charged scene."
)


class TestLTXImageToVideoContract(FamilyContract):
    family = "ltx-i2v"

    def row(self, inputs):
        # no negative prompt (the docs row has theirs): guidance then moves these tiny frames well past
        # the guidance_cutoff test's bound (by 28 levels; by 8 with NEGATIVE, at the bound)
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=PROMPT,
            height=32,
            width=64,
            num_frames=9,
            num_inference_steps=2,
            max_sequence_length=16,
        )

    docs_fps = 24  # the docs' export_to_video(video, "output.mp4", fps=24)
    fps_differs = "one rate, frame_rate: conditioning and the mp4's; the docs condition on the pipeline's 25 and export at 24"

    def docs_row(self, inputs):
        return dict(
            image=str(inputs / "rocket.png"),
            prompt=DOCS_PROMPT,
            negative_prompt=NEGATIVE,
            width=64,
            height=32,
            num_frames=9,
            num_inference_steps=2,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``LTXImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import LTXImageToVideoPipeline
        from diffusers.utils import load_image

        # checkpoint path: the tiny folder; dtype: float32 (the docs: torch.bfloat16)
        pipe = LTXImageToVideoPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        image = load_image(row["image"])  # path: a local image for the docs' 8.png URL
        prompt = "A young girl stands calmly in the foreground, looking directly at the camera, as a house fire rages in the background. Flames engulf the structure, with smoke billowing into the air. Firefighters in protective gear rush to the scene, a fire truck labeled '38' visible behind them. The girl's neutral expression contrasts sharply with the chaos of the fire, creating a poignant and emotionally charged scene."
        negative_prompt = "worst quality, inconsistent motion, blurry, jittery, distorted"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video = pipe(
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=row["width"],  # sizes: 64 x 32, 9 frames, 2 steps (the docs: 704 x 480, 161 frames, 50 steps)
            height=row["height"],
            num_frames=row["num_frames"],
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(video, "output.mp4", fps=24) receives these PIL frames
        return np.stack([np.array(frame) for frame in video])


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
    return ltx_i2v.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


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
    rendered = ltx_i2v.FAMILY.render_one(pipe, small(frame_rate=24, num_frames=17), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (17, 32, 64, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 24
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the pipeline's call as itself; the image as loaded (the pipeline resizes it). The
    decode parameters act after the call (the pipeline's own decode, below)."""
    from diffusers.utils import load_image

    params = small(frame_rate=24, guidance_scale=4.0, guidance_rescale=0.7)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: ltx_i2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert np.array_equal(np.asarray(call.kwargs.pop("image")), np.asarray(load_image(str(ROCKET))))
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=32,
        width=64,
        num_frames=9,
        frame_rate=24,
        num_inference_steps=2,
        guidance_scale=4.0,
        guidance_rescale=0.7,
        max_sequence_length=16,
        generator=generator,
        output_type="latent",
    )


def test_decode_matches_the_pipelines_own_with_decode_noise(pipe):
    """With decode_timestep and decode_noise_scale set, the noise drawn after the loop lines up too: one stream,
    the latents, the decode noise and the decoder's injected noise, as the docs' call draws them from the global RNG."""
    from diffusers.utils import load_image

    params = small(decode_timestep=0.05, decode_noise_scale=0.025)
    ours = ltx_i2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(4), "cpu").frames
    with torch.random.fork_rng(devices=[]):
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
            generator=torch.manual_seed(4),  # the default generator: one stream with the decoder's global-RNG noise
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
