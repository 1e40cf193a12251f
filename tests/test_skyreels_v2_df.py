"""The SkyReels-V2 diffusion-forcing family on its tiny checkpoint: the contract (the docs page's asynchronous
recipe), long videos window by window (their global-RNG noise from the job's stream), the fps conditioning, the
causal block size a job leaves behind, and the schedules the pipeline would render wrong or fail on."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import ensure_built, folder_sha256, known_models, skyreels_v2_df
from videosweep.tasks.models.base import LoadOptions

from .family_contract import FamilyContract

PROMPT = "A rocket lifts off at dawn, smoke billowing"
DOCS_PROMPT = (
    "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is "
    "stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."
)
#: A long video: 17 frames in windows of 9 overlapping by 5 (5 latent frames, windows of 3 by 2: three windows).
LONG = dict(num_frames=17, base_num_frames=9, overlap_history=5, addnoise_condition=20.0)


class TestSkyReelsV2DFContract(FamilyContract):
    family = "skyreels-v2-df"
    not_call_parameters = {"flow_shift"}  # the docs' scheduler swap (wan.flow_shift)
    float32_by_docs = {"vae"}  # the docs' VAE in float32

    def row(self, inputs):
        return dict(prompt=PROMPT, negative_prompt="Static, blurred", height=32, width=32, num_frames=9,
                    base_num_frames=9, num_inference_steps=2, max_sequence_length=16, flow_shift=8.0)  # fmt: skip

    docs_fps = 24  # the docs' export_to_video(output, "video.mp4", fps=24, quality=8)

    def docs_row(self, inputs):
        return dict(prompt=DOCS_PROMPT, height=32, width=32, num_frames=37, base_num_frames=37, ar_step=5,
                    causal_block_size=5, addnoise_condition=20.0, flow_shift=8.0, num_inference_steps=2,
                    dtype="bfloat16")  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/skyreels_v2, "Text-to-Video Generation" (huggingface/diffusers
        docs/source/en/api/pipelines/skyreels_v2.md), as written, on the tiny checkpoint."""
        from diffusers import AutoModel, SkyReelsV2DiffusionForcingPipeline, UniPCMultistepScheduler

        model_id = str(folder)  # checkpoint path: the tiny folder, a str as a hub id is (AutoModel joins it)
        vae = AutoModel.from_pretrained(model_id, subfolder="vae", dtype=torch.float32)

        pipeline = SkyReelsV2DiffusionForcingPipeline.from_pretrained(
            model_id,
            vae=vae,
            dtype=torch.bfloat16,
        )
        # device: the docs' pipeline.to("cuda") is left out (CPU only)
        flow_shift = 8.0  # 8.0 for T2V, 5.0 for I2V
        pipeline.scheduler = UniPCMultistepScheduler.from_config(pipeline.scheduler.config, flow_shift=flow_shift)

        prompt = "A cat and a dog baking a cake together in a kitchen. The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon. The kitchen is cozy, with sunlight streaming through the window."

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipeline(
            prompt=prompt,
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps, 32 x 32, 37 frames in one window
            height=row["height"],  # (the docs: 30 steps, 544 x 960, 97 frames, base_num_frames=97)
            width=row["width"],
            num_frames=row["num_frames"],
            base_num_frames=row["base_num_frames"],
            ar_step=5,  # Controls asynchronous inference (0 for synchronous mode)
            causal_block_size=5,  # Number of frames in each block for asynchronous processing
            overlap_history=None,  # Number of frames to overlap for smooth transitions in long videos; 17 for long video generations
            addnoise_condition=20,  # Improves consistency in long video generation
        ).frames[0]
        # export_to_video(output, "video.mp4", fps=24, quality=8) converts the numpy frames so
        return np.stack([(frame * 255).astype(np.uint8) for frame in output])


@pytest.fixture(scope="module")
def tiny_skyreels_df() -> Path:
    ref = known_models()["tiny-skyreels-v2-df"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny_skyreels_df):
    return skyreels_v2_df.load(LoadOptions(str(tiny_skyreels_df), None, "float32", None), "cpu")


def small(**overrides) -> skyreels_v2_df.Params:
    values = dict(prompt=PROMPT, height=32, width=32, num_frames=9, base_num_frames=9, num_inference_steps=2,
                  max_sequence_length=16)  # fmt: skip
    return skyreels_v2_df.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return skyreels_v2_df.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-skyreels-v2-df", "seed": 0}, "rows": [row]}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    return str(caught.value)


def test_tiny_checkpoint_has_the_layout_of_the_conversion_script(tiny_skyreels_df: Path, tmp_path: Path):
    index = json.loads((tiny_skyreels_df / "model_index.json").read_text())
    assert index["_class_name"] == "SkyReelsV2DiffusionForcingPipeline"
    assert index["transformer"] == ["diffusers", "SkyReelsV2Transformer3DModel"]
    transformer = json.loads((tiny_skyreels_df / "transformer" / "config.json").read_text())
    assert transformer["inject_sample_info"] and transformer["num_frame_per_block"] == 1  # as the DF 1.3B's
    skyreels_v2_df.build_tiny(tmp_path / "again")  # the same bytes on every machine
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny_skyreels_df)


def test_a_long_video_is_the_docs_unseeded_call_and_one_stream(pipe):
    """Past base_num_frames the pipeline adds noise to the shared frames from torch's global RNG: drawn from the job's
    stream, the render is the docs' call after torch.manual_seed, and does not depend on the RNG's state."""
    params = small(**LONG, flow_shift=8.0)
    torch.manual_seed(5)
    ours = skyreels_v2_df.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(3), "cpu").frames
    assert ours.shape == (17, 32, 32, 3)
    torch.manual_seed(6)
    assert np.array_equal(ours, skyreels_v2_df.FAMILY.render_one(pipe, params, torch.Generator().manual_seed(3), "cpu").frames)

    with skyreels_v2_df.wan.flow_shift(pipe, 8.0):
        torch.manual_seed(3)
        video = pipe(prompt=PROMPT, height=32, width=32, num_inference_steps=2, max_sequence_length=16, **LONG).frames[0]
    assert np.array_equal(ours, (video * 255).astype(np.uint8))
    assert not np.array_equal(ours, frames(pipe, 3, **{**LONG, "addnoise_condition": 0.0}, flow_shift=8.0))


def test_fps_conditions_the_video_and_is_the_mp4s_rate(pipe):
    """The 1.3B DF model embeds fps 16 apart from every other rate (the tiny twin has its embedding)."""
    at_24 = skyreels_v2_df.FAMILY.render_one(pipe, small(), torch.Generator().manual_seed(0), "cpu")
    at_16 = skyreels_v2_df.FAMILY.render_one(pipe, small(fps=16), torch.Generator().manual_seed(0), "cpu")
    assert (at_24.fps, at_16.fps) == (24, 16)
    assert not np.array_equal(at_24.frames, at_16.frames)
    assert np.array_equal(at_24.frames, frames(pipe, fps=30))  # another rate, the same embedding


def test_a_jobs_causal_block_size_does_not_outlive_it(pipe):
    """The pipeline writes causal_block_size into the transformer's config; a cached pipeline gets its own back."""
    plain = frames(pipe)
    blocked = frames(pipe, num_frames=17, base_num_frames=17, causal_block_size=5, ar_step=1)
    assert blocked.shape == (17, 32, 32, 3)
    assert pipe.transformer.config.num_frame_per_block == 1
    assert np.array_equal(frames(pipe), plain)


def test_schedules_the_pipeline_would_render_wrong_or_fail_on_are_refused(pipe, tmp_path: Path):
    long = manifest_problems(tmp_path, prompt=PROMPT, num_frames=17, base_num_frames=9)
    assert "overlap_history" in long and "past base_num_frames=9" in long
    with pytest.raises(ValueError, match="overlap_history"):  # what the pipeline does: fails when the job runs
        pipe(prompt=PROMPT, height=32, width=32, num_frames=17, base_num_frames=9, num_inference_steps=1)
    assert "below base_num_frames=9" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=17, base_num_frames=9,
                                                          overlap_history=9)  # fmt: skip
    assert "num_frames=96" in manifest_problems(tmp_path, prompt=PROMPT, num_frames=96)
    # 9 frames are 3 latent frames: blocks of 2 leave the third as the noise it started as
    blocks = manifest_problems(tmp_path, prompt=PROMPT, num_frames=9, base_num_frames=9, causal_block_size=2)
    assert "causal_block_size" in blocks and "every window (3;" in blocks
    # long videos: every window counts (17 frames in windows of 9 by 5: 3, 3, 3 latent frames)
    assert skyreels_v2_df.windows(17, 9, 5) == [3, 3, 3] and skyreels_v2_df.windows(97, 97, None) == [25]
    assert "(3, 3, 3;" in manifest_problems(tmp_path, prompt=PROMPT, **LONG, causal_block_size=2)
    assert small(**LONG, causal_block_size=3).causal_block_size == 3
