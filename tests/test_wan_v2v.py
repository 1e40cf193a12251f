"""The Wan video-to-video family on the Wan text-to-video tiny checkpoint: contract, inputs, the 4k+1 frame rule,
and chaining after a text-to-video row."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, wan_v2v
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract
from .test_wan import DOCS_NEGATIVE

PROMPT = "A robot walking on a mountain ridge"
DOCS_PROMPT = "A robot standing on a mountain top. The sun is setting in the background"


def clip9(inputs: Path) -> Path:
    """9 frames (4k+1), 64x96: every frame reaches the VAE."""
    path = inputs / "clip9.mp4"
    if not path.exists():
        make_video(path, frames=9)
    return path


class TestWanV2VContract(FamilyContract):
    family = "wan-v2v"
    not_call_parameters = {"num_frames", "flow_shift"}  # the video's first frames; the docs' scheduler swap
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32

    def row(self, inputs):
        # the first 5 of 9 frames; 4 steps at strength 0.5: int(4 * 0.5) = 2 run
        return dict(
            prompt=PROMPT,
            negative_prompt="blurry",
            video=str(clip9(inputs)),
            num_frames=5,
            height=32,
            width=32,
            num_inference_steps=4,
            strength=0.5,
            max_sequence_length=16,
            flow_shift=5.0,
        )

    docs_fps = 16  # the docs' export_to_video(output, "output.mp4", fps=16)

    def docs_row(self, inputs):
        # 4 steps at the docs' strength 0.7: int(4 * 0.7) = 2 run
        return dict(
            prompt=DOCS_PROMPT,
            negative_prompt=DOCS_NEGATIVE,
            video=str(clip9(inputs)),
            height=32,
            width=48,
            guidance_scale=5.0,
            strength=0.7,
            num_inference_steps=4,
            flow_shift=3.0,
        )

    def docs_recipe(self, folder, components, row, seed):
        """The ``WanVideoToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, WanVideoToVideoPipeline
        from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
        from diffusers.utils import load_video

        model_id = folder  # checkpoint path: the tiny Wan T2V folder (the docs: Wan-AI/Wan2.1-T2V-1.3B-Diffusers)
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipe = WanVideoToVideoPipeline.from_pretrained(model_id, vae=vae, torch_dtype=torch.float32)  # dtype: float32 (the docs: bfloat16)
        flow_shift = 3.0  # 5.0 for 720P, 3.0 for 480P
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A robot standing on a mountain top. The sun is setting in the background"
        negative_prompt = "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards"
        video = load_video(row["video"])  # path: the row's 9-frame clip (the docs: hiker.mp4 from the hub)
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            video=video,
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=row["height"],  # sizes: 32 x 48, 4 steps (the docs: 480 x 720, the pipeline's 50 steps)
            width=row["width"],
            guidance_scale=5.0,
            strength=0.7,
            num_inference_steps=row["num_inference_steps"],
        ).frames[0]
        # export_to_video(output, "output.mp4", fps=16) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-wan-v2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return wan_v2v.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clip9(tmp_path_factory.mktemp("clip"))


def small(clip: Path, **overrides) -> wan_v2v.Params:
    values = dict(prompt=PROMPT, video=clip, height=32, width=32, num_inference_steps=4, strength=0.5)
    return wan_v2v.Params(**{**values, "max_sequence_length": 16, **overrides})


def problems(tmp_path: Path, row: dict) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-wan-v2v", "seed": 1}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_wan_tiny_checkpoint_and_loads_it_as_video_to_video(tiny: Path, pipe):
    assert tiny == Path(known_models()["tiny-wan"].source)
    assert type(pipe).__name__ == "WanVideoToVideoPipeline" and pipe.vae.dtype == torch.float32


def test_prompt_and_video_are_required(tmp_path: Path):
    message = problems(tmp_path, {"strength": 0.5})
    assert "missing 'prompt'" in message
    assert "missing 'video': tiny-wan-v2v is a video-to-video model" in message


def test_bad_frames_sizes_and_strengths_are_refused(tmp_path: Path):
    row = {"prompt": PROMPT, "video": "clip.mp4", "num_frames": 8, "height": 40, "strength": 0.01}
    message = problems(tmp_path, row)
    assert "num_frames=8" in message and "4k+1" in message
    assert "height=40" in message and "multiple of 16" in message
    assert "strength=0.01 x num_inference_steps=50 runs no denoising step" in message


def test_a_video_of_other_than_4k_plus_1_frames_needs_num_frames(tmp_path: Path, clip: Path):
    """The VAE would drop the frames past the last 4k+1: refused, unless num_frames takes the first ones."""
    eight = make_video(tmp_path / "eight.mp4", frames=8)
    with pytest.raises(ValueError, match=r"has 8 frames, which must be 4k\+1 .* nearest: 5 or 9; set num_frames"):
        wan_v2v.input_frames(small(eight))
    assert len(wan_v2v.input_frames(small(eight, num_frames=5))) == 5
    with pytest.raises(ValueError, match="num_frames=13, but the video .* has only 9 frames"):
        wan_v2v.input_frames(small(clip, num_frames=13))


def test_call_parameters_reach_the_pipeline(pipe, clip):
    """Each parameter reaches the pipeline's call as itself, with the row's flow_shift in the scheduler it runs; the
    video's first num_frames frames as read (the pipeline resizes them)."""
    params = small(clip, negative_prompt="blurry", guidance_scale=4.0, strength=0.75, num_frames=5, flow_shift=8.0)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: wan_v2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 8.0
    video = call.kwargs.pop("video")
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(f).tolist() for f in read_video(clip, 5)[0]]
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        height=32,
        width=32,
        num_inference_steps=4,
        guidance_scale=4.0,
        strength=0.75,
        max_sequence_length=16,
        generator=generator,
        output_type="latent",
    )


def test_strength_sets_the_steps_run(pipe, clip, monkeypatch):
    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    rendered = wan_v2v.FAMILY.render_one(pipe, small(clip, guidance_scale=1.0), torch.Generator().manual_seed(0), "cpu")
    assert len(calls) == int(4 * 0.5)  # guidance off: one transformer call a step
    assert rendered.frames.shape == (9, 32, 32, 3) and rendered.fps == 16


def test_the_tiny_manifest_chains_text_to_video_into_video_to_video(tmp_path: Path):
    """The tiny example, job by job: tiny-wan's 9 frames, re-rendered by tiny-wan-v2v from their lossless copy."""
    path = REPO / "manifests" / "tiny" / "wan-v2v.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert (source.model, taker.model) == ("tiny-wan", "tiny-wan-v2v") and taker.depends_on == [source.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    assert '"lossless": true' in records[1]["chain_inputs_json"]
    frames, fps = read_mp4(run.out_root / job_video_path(taker.job_id))
    assert frames.shape == (9, 32, 48, 3) and fps == 16


def test_the_real_manifest_restates_the_docs():
    real = in_order(load_manifest(REPO / "manifests" / "wan-v2v.yaml", "cpu").jobs)
    assert [job.model for job in real] == ["wan2.1-t2v-1.3b", "wan2.1-v2v-1.3b"]
    params = real[1].params
    assert params["prompt"] == DOCS_PROMPT and params["negative_prompt"] == DOCS_NEGATIVE
    assert (params["height"], params["width"], params["strength"], params["flow_shift"]) == (480, 720, 0.7, 3.0)
