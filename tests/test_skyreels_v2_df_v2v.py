"""The SkyReels-V2 diffusion-forcing video-to-video family (video extension) on the diffusion-forcing tiny checkpoint:
the contract (the docs page's recipe), what the output holds, the history rules, and chaining after a text-to-video
diffusion-forcing row."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, skyreels_v2_df_v2v
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.plan import in_order
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4, read_video

from .conftest import REPO, make_video, pipeline_call
from .family_contract import FamilyContract

PROMPT = "The camera keeps panning across the launch site"
DOCS_PROMPT = (
    "CG animation style, a small blue bird takes off from the ground, flapping its wings. The bird's feathers are "
    "delicate, with a unique pattern on its chest. The background shows a blue sky with white clouds under bright "
    "sunshine. The camera follows the bird upward, capturing its flight and the vastness of the sky from a close-up, "
    "low-angle perspective."
)


def clip9(inputs: Path) -> Path:
    path = inputs / "clip9.mp4"
    if not path.exists():
        make_video(path, frames=9)
    return path


class TestSkyReelsV2DFV2VContract(FamilyContract):
    family = "skyreels-v2-df-v2v"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32
    defaults_differ = {"num_frames"}  # the pipeline's 120 is rounded by it to 121, this family's default

    def row(self, inputs):
        # 9 frames after the clip's 9, its last 5 the history; addnoise_condition: the global RNG's noise on them
        return dict(video=str(clip9(inputs)), prompt=PROMPT, negative_prompt="Static, blurred", height=32, width=32,
                    num_frames=9, base_num_frames=9, overlap_history=5, addnoise_condition=20.0, num_inference_steps=2,
                    max_sequence_length=16, flow_shift=5.0)  # fmt: skip

    docs_fps = 24  # the docs' export_to_video(output, "video.mp4", fps=24, quality=8)

    def docs_row(self, inputs):
        return dict(video=str(clip9(inputs)), prompt=DOCS_PROMPT, height=32, width=32, guidance_scale=5.0,
                    overlap_history=5, num_inference_steps=2, num_frames=17, base_num_frames=9, flow_shift=5.0,
                    dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/skyreels_v2, "Video-to-Video Generation" (huggingface/diffusers
        docs/source/en/api/pipelines/skyreels_v2.md), as written, on the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, SkyReelsV2DiffusionForcingVideoToVideoPipeline, UniPCMultistepScheduler
        from diffusers.utils import load_video

        model_id = folder  # checkpoint path: the tiny folder (the docs: "Skywork/SkyReels-V2-DF-14B-720P-Diffusers")
        # device: the docs' device_map="cuda" is left out (CPU only)
        vae = AutoencoderKLWan.from_pretrained(model_id, subfolder="vae", torch_dtype=torch.float32)
        pipeline = SkyReelsV2DiffusionForcingVideoToVideoPipeline.from_pretrained(
            model_id, vae=vae, torch_dtype=torch.bfloat16
        )
        flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
        pipeline.scheduler = UniPCMultistepScheduler.from_config(pipeline.scheduler.config, flow_shift=flow_shift)

        video = load_video(row["video"])  # path: the row's 9-frame clip (the docs: "input_video.mp4")

        prompt = "CG animation style, a small blue bird takes off from the ground, flapping its wings. The bird's feathers are delicate, with a unique pattern on its chest. The background shows a blue sky with white clouds under bright sunshine. The camera follows the bird upward, capturing its flight and the vastness of the sky from a close-up, low-angle perspective."

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        # sizes: 32 x 32, history 5, 2 steps, 17 frames in windows of 9 (the docs: 720 x 1280, 17, 30, 257, 121)
        output = pipeline(
            video=video, prompt=prompt, height=row["height"], width=row["width"], guidance_scale=5.0,
            overlap_history=row["overlap_history"], num_inference_steps=row["num_inference_steps"],
            num_frames=row["num_frames"], base_num_frames=row["base_num_frames"],
        ).frames[0]  # fmt: skip
        # export_to_video(output, "video.mp4", fps=24, quality=8) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-skyreels-v2-df-v2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return skyreels_v2_df_v2v.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clip9(tmp_path_factory.mktemp("clip"))


def small(clip: Path, **overrides) -> skyreels_v2_df_v2v.Params:
    values = dict(video=clip, prompt=PROMPT, height=32, width=32, num_frames=9, base_num_frames=9, overlap_history=5,
                  num_inference_steps=2, max_sequence_length=16)  # fmt: skip
    return skyreels_v2_df_v2v.Params(**{**values, **overrides})


def problems(tmp_path: Path, **row) -> str:
    make_video(tmp_path / "clip.mp4")
    path = tmp_path / "m.yaml"
    row = {"video": "clip.mp4", "prompt": PROMPT, **row}
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-skyreels-v2-df-v2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_diffusion_forcing_tiny_checkpoint_and_loads_it_as_video_to_video(tiny: Path, pipe):
    assert tiny == Path(known_models()["tiny-skyreels-v2-df"].source)
    assert type(pipe).__name__ == "SkyReelsV2DiffusionForcingVideoToVideoPipeline" and pipe.vae.dtype == torch.float32
    key = known_models()["skyreels-v2-df-v2v-1.3b-540p"]
    assert (key.source, key.variant) == ("Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers", "none")


def test_the_output_is_the_video_then_num_frames_more(pipe, clip):
    """The clip's 9 frames as the pipeline resized them, then 9 generated (the first 5 re-rendering its last 5)."""
    rendered = skyreels_v2_df_v2v.FAMILY.render_one(pipe, small(clip), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (18, 32, 32, 3) and rendered.fps == 24
    video, _ = read_video(clip)
    resized = pipe.video_processor.postprocess_video(pipe.video_processor.preprocess_video(video, 32, 32), "np")[0]
    assert np.array_equal(rendered.frames[:9], (resized * 255).astype(np.uint8))


def test_call_parameters_reach_the_pipeline(pipe, clip):
    params = small(clip, negative_prompt="blurry", guidance_scale=4.0, num_frames=13, base_num_frames=13,
                   causal_block_size=2, ar_step=1, addnoise_condition=20.0, fps=16, flow_shift=7.0)  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: skyreels_v2_df_v2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 7.0
    video = call.kwargs.pop("video")
    assert [np.asarray(frame).tolist() for frame in video] == [np.asarray(f).tolist() for f in read_video(clip)[0]]
    assert call.kwargs.pop("generator") is torch.random.default_generator
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=32, num_frames=13, num_inference_steps=2,
        guidance_scale=4.0, max_sequence_length=16, overlap_history=5, addnoise_condition=20.0, base_num_frames=13,
        ar_step=1, causal_block_size=2, fps=16, output_type="latent",
    )  # fmt: skip


def test_histories_the_pipeline_would_fail_on_or_cut_are_refused(tmp_path: Path, pipe, clip):
    assert "missing 'overlap_history'" in problems(tmp_path, num_frames=9)
    with pytest.raises(TypeError):  # what the pipeline does without one: fails when the job runs
        pipe(video=read_video(clip)[0], prompt=PROMPT, height=32, width=32, num_frames=9, num_inference_steps=1)
    assert "overlap_history=6" in problems(tmp_path, num_frames=9, base_num_frames=9, overlap_history=6)  # not 4k+1
    assert "must be below num_frames=9" in problems(tmp_path, num_frames=9, base_num_frames=17, overlap_history=9)
    assert "must be below base_num_frames=9" in problems(tmp_path, num_frames=17, base_num_frames=9, overlap_history=9)
    assert "num_frames=120" in problems(tmp_path, num_frames=120, overlap_history=17)  # the pipeline's own default
    # 9 frames of history are 3 latent frames: blocks of 2 would cut it to 2
    blocks = problems(tmp_path, num_frames=17, base_num_frames=17, overlap_history=9, causal_block_size=2)
    assert "history's 3 latent frames" in blocks
    windows = problems(tmp_path, num_frames=17, base_num_frames=17, overlap_history=5, causal_block_size=2)
    assert "every window (5;" in windows
    with pytest.raises(ValueError, match="has 9 frames, fewer than overlap_history=13"):
        skyreels_v2_df_v2v.input_frames(small(clip, num_frames=17, base_num_frames=17, overlap_history=13))


def test_a_long_extension_goes_window_by_window_from_the_jobs_stream(pipe, clip):
    long = dict(num_frames=17, base_num_frames=9, overlap_history=5, addnoise_condition=20.0)
    torch.manual_seed(5)
    ours = skyreels_v2_df_v2v.FAMILY.render_one(pipe, small(clip, **long), torch.Generator().manual_seed(3), "cpu").frames
    assert ours.shape == (9 + 17, 32, 32, 3)
    torch.manual_seed(6)
    again = skyreels_v2_df_v2v.FAMILY.render_one(pipe, small(clip, **long), torch.Generator().manual_seed(3), "cpu").frames
    assert np.array_equal(ours, again)


def test_the_tiny_manifest_chains_text_to_video_into_an_extension(tmp_path: Path):
    """The tiny example, job by job: tiny-skyreels-v2-df's 9 frames, extended by 9 from their lossless copy."""
    path = REPO / "manifests" / "tiny" / "skyreels-v2-df-v2v.yaml"
    source, taker = in_order(load_manifest(path, "cpu").jobs)
    assert (source.model, taker.model) == ("tiny-skyreels-v2-df", "tiny-skyreels-v2-df-v2v")
    assert taker.depends_on == [source.job_id]
    run = RunContext("chain", tmp_path / "out", "cpu", "chain", str(path), "-")
    records = [render_job(job, run) for job in (source, taker)]
    assert [record["status"] for record in records] == ["ok", "ok"], [record["error"] for record in records]
    assert '"lossless": true' in records[1]["chain_inputs_json"]
    first, _ = read_mp4(run.out_root / job_video_path(source.job_id))
    frames, fps = read_mp4(run.out_root / job_video_path(taker.job_id))
    assert first.shape == (9, 32, 48, 3) and frames.shape == (9 + 9, 32, 48, 3) and fps == 24


def test_the_real_manifest_restates_the_docs():
    source, taker = in_order(load_manifest(REPO / "manifests" / "skyreels-v2-df-v2v.yaml", "cpu").jobs)
    assert (source.model, taker.model) == ("skyreels-v2-df-14b-720p", "skyreels-v2-df-v2v-14b-720p")
    params = taker.params
    assert taker.depends_on == [source.job_id] and params["prompt"] == DOCS_PROMPT
    assert (params["height"], params["width"], params["guidance_scale"], params["flow_shift"]) == (720, 1280, 5.0, 5.0)
    shape = (params["overlap_history"], params["num_inference_steps"], params["num_frames"], params["base_num_frames"])
    assert shape == (17, 30, 257, 121)
