"""The AnimateDiff video-to-video family on AnimateDiff's tiny SD 1.5 base: contract, inputs, sizes, frames, and
chaining after an AnimateDiff text-to-video row."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import animatediff_v2v, ensure_built, known_models
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "a boat on a calm sea at dawn"
DOCS_PROMPT = "panda playing a guitar, on a boat, in the ocean, high quality"
DOCS_NEGATIVE = "bad quality, worse quality"


@pytest.fixture(scope="module", autouse=True)
def built():
    """The tiny component folders exist before a manifest names them (see test_animatediff.built)."""
    for key in ("tiny-animatediff", "tiny-animatediff-v2v"):
        ensure_built(known_models()[key])


class TestAnimateDiffV2VContract(FamilyContract):
    family = "animatediff-v2v"
    not_call_parameters = {"num_frames"}  # the video's first frames, taken here

    def row(self, inputs):
        # 6 steps at strength 0.5: int(6 * 0.5) = 3 run (with 2, the deep-cache check's reused last call barely
        # moves a pixel); the clip's 8 frames at 64x96, resized to 32x48
        return dict(
            prompt=PROMPT, negative_prompt="blurry", video=str(inputs / "clip.mp4"), height=32, width=48,
            num_inference_steps=6, strength=0.5,
        )  # fmt: skip

    def half_precision_row(self, inputs):
        return {**self.row(inputs), "num_frames": 2, "height": 32, "width": 32}  # the CPU's half kernels are slow

    docs_fps = 10  # the docs' export_to_gif(frames, "animation.gif") writes at its default, 10 fps

    def docs_row(self, inputs):
        return dict(
            video=str(inputs / "clip.mp4"), prompt=DOCS_PROMPT, negative_prompt=DOCS_NEGATIVE, guidance_scale=7.5,
            num_inference_steps=4, strength=0.5, height=32, width=48,
        )  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/animatediff, "AnimateDiffVideoToVideoPipeline" (diffusers 0.42.1's docs), as written, on the
        tiny checkpoints."""
        import imageio
        from diffusers import AnimateDiffVideoToVideoPipeline, DDIMScheduler, MotionAdapter
        from PIL import Image

        # Load the motion adapter (checkpoint path: the tiny adapter; dtype: float32, the docs: torch.float16)
        adapter = MotionAdapter.from_pretrained(components["adapter"], dtype=torch.float32)
        # load SD 1.5 based finetuned model (checkpoint path: the tiny SD 1.5 folder)
        model_id = folder
        pipe = AnimateDiffVideoToVideoPipeline.from_pretrained(model_id, motion_adapter=adapter, dtype=torch.float32)
        scheduler = DDIMScheduler.from_pretrained(
            model_id,
            subfolder="scheduler",
            clip_sample=False,
            timestep_spacing="linspace",
            beta_schedule="linear",
            steps_offset=1,
        )
        pipe.scheduler = scheduler

        # enable memory savings (device: pipe.enable_model_cpu_offload() is left out, CPU only)
        pipe.vae.enable_slicing()

        # helper function to load videos (the docs' own; a local file here, so the URL branch is left out)
        def load_video(file_path: str):
            images = []
            vid = imageio.get_reader(file_path)
            for frame in vid:
                pil_image = Image.fromarray(frame)
                images.append(pil_image)
            return images

        video = load_video(row["video"])  # path: the row's clip (the docs: animatediff-vid2vid-input-1.gif)

        output = pipe(
            video=video,
            prompt="panda playing a guitar, on a boat, in the ocean, high quality",
            negative_prompt="bad quality, worse quality",
            guidance_scale=7.5,
            num_inference_steps=row["num_inference_steps"],  # sizes: 4 steps (the docs: 25) and 48 x 32 (the docs'
            height=row["height"],  # gif is the pipeline's default size, 512 x 512; the tiny UNet's is 32 x 32)
            width=row["width"],
            strength=0.5,
            generator=torch.Generator("cpu").manual_seed(seed),  # the docs' seed is 42
        )
        frames = output.frames[0]
        # export_to_gif(frames, "animation.gif") receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])


@pytest.fixture(scope="module")
def pipe(built):
    ref = known_models()["tiny-animatediff-v2v"]
    components = tuple((name, source, None) for name, source in ref.components)
    return animatediff_v2v.load(LoadOptions(ref.source, None, "float32", None, components), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


def small(clip: Path, **overrides) -> animatediff_v2v.Params:
    values = dict(prompt=PROMPT, video=clip, height=32, width=48, num_inference_steps=4, strength=0.5)
    return animatediff_v2v.Params(**{**values, **overrides})


def problems(tmp_path: Path, row: dict) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-animatediff-v2v", "seed": 1}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_animatediff_base_and_loads_it_as_video_to_video(pipe):
    from diffusers import DDIMScheduler

    ref = known_models()["tiny-animatediff-v2v"]
    assert ref.source == known_models()["tiny-animatediff"].source
    assert type(pipe).__name__ == "AnimateDiffVideoToVideoPipeline" and pipe.vae.use_slicing
    config = pipe.scheduler.config
    assert isinstance(pipe.scheduler, DDIMScheduler) and (config.beta_schedule, config.timestep_spacing) == (
        "linear", "linspace",
    )  # fmt: skip


def test_prompt_and_video_are_required_and_bad_values_refused(tmp_path):
    message = problems(tmp_path, {"strength": 0.5})
    assert "missing 'prompt'" in message and "missing 'video'" in message
    message = problems(
        tmp_path,
        {"prompt": PROMPT, "video": "clip.mp4", "num_frames": 33, "strength": 0.01, "height": 32},
    )
    assert "num_frames=33" in message and "32" in message
    assert "strength=0.01 x num_inference_steps=50 runs no denoising step" in message
    assert "give both height and width" in message


def test_frames_and_sizes_the_pipeline_would_mishandle_are_refused(pipe, clip, tmp_path):
    """A clip longer than the adapter's 32 positions, a num_frames past the clip's end, sides the VAE cannot take."""
    long = make_video(tmp_path / "long.mp4", frames=33, height=32, width=32)
    with pytest.raises(ValueError, match="has 33 frames, more than 32 in one batch; set num_frames"):
        animatediff_v2v.input_frames(pipe, small(long, height=None, width=None))
    video, width, height = animatediff_v2v.input_frames(pipe, small(long, height=None, width=None, num_frames=32))
    assert (len(video), width, height) == (32, 32, 32)
    with pytest.raises(ValueError, match="num_frames=9, but the video .* has only 8 frames"):
        animatediff_v2v.input_frames(pipe, small(clip, num_frames=9))
    odd = make_video(tmp_path / "odd.mp4", frames=2, height=34, width=48)
    with pytest.raises(ValueError, match="the input video is 48x34, not a multiple of 4 on each side"):
        animatediff_v2v.input_frames(pipe, small(odd, height=None, width=None))


def test_call_parameters_reach_the_pipeline_and_the_size_defaults_to_the_videos(pipe, clip):
    """Unset, the size is the video's (the pipeline's own default, its UNet's 32x32, would stretch the 96x64 clip)."""
    params = small(clip, height=None, width=None, negative_prompt="blurry", guidance_scale=4.0, strength=0.75,
                   num_frames=5, eta=0.5, decode_chunk_size=3)  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: animatediff_v2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    video = call.kwargs.pop("video")
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(f).tolist() for f in read_video(clip, 5)[0]]
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        height=64,
        width=96,
        num_inference_steps=4,
        guidance_scale=4.0,
        strength=0.75,
        eta=0.5,
        generator=generator,
        decode_chunk_size=3,
        output_type="latent",
    )


def test_strength_sets_the_steps_run_and_how_much_the_video_pins(pipe, clip, monkeypatch):
    """int(steps * strength) steps run; the lower the strength, the less the seed's noise moves the result."""
    calls = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))

    def render(strength: float, seed: int) -> np.ndarray:
        params = small(clip, guidance_scale=1.0, strength=strength)
        return animatediff_v2v.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(seed), "cpu").frames.astype(int)

    weak = render(0.25, 0)
    assert len(calls) == int(4 * 0.25)  # guidance off: one UNet call a step
    strong = render(1.0, 0)
    assert weak.shape == strong.shape == (8, 32, 48, 3)
    assert np.abs(weak - render(0.25, 1)).mean() < np.abs(strong - render(1.0, 1)).mean()


def test_the_tiny_manifest_chains_text_to_video_into_video_to_video(tmp_path):
    """The tiny example, job by job: tiny-animatediff's 8 frames, re-rendered by tiny-animatediff-v2v from their
    lossless copy."""
    path = REPO / "manifests" / "tiny" / "animatediff-v2v.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert (source.model, taker.model) == ("tiny-animatediff", "tiny-animatediff-v2v") and taker.depends_on == [source.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    assert '"lossless": true' in records[1]["chain_inputs_json"]
    frames, fps = read_mp4(run.out_root / job_video_path(taker.job_id))
    assert frames.shape == (8, 32, 48, 3) and fps == 10


def test_the_real_manifest_restates_the_docs():
    real = in_order(load_manifest(REPO / "manifests" / "animatediff-v2v.yaml", "cpu").jobs)
    assert [job.model for job in real] == ["animatediff-v1-5-2", "animatediff-v2v-v1-5-2"]
    params = real[1].params
    assert params["prompt"] == DOCS_PROMPT and params["negative_prompt"] == DOCS_NEGATIVE
    assert (params["guidance_scale"], params["num_inference_steps"], params["strength"]) == (7.5, 25, 0.5)
    assert real[1].seed == 42 and real[1].components == {"adapter": "guoyww/animatediff-motion-adapter-v1-5-2"}
