"""The CogVideoX video-to-video family on the CogVideoX text-to-video tiny checkpoint: contract (the docstring's
recipe, its DPM scheduler), inputs, the 8k / 8k+1 frame rule, strength, and chaining after a text-to-video row."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import cogvideox_v2v, ensure_built, known_models
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "A rocket climbs into a clear sky, smoke billowing below"
DOCS_PROMPT = (
    "An astronaut stands triumphantly at the peak of a towering mountain. Panorama of rugged peaks and "
    "valleys. Very futuristic vibe and animated aesthetic. Highlights of purple and golden colors in "
    "the scene. The sky is looks like an animated/cartoonish dream of galaxies, nebulae, stars, planets, "
    "moons, but the remainder of the scene is mostly realistic."
)


def clip9(inputs: Path) -> Path:
    """9 frames (8k+1), 64x96: every frame comes back out of the VAE."""
    path = inputs / "clip9.mp4"
    if not path.exists():
        make_video(path, frames=9)
    return path


class TestCogVideoXV2VContract(FamilyContract):
    family = "cogvideox-v2v"
    not_call_parameters = {"num_frames"}  # the video's first frames

    def row(self, inputs):
        # 4 steps at strength 0.5: int(4 * 0.5) = 2 run; the transformer's 32 x 48
        return dict(prompt=PROMPT, negative_prompt="blurry", video=str(clip9(inputs)), num_inference_steps=4,
                    strength=0.5, max_sequence_length=16)  # fmt: skip

    docs_fps = 8  # the docstring's export_to_video(video, "output.mp4", fps=8)

    def docs_row(self, inputs):
        # 3 steps at the docs' strength 0.8: int(3 * 0.8) = 2 run
        return dict(video=str(clip9(inputs)), prompt=DOCS_PROMPT, strength=0.8, guidance_scale=6, num_inference_steps=3,
                    dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """The ``CogVideoXVideoToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny
        checkpoint."""
        from diffusers import CogVideoXDPMScheduler, CogVideoXVideoToVideoPipeline
        from diffusers.utils import load_video

        # Models: "THUDM/CogVideoX-2b" or "THUDM/CogVideoX-5b"
        # checkpoint path: the tiny (5B-like) folder
        pipe = CogVideoXVideoToVideoPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16)
        # device: the docs' pipe.to("cuda") is left out (CPU only)
        pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)

        input_video = load_video(row["video"])  # path: the row's 9-frame clip (the docs: hiker.mp4 from the hub)
        prompt = (
            "An astronaut stands triumphantly at the peak of a towering mountain. Panorama of rugged peaks and "
            "valleys. Very futuristic vibe and animated aesthetic. Highlights of purple and golden colors in "
            "the scene. The sky is looks like an animated/cartoonish dream of galaxies, nebulae, stars, planets, "
            "moons, but the remainder of the scene is mostly realistic."
        )

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video = pipe(
            video=input_video, prompt=prompt, strength=0.8, guidance_scale=6,
            num_inference_steps=row["num_inference_steps"],  # steps: 3 (the docs: 50); size: the transformer's
        ).frames[0]  # fmt: skip
        # export_to_video(video, "output.mp4", fps=8) receives these PIL frames
        return np.stack([np.array(frame) for frame in video])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-cogvideox-v2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return cogvideox_v2v.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clip9(tmp_path_factory.mktemp("clip"))


def small(clip: Path, **overrides) -> cogvideox_v2v.Params:
    values = dict(prompt=PROMPT, video=clip, num_inference_steps=4, strength=0.5, max_sequence_length=16)
    return cogvideox_v2v.Params(**{**values, **overrides})


def problems(tmp_path: Path, row: dict) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-cogvideox-v2v", "seed": 1}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_cogvideox_tiny_checkpoint_and_loads_it_with_the_docs_scheduler(tiny: Path, pipe):
    assert tiny == Path(known_models()["tiny-cogvideox"].source)
    assert type(pipe).__name__ == "CogVideoXVideoToVideoPipeline"
    assert type(pipe.scheduler).__name__ == "CogVideoXDPMScheduler"  # the docstring's swap
    models = known_models()
    assert models["cogvideox-5b-v2v"].source == "THUDM/CogVideoX-5b" and models["cogvideox-5b-v2v"].gpu_dtype == "bfloat16"
    assert models["cogvideox-2b-v2v"].source == "THUDM/CogVideoX-2b" and models["cogvideox-2b-v2v"].gpu_dtype == "float16"


def test_prompt_and_video_are_required(tmp_path: Path):
    message = problems(tmp_path, {"strength": 0.5})
    assert "missing 'prompt'" in message
    assert "missing 'video': tiny-cogvideox-v2v is a video-to-video model" in message


def test_bad_frames_sizes_and_strengths_are_refused(tmp_path: Path):
    row = {"prompt": PROMPT, "video": "clip.mp4", "num_frames": 13, "height": 40, "width": 48, "strength": 0.01}
    message = problems(tmp_path, row)
    assert "num_frames=13" in message and "8k or 8k+1" in message and "into 16 frames" in message
    assert "height=40" in message and "multiple of 16" in message
    assert "strength=0.01 x num_inference_steps=50 runs no denoising step" in message


def test_a_video_of_other_than_8k_or_8k_plus_1_frames_needs_num_frames(tmp_path: Path, clip: Path):
    """The VAE would give back another number of frames (12 -> 9): refused, unless num_frames takes the first ones."""
    twelve = make_video(tmp_path / "twelve.mp4", frames=12)
    with pytest.raises(ValueError, match=r"has 12 frames, which must be 8k or 8k\+1 .* nearest: 8 or 9; set num_frames"):
        cogvideox_v2v.input_frames(small(twelve))
    assert len(cogvideox_v2v.input_frames(small(twelve, num_frames=9))) == 9
    with pytest.raises(ValueError, match="num_frames=16, but the video .* has only 9 frames"):
        cogvideox_v2v.input_frames(small(clip, num_frames=16))


def test_the_frames_come_back_as_many_as_went_in(pipe, tmp_path: Path):
    """8 frames (8k) and 9 (8k+1) both decode to as many; the row's size resizes them."""
    eight = make_video(tmp_path / "eight.mp4", frames=8)
    rendered = cogvideox_v2v.FAMILY.render_one(pipe, small(eight, guidance_scale=1.0), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (8, 32, 48, 3) and rendered.fps == 8
    resized = small(eight, num_frames=1, height=48, width=64, guidance_scale=1.0)
    assert cogvideox_v2v.FAMILY.render_one(pipe, resized, torch.Generator().manual_seed(0), "cpu").frames.shape == (1, 48, 64, 3)


def test_call_parameters_reach_the_pipeline(pipe, clip):
    """Each parameter reaches the pipeline's call as itself; the video's first num_frames frames as read (the
    pipeline resizes them)."""
    params = small(clip, negative_prompt="blurry", guidance_scale=4.0, use_dynamic_cfg=True, num_frames=8, height=32,
                   width=64)  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: cogvideox_v2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert type(call.scheduler).__name__ == "CogVideoXDPMScheduler"
    video = call.kwargs.pop("video")
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(f).tolist() for f in read_video(clip, 8)[0]]
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        height=32,
        width=64,
        num_inference_steps=4,
        strength=0.5,
        guidance_scale=4.0,
        use_dynamic_cfg=True,
        eta=0.0,
        max_sequence_length=16,
        generator=generator,
        output_type="latent",
    )


def test_strength_sets_the_steps_run(pipe, clip, monkeypatch):
    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    params = small(clip, guidance_scale=1.0, strength=0.75)
    cogvideox_v2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(0), "cpu")
    assert len(calls) == int(4 * 0.75)  # guidance off: one transformer call a step


def test_eta_with_the_docs_scheduler_is_refused(pipe, clip):
    with pytest.raises(ValueError, match="CogVideoXDPMScheduler ignores eta; add `scheduler: ddim`"):
        cogvideox_v2v.FAMILY.render_one(pipe, small(clip, eta=0.5), torch.Generator().manual_seed(0), "cpu")


def test_the_tiny_manifest_chains_text_to_video_into_video_to_video(tmp_path: Path):
    """The tiny example, job by job: tiny-cogvideox's 9 frames, re-rendered by tiny-cogvideox-v2v from their lossless
    copy."""
    path = REPO / "manifests" / "tiny" / "cogvideox-v2v.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert (source.model, taker.model) == ("tiny-cogvideox", "tiny-cogvideox-v2v") and taker.depends_on == [source.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    assert '"lossless": true' in records[1]["chain_inputs_json"]
    frames, fps = read_mp4(run.out_root / job_video_path(taker.job_id))
    assert frames.shape == (9, 32, 48, 3) and fps == 8


def test_the_real_manifest_restates_the_docs():
    real = in_order(load_manifest(REPO / "manifests" / "cogvideox-v2v.yaml", "cpu").jobs)
    assert [job.model for job in real] == ["cogvideox-5b", "cogvideox-5b-v2v"]
    params = real[1].params
    assert params["prompt"] == DOCS_PROMPT and real[1].depends_on == [real[0].job_id]
    assert (params["strength"], params["guidance_scale"], params["num_inference_steps"]) == (0.8, 6.0, 50)
