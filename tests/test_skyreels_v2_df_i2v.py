"""The SkyReels-V2 diffusion-forcing image-to-video family on the diffusion-forcing tiny checkpoint: the contract (the
docstring's recipe), the image's frame held clean (blocks of one only), the last image, long videos, the tiny
manifest end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, known_models, skyreels_v2_df, skyreels_v2_df_i2v
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4

from .conftest import REPO, ROCKET, pipeline_call
from .family_contract import FamilyContract

PROMPT = "The rocket lifts off, smoke and steam billowing as it climbs"
DOCS_PROMPT = (
    "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is "
    "stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
)


class TestSkyReelsV2DFI2VContract(FamilyContract):
    family = "skyreels-v2-df-i2v"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docs' AutoencoderKLWan in float32

    def row(self, inputs):
        # addnoise_condition: noise on the image's frame from torch's global RNG, in every video
        return dict(image=str(inputs / "rocket.png"), prompt=PROMPT, negative_prompt="Static, blurred", height=32,
                    width=32, num_frames=9, base_num_frames=9, num_inference_steps=2, max_sequence_length=16,
                    addnoise_condition=20.0, flow_shift=5.0)  # fmt: skip

    docs_fps = 24  # the docstring's export_to_video(output, "video.mp4", fps=24, quality=8)

    def docs_row(self, inputs):
        return dict(image=str(inputs / "rocket.png"), prompt=DOCS_PROMPT, num_inference_steps=2, height=32, width=32,
                    guidance_scale=5.0, num_frames=9, ar_step=0, addnoise_condition=20.0, flow_shift=5.0,
                    dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """The ``SkyReelsV2DiffusionForcingImageToVideoPipeline`` docstring's example (diffusers 0.42.1), as written, on
        the tiny checkpoint."""
        from diffusers import AutoencoderKLWan, SkyReelsV2DiffusionForcingImageToVideoPipeline, UniPCMultistepScheduler
        from PIL import Image

        # checkpoint path: the tiny folder (the docs: "Skywork/SkyReels-V2-DF-14B-720P-Diffusers")
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
        pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline.from_pretrained(folder, vae=vae, torch_dtype=torch.bfloat16)
        flow_shift = 5.0  # 8.0 for T2V, 5.0 for I2V
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
        # device: the docs' pipe.to("cuda") is left out (CPU only)

        prompt = "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
        image = Image.open(row["image"])  # path: the row's image for the docs' "path/to/image.png"

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            image=image,
            prompt=prompt,
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps, 32 x 32, 9 frames (the docs: 50, 544 x 960, 97)
            height=row["height"],
            width=row["width"],
            guidance_scale=5.0,  # 6.0 for T2V, 5.0 for I2V
            num_frames=row["num_frames"],
            ar_step=0,  # Controls asynchronous inference (0 for synchronous mode)
            overlap_history=None,  # Number of frames to overlap for smooth transitions in long videos
            addnoise_condition=20,  # Improves consistency in long video generation
        ).frames[0]
        # export_to_video(output, "video.mp4", fps=24, quality=8) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny() -> Path:
    ref = known_models()["tiny-skyreels-v2-df-i2v"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny):
    return skyreels_v2_df_i2v.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


def small(**overrides) -> skyreels_v2_df_i2v.Params:
    values = dict(image=ROCKET, prompt=PROMPT, height=32, width=32, num_frames=9, base_num_frames=9,
                  num_inference_steps=2, max_sequence_length=16)  # fmt: skip
    return skyreels_v2_df_i2v.Params(**{**values, **overrides})


def render(pipe, seed: int = 0, **overrides):
    return skyreels_v2_df_i2v.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu")


def problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-skyreels-v2-df-i2v", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_shares_the_diffusion_forcing_tiny_checkpoint_and_loads_it_as_image_to_video(tiny: Path, pipe):
    assert tiny == Path(known_models()["tiny-skyreels-v2-df"].source)
    assert type(pipe).__name__ == "SkyReelsV2DiffusionForcingImageToVideoPipeline" and pipe.vae.dtype == torch.float32
    key = known_models()["skyreels-v2-df-i2v-14b-720p"]
    assert (key.source, key.variant, key.family) == ("Skywork/SkyReels-V2-DF-14B-720P-Diffusers", "none", "skyreels-v2-df-i2v")


def test_image_and_prompt_are_required(tmp_path: Path):
    message = problems(tmp_path, height=32, width=32)
    assert "missing 'image'" in message and "image-to-video" in message and "missing 'prompt'" in message


def test_call_parameters_reach_the_pipeline(pipe):
    """Each parameter reaches the call as itself; the images as loaded (the pipeline resizes them), the job's
    generator as torch's global one, the row's flow_shift in the scheduler it runs."""
    from diffusers.utils import load_image

    params = small(negative_prompt="blurry", guidance_scale=4.0, ar_step=2, addnoise_condition=20.0, fps=16,
                   last_image=ROCKET, flow_shift=7.0)  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    call = pipeline_call(pipe, lambda: skyreels_v2_df_i2v.FAMILY.render_one(pipe, params, generator, "cpu"))
    assert call.scheduler.config.flow_shift == 7.0
    for name in ("image", "last_image"):
        assert np.array_equal(np.asarray(call.kwargs.pop(name)), np.asarray(load_image(str(ROCKET))))
    assert call.kwargs.pop("generator") is torch.random.default_generator
    assert call.args == () and call.kwargs == dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=32, num_frames=9, num_inference_steps=2,
        guidance_scale=4.0, max_sequence_length=16, overlap_history=None, addnoise_condition=20.0, base_num_frames=9,
        ar_step=2, causal_block_size=None, fps=16, output_type="latent",
    )  # fmt: skip


def test_blocks_of_more_than_one_frame_are_refused_they_lose_the_image(pipe, tmp_path: Path):
    """The pipeline holds the image's latent frame clean in whole blocks only: with blocks of 5 it denoises it from
    full noise like the others (what two seeds show: the first latent frame differs), with blocks of 1 it keeps it."""
    from PIL import Image

    kwargs = dict(image=Image.open(ROCKET).convert("RGB"), prompt=PROMPT, height=32, width=32, num_frames=17,
                  base_num_frames=17, num_inference_steps=2, max_sequence_length=16, output_type="latent")  # fmt: skip
    first = {}
    for block in (1, 5):
        with skyreels_v2_df.loaded_blocks(pipe.transformer):
            first[block] = [pipe(**kwargs, causal_block_size=block, generator=torch.Generator().manual_seed(seed)).frames[:, :, 0]
                            for seed in (0, 1)]  # fmt: skip
    assert torch.equal(first[1][0], first[1][1]), "blocks of one: the image's frame, whatever the seed"
    assert not torch.equal(first[5][0], first[5][1]), "blocks of five: the image's frame denoised from noise"
    message = problems(tmp_path, image=str(ROCKET), prompt=PROMPT, num_frames=17, base_num_frames=17, causal_block_size=5)
    assert "causal_block_size" in message and "must be 1 for image-to-video" in message
    assert small(ar_step=3, causal_block_size=1).causal_block_size == 1


def test_a_last_image_leads_the_video_in_one_window_only(pipe, tmp_path: Path):
    plain, led = render(pipe), render(pipe, last_image=ROCKET)
    assert led.frames.shape == plain.frames.shape == (9, 32, 32, 3)  # its latent frame dropped before the decode
    assert not np.array_equal(led.frames, plain.frames)
    message = problems(tmp_path, image=str(ROCKET), prompt=PROMPT, last_image=str(ROCKET), num_frames=17,
                       base_num_frames=9, overlap_history=5)  # fmt: skip
    assert "last_image" in message and "past base_num_frames=9" in message


def test_text_to_video_diffusion_forcings_rules_hold(tmp_path: Path):
    row = dict(image=str(ROCKET), prompt=PROMPT)
    assert "num_frames=96" in problems(tmp_path, **row, num_frames=96)
    assert "set overlap_history" in problems(tmp_path, **row, num_frames=17, base_num_frames=9)


def test_a_long_video_goes_window_by_window_from_the_jobs_stream(pipe):
    """17 frames in windows of 9 overlapping by 5: the noise added to the shared frames comes from the job's stream,
    whatever torch's global RNG holds."""
    long = dict(num_frames=17, base_num_frames=9, overlap_history=5, addnoise_condition=20.0)
    torch.manual_seed(5)
    ours = render(pipe, 3, **long).frames
    assert ours.shape == (17, 32, 32, 3)
    torch.manual_seed(6)
    assert np.array_equal(ours, render(pipe, 3, **long).frames)


def test_the_tiny_manifest_renders_end_to_end(tmp_path: Path):
    path = REPO / "manifests" / "tiny" / "skyreels-v2-df-i2v.yaml"
    jobs = load_manifest(path, "cpu").jobs
    run = RunContext("tiny", tmp_path / "out", "cpu", "tiny", str(path), "-")
    records = [render_job(job, run) for job in jobs]
    assert [record["status"] for record in records] == ["ok"] * len(jobs), [record["error"] for record in records]
    shapes = [read_mp4(run.out_root / job_video_path(job.job_id)) for job in jobs]
    assert [(frames.shape, fps) for frames, fps in shapes] == [((9, 32, 48, 3), 24), ((17, 32, 48, 3), 24)]


def test_the_real_manifest_restates_the_docstring():
    (job,) = load_manifest(REPO / "manifests" / "skyreels-v2-df-i2v.yaml", "cpu").jobs
    assert job.model == "skyreels-v2-df-i2v-14b-720p"
    params = job.typed_params()
    assert (params.prompt, params.height, params.width, params.num_frames) == (DOCS_PROMPT, 544, 960, 97)
    assert (params.guidance_scale, params.ar_step, params.overlap_history, params.addnoise_condition) == (5.0, 0, None, 20)
    assert (params.flow_shift, params.num_inference_steps) == (5.0, 50)
