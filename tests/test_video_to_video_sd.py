"""The video-to-video-sd family (Zeroscope XL) on text-to-video-sd's tiny checkpoint: contract, inputs, chaining."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, video_to_video_sd
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "Darth Vader surfing a wave"


class TestVideoToVideoSDContract(FamilyContract):
    family = "video-to-video-sd"
    not_call_parameters = {"height", "width"}  # the input frames are resized here

    def row(self, inputs):
        # 4 frames (every frame of the input is rendered); 4 steps at strength 0.5: the pipeline runs int(4 * 0.5) = 2
        short = inputs / "short.mp4"
        if not short.exists():
            make_video(short, frames=4)
        return dict(
            prompt=PROMPT,
            negative_prompt="blurry",
            video=str(short),
            height=32,
            width=48,
            strength=0.5,
            num_inference_steps=4,
        )

    docs_fps = 10  # the docs' export_to_video(video_frames) writes at its default, 10 fps

    def docs_row(self, inputs):
        # 4 steps at the docs' strength 0.6: the pipeline runs int(4 * 0.6) = 2 of them; the docs' file rate, not the input's
        return dict(
            prompt="Darth Vader surfing a wave",
            video=str(inputs / "clip.mp4"),
            height=32,
            width=48,
            strength=0.6,
            num_inference_steps=4,
            fps=10,
        )

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/text_to_video, the ``zeroscope_v2_XL`` upscale, as written, on the tiny checkpoint."""
        import imageio
        from diffusers import DPMSolverMultistepScheduler, VideoToVideoSDPipeline
        from PIL import Image

        # checkpoint path: the tiny folder, whose model_index.json names TextToVideoSDPipeline, so the class
        # the docs' DiffusionPipeline resolves to for the XL repo is named; dtype: float32 (the docs: float16)
        pipe = VideoToVideoSDPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        # device: the docs' GPU memory savers, enable_model_cpu_offload() and
        # unet.enable_forward_chunking(chunk_size=1, dim=1), are left out (CPU only)
        pipe.vae.enable_slicing()  # the docs' pipe.enable_vae_slicing(), which diffusers 0.42.1 removed

        prompt = "Darth Vader surfing a wave"
        # path: the docs' first-stage frames in memory are the row's input video, read as uint8 frames
        reader = imageio.get_reader(row["video"], "ffmpeg")
        video_frames = [frame for frame in reader]
        reader.close()
        video = [Image.fromarray(frame).resize((row["width"], row["height"])) for frame in video_frames]  # sizes: (1024, 576)

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        video_frames = pipe(
            prompt, video=video, strength=0.6, num_inference_steps=row["num_inference_steps"]  # steps: 4 (the docs: 50)
        ).frames[0]
        # export_to_video(video_frames) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in video_frames])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-video-to-video-sd"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return video_to_video_sd.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """8 frames, 64x96, at 12 fps."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", fps=12)


def small(clip: Path, **overrides) -> video_to_video_sd.Params:
    values = dict(prompt=PROMPT, video=clip, height=32, width=48, strength=0.5, num_inference_steps=4)
    return video_to_video_sd.Params(**{**values, **overrides})


def render(pipe, clip: Path, seed: int = 7, **overrides):
    return video_to_video_sd.FAMILY.render_one(pipe, small(clip, **overrides), torch.Generator().manual_seed(seed), "cpu")


def problems(tmp_path: Path, row: dict) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-video-to-video-sd", "seed": 1}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_text_to_video_sds_tiny_checkpoint(tiny: Path):
    assert tiny == Path(known_models()["tiny-text-to-video-sd"].source)
    assert json.loads((tiny / "model_index.json").read_text())["_class_name"] == "TextToVideoSDPipeline"


def test_prompt_and_video_are_required(tmp_path: Path):
    message = problems(tmp_path, {"strength": 0.5})
    assert "missing 'prompt'" in message
    assert "missing 'video': tiny-video-to-video-sd is a video-to-video model" in message


def test_a_missing_video_file_is_refused(tmp_path: Path):
    message = problems(tmp_path, {"prompt": PROMPT, "video": "nowhere.mp4"})
    assert "video='nowhere.mp4': no such file" in message


def test_half_a_size_strength_and_clip_skip_are_refused(tmp_path: Path):
    message = problems(tmp_path, {"prompt": PROMPT, "video": "clip.mp4", "height": 32, "strength": 1.5, "clip_skip": 1})
    assert "give both height and width" in message
    assert "strength=1.5" in message and "less than or equal to 1" in message
    assert "unknown key 'clip_skip'" in message


def test_a_strength_that_runs_no_step_is_refused(tmp_path: Path):
    message = problems(tmp_path, {"prompt": PROMPT, "video": "clip.mp4", "strength": 0.1, "num_inference_steps": 5})
    assert "strength=0.1 x num_inference_steps=5 runs no denoising step" in message
    assert "runs no denoising step" in problems(tmp_path, {"prompt": PROMPT, "video": "clip.mp4", "strength": 0.01})


def test_loaded_as_the_docs_load_it(pipe):
    assert type(pipe).__name__ == "VideoToVideoSDPipeline"
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.vae.use_slicing


def test_render_shape_fps_and_timings(pipe, clip):
    rendered = render(pipe, clip)
    assert rendered.frames.shape == (8, 32, 48, 3)  # every input frame, resized
    assert rendered.frames.dtype == np.uint8
    assert rendered.fps == 12  # the input video's
    assert rendered.denoise_s > 0 and rendered.decode_s > 0


def test_without_a_size_the_input_videos_is_kept(pipe, clip):
    assert render(pipe, clip, height=None, width=None).frames.shape == (8, 64, 96, 3)


def test_a_size_the_vae_cannot_take_is_refused(pipe, tmp_path):
    odd = make_video(tmp_path / "odd.mp4", height=64, width=90)
    with pytest.raises(ValueError, match="90x64, not a multiple of 4"):
        render(pipe, odd, height=None, width=None)
    assert render(pipe, odd, height=64, width=96).frames.shape == (8, 64, 96, 3)


@pytest.mark.parametrize(("strength", "steps"), [(0.5, 4), (1.0, 4), (0.6, 5)])
def test_strength_sets_the_steps_run(pipe, clip, monkeypatch, strength, steps):
    calls = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    render(pipe, clip, strength=strength, num_inference_steps=steps)
    assert len(calls) == int(steps * strength)


def test_call_parameters_reach_the_pipeline(pipe, clip):
    """Each parameter reaches the pipeline's call as itself; every input frame, resized to the row's size."""
    from videosweep.tasks.video import read_video

    params = small(clip, prompt="a boat at sea", negative_prompt="blurry", guidance_scale=1.0, strength=0.75, eta=0.5)
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: video_to_video_sd.FAMILY.render_one(pipe, params, generator, "cpu"))
    video = call.kwargs.pop("video")
    expected = [frame.resize((48, 32)) for frame in read_video(clip)[0]]
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(frame).tolist() for frame in expected]
    assert call.args == ("a boat at sea",) and call.kwargs == dict(
        strength=0.75,
        negative_prompt="blurry",
        num_inference_steps=4,
        guidance_scale=1.0,
        eta=0.5,
        generator=generator,
        output_type="latent",
    )


def test_the_docs_two_stage_recipe_chains_through_a_manifest(tmp_path: Path):
    """Text-to-video renders, video-to-video takes its mp4 (``@low-res``), resized and re-rendered."""
    manifest = {
        "name": "chain",
        "defaults": {"prompt": PROMPT, "seed": 5, "num_inference_steps": 2},
        "rows": [
            {"id": "low-res", "model": "tiny-text-to-video-sd", "num_frames": 4, "height": 32, "width": 48},
            {"model": "tiny-video-to-video-sd", "video": "@low-res", "height": 64, "width": 96, "strength": 1.0},
        ],
    }
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    low, high = in_order(load_manifest(path, "cpu").jobs)
    assert high.depends_on == [low.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (low, high)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    frames, fps = read_mp4(run.out_root / job_video_path(high.job_id))
    assert frames.shape == (4, 64, 96, 3) and fps == 10  # the low-res video's frames and rate (the docs' 10 fps)


def test_example_manifests_validate_and_the_tiny_one_mirrors_the_real_one():
    real = load_manifest(REPO / "manifests" / "video-to-video-sd.yaml", "cpu")
    tiny = load_manifest(REPO / "manifests" / "tiny" / "video-to-video-sd.yaml", "cpu")
    assert [job.model for job in in_order(real.jobs)] == ["zeroscope-576w", "zeroscope-xl"]
    assert [job.model for job in in_order(tiny.jobs)] == ["tiny-text-to-video-sd", "tiny-video-to-video-sd"]
    upscale = in_order(real.jobs)[1]
    assert upscale.params["strength"] == 0.6 and (upscale.params["width"], upscale.params["height"]) == (1024, 576)
    assert all(job.variant is None for job in real.jobs)  # the docs load both repos without a variant
