"""The AnimateDiff ControlNet family on AnimateDiff's tiny SD 1.5 base, with a tiny adapter, ControlNet and VAE in
folders of their own: contract, control frames as given and as Canny edges, refusals, and the tiny example's chain."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import animatediff_controlnet, ensure_built, known_models
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.models.text2video_zero_controlnet import canny_edges
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

DOCS_PROMPT = "a panda, playing a guitar, sitting in a pink boat, in the ocean, mountains in background, realistic, high quality"
DOCS_NEGATIVE = "bad quality, worst quality"
POSE = REPO / "manifests" / "inputs" / "pose-dance.mp4"


@pytest.fixture(scope="module", autouse=True)
def built():
    """The tiny component folders exist before a manifest names them (see test_animatediff.built)."""
    ensure_built(known_models()["tiny-animatediff-controlnet"])


class TestAnimateDiffControlNetContract(FamilyContract):
    family = "animatediff-controlnet"
    defaults_differ = {"num_frames"}  # the control video's length (the pipeline's 16 must equal it)
    not_call_parameters = {"video", "control", "canny_low", "canny_high", "canny_sigma"}  # -> conditioning_frames

    def row(self, inputs):
        # 3 steps: the docs' DDIM "linspace" runs 2 as t = 999, 0, where the last step's noise prediction barely
        # counts, and a deep_cache reuse there changes no pixel; 3 run t = 999, 500, 0
        return dict(
            prompt="a dancer on a stage", negative_prompt="blurry", video=str(inputs / "clip.mp4"), height=32,
            width=48, num_inference_steps=3,
        )  # fmt: skip

    def half_precision_row(self, inputs):
        return {**self.row(inputs), "num_frames": 2, "height": 32, "width": 32}  # the CPU's half kernels are slow

    docs_fps = 8  # the docs' export_to_gif(video, "animatediff_controlnet.gif", fps=8)

    def docs_row(self, inputs):
        return dict(
            prompt=DOCS_PROMPT, negative_prompt=DOCS_NEGATIVE, video=str(inputs / "clip.mp4"), num_inference_steps=2,
            guidance_scale=2.0, height=32, width=48,
        )  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/animatediff, "AnimateDiffControlNetPipeline" (diffusers 0.42.1's docs) on the tiny
        checkpoints. Besides path, sizes, dtype and device, three departures the family makes too
        (animatediff_controlnet's docstring): the DDIM setup of the original adapters for AnimateLCM's LCM
        scheduler and LoRA (which needs peft), and the video's frames as the control images (no ZoeDetector)."""
        from diffusers import AnimateDiffControlNetPipeline, AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter
        from diffusers.utils import load_video

        # checkpoint path: the tiny ControlNet folder, in diffusers format, so from_pretrained (the docs' comment)
        # for from_single_file("control_v11f1p_sd15_depth.pth"); dtype: float32 (the docs: torch.float16)
        controlnet = ControlNetModel.from_pretrained(components["controlnet"], dtype=torch.float32)

        # checkpoint path: the tiny adapter (the docs: wangfuyun/AnimateLCM; the family: the original adapters)
        motion_adapter = MotionAdapter.from_pretrained(components["adapter"])

        vae = AutoencoderKL.from_pretrained(components["vae"], dtype=torch.float32)  # path: the tiny VAE; dtype
        pipe: AnimateDiffControlNetPipeline = AnimateDiffControlNetPipeline.from_pretrained(
            folder,  # checkpoint path: the tiny SD 1.5 folder (the docs: SG161222/Realistic_Vision_V5.1_noVAE)
            motion_adapter=motion_adapter,
            controlnet=controlnet,
            vae=vae,
        ).to(device="cpu", dtype=torch.float32)  # device and dtype: the CPU in float32 (the docs: cuda, float16)
        # departure: the AnimateDiff docs' DDIM for the original adapters, for the docs'
        # LCMScheduler.from_config(..., beta_schedule="linear") + load_lora_weights("wangfuyun/AnimateLCM", ...)
        pipe.scheduler = DDIMScheduler.from_pretrained(
            folder, subfolder="scheduler", clip_sample=False, timestep_spacing="linspace", beta_schedule="linear",
            steps_offset=1,
        )  # fmt: skip

        video = load_video(row["video"])  # path: the row's clip (the docs: animatediff-vid2vid-input-1.gif)
        # departure: the frames as they are (the docs: depth_detector(frame) for each, controlnet_aux's ZoeDetector)
        conditioning_frames = []
        for frame in video:
            conditioning_frames.append(frame)

        prompt = "a panda, playing a guitar, sitting in a pink boat, in the ocean, mountains in background, realistic, high quality"
        negative_prompt = "bad quality, worst quality"

        video = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=len(video),
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps (the docs: 10), 48 x 32 (the docs' gif is
            height=row["height"],  # the pipeline's default 512 x 512; the tiny UNet's is 32 x 32)
            width=row["width"],
            guidance_scale=2.0,
            conditioning_frames=conditioning_frames,
            generator=torch.Generator().manual_seed(seed),  # the docs' seed is 42
        ).frames[0]

        # export_to_gif(video, "animatediff_controlnet.gif", fps=8) receives these PIL frames
        return np.stack([np.array(frame) for frame in video])


@pytest.fixture(scope="module")
def ref(built):
    return known_models()["tiny-animatediff-controlnet"]


@pytest.fixture(scope="module")
def pipe(ref):
    components = tuple((name, source, None) for name, source in ref.components)
    return animatediff_controlnet.load(LoadOptions(ref.source, None, "float32", None, components), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


def small(clip: Path, **overrides) -> animatediff_controlnet.Params:
    values = dict(prompt="a dancer on a stage", video=clip, height=32, width=48, num_inference_steps=2)
    return animatediff_controlnet.Params(**{**values, **overrides})


def render(pipe, params, seed: int = 0) -> np.ndarray:
    return animatediff_controlnet.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames


def problems(tmp_path: Path, rows: list[dict]) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-animatediff-controlnet", "seed": 1}, "rows": rows}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_components_are_separate_folders_and_load_as_the_docs_load_them(ref, pipe):
    from diffusers import ControlNetModel, DDIMScheduler

    components = dict(ref.components)
    assert list(components) == ["adapter", "controlnet", "vae"]
    assert ref.source == known_models()["tiny-animatediff"].source
    for name, kind in (("adapter", "MotionAdapter"), ("controlnet", "ControlNetModel"), ("vae", "AutoencoderKL")):
        assert json.loads((Path(components[name]) / "config.json").read_text())["_class_name"] == kind
        assert not list(Path(components[name]).glob("*.fp16.*")), "the docs load them without a variant"
    assert type(pipe).__name__ == "AnimateDiffControlNetPipeline" and isinstance(pipe.controlnet, ControlNetModel)
    vae = pipe.vae.state_dict()
    theirs = type(pipe.vae).from_pretrained(components["vae"]).state_dict()
    assert all(torch.equal(vae[key], theirs[key]) for key in vae), "the VAE is the component's, not the base's"
    config = pipe.scheduler.config
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert (config.clip_sample, config.timestep_spacing, config.beta_schedule, config.steps_offset) == (
        False, "linspace", "linear", 1,
    )  # fmt: skip


def test_bad_rows_are_refused_at_once(tmp_path):
    message = problems(
        tmp_path,
        [
            {"prompt": "a dancer"},
            {"prompt": "a dancer", "video": "clip.mp4", "canny_low": 50, "num_frames": 33},
            {"prompt": "a dancer", "video": "clip.mp4", "control": "canny", "canny_low": 250, "canny_high": 200},
            {"prompt": "a dancer", "video": "clip.mp4", "control_guidance_start": 0.6, "control_guidance_end": 0.5},
            {"prompt": "a dancer", "video": "clip.mp4", "controlnet": "not a repo id", "control": "depth"},
        ],
    )
    assert "missing 'video'" in message
    assert "canny_low only applies with `control: canny`" in message
    assert "num_frames=33" in message
    assert "canny_low=250 is above canny_high=200" in message
    assert "control_guidance_start=0.6 must be below control_guidance_end=0.5" in message
    assert "controlnet='not a repo id'" in message and "ControlNetModel" in message
    assert "control='depth'" in message


def test_a_clip_longer_than_the_adapter_holds_is_refused(pipe, tmp_path):
    long = make_video(tmp_path / "long.mp4", frames=33, height=32, width=32)
    with pytest.raises(ValueError, match="has 33 frames, more than 32 in one batch; set num_frames"):
        animatediff_controlnet.control_frames(pipe, small(long, height=None, width=None))


def test_control_frames_reach_the_pipeline_as_given_or_as_canny_edges(pipe, clip):
    """``frames``: the clip's frames as read (the pipeline resizes them); ``canny``: edges found at the output size;
    unset, the size is the clip's (the pipeline's own default, its UNet's 32x32, would stretch it)."""
    generator = torch.Generator().manual_seed(7)
    params = small(clip, height=None, width=None, num_frames=5, negative_prompt="blurry", guidance_scale=3.0, eta=0.5,
                   controlnet_conditioning_scale=0.5, control_guidance_start=0.1, control_guidance_end=0.9,
                   decode_chunk_size=2)  # fmt: skip
    call = pipeline_call(pipe, lambda: animatediff_controlnet.FAMILY.render_one(pipe, params, generator, "cpu"))
    frames = call.kwargs.pop("conditioning_frames")
    assert [np.asarray(f).tolist() for f in frames] == [np.asarray(f).tolist() for f in read_video(clip, 5)[0]]
    assert call.args == () and call.kwargs == dict(
        prompt="a dancer on a stage", negative_prompt="blurry", num_frames=5, height=64, width=96,
        num_inference_steps=2, guidance_scale=3.0, eta=0.5, generator=generator, controlnet_conditioning_scale=0.5,
        control_guidance_start=0.1, control_guidance_end=0.9, decode_chunk_size=2, output_type="latent",
    )  # fmt: skip
    canny = small(clip, control="canny", canny_low=50, canny_high=150)
    call = pipeline_call(pipe, lambda: animatediff_controlnet.FAMILY.render_one(pipe, canny, generator, "cpu"))
    edges = [canny_edges(np.asarray(frame.resize((48, 32))), 50, 150) for frame in read_video(clip)[0]]
    got = [np.asarray(frame) for frame in call.kwargs["conditioning_frames"]]
    assert all(g.shape == (32, 48, 3) and np.array_equal(g[..., 0], e) for g, e in zip(got, edges))


def test_the_control_shapes_the_video(pipe, clip):
    plain = render(pipe, small(clip))
    off = render(pipe, small(clip, controlnet_conditioning_scale=0.0))
    edges = render(pipe, small(clip, control="canny"))
    assert np.abs(plain.astype(int) - off.astype(int)).mean() > 1, "the ControlNet made no difference"
    assert np.abs(plain.astype(int) - edges.astype(int)).mean() > 1, "edges and frames condition alike"
    assert plain.shape == (8, 32, 48, 3)


def test_the_tiny_manifest_renders_pose_and_chained_canny_rows(tmp_path):
    path = REPO / "manifests" / "tiny" / "animatediff-controlnet.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert source.params["video"] == str(POSE) and taker.depends_on == [source.job_id]
    run = RunContext("tiny", tmp_path / "out", "cpu", "tiny", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    for job in (source, taker):
        frames, fps = read_mp4(run.out_root / job_video_path(job.job_id))
        assert frames.shape == (8, 32, 32, 3) and fps == 8


def test_the_real_manifest_restates_the_docs():
    jobs = in_order(load_manifest(REPO / "manifests" / "animatediff-controlnet.yaml", "cpu").jobs)
    assert [job.model for job in jobs] == ["animatediff-controlnet-openpose", "animatediff-controlnet-canny"]
    assert jobs[0].components["vae"] == "stabilityai/sd-vae-ft-mse"
    assert jobs[0].components["adapter"] == "guoyww/animatediff-motion-adapter-v1-5-3"
    for job in jobs:
        assert job.params["prompt"] == DOCS_PROMPT and job.params["negative_prompt"] == DOCS_NEGATIVE
    assert jobs[1].params["control"] == "canny" and jobs[1].depends_on == [jobs[0].job_id]
