"""Text2Video-Zero on its tiny SD 1.5: the contract, the t0/t1 rule, motion, scheduler, safety checker."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import folder_sha256, known_models, text2video_zero
from videosweep.tasks.models.base import LoadOptions

from .family_contract import FamilyContract

PROMPT = "A panda is playing guitar on times square"


class TestTextToVideoZeroContract(FamilyContract):
    family = "text2video-zero"

    def row(self, inputs):
        return dict(
            prompt=PROMPT,
            negative_prompt="blurry",
            video_length=4,
            height=32,
            width=48,
            num_inference_steps=2,
            motion_field_strength_x=128.0,
            motion_field_strength_y=-96.0,
            t0=0,
            t1=1,
        )

    def half_precision_row(self, inputs):
        # the motion field's defaults: bfloat16 moves the warp's nearest-neighbour sampling to other pixels, by
        # 5.2 levels on average at the row's 128/-96 (0.57 at the defaults; float16: 0.09 either way)
        return {key: value for key, value in self.row(inputs).items() if not key.startswith("motion_field")}

    docs_fps = 4  # the docs' imageio.mimsave("video.mp4", result, fps=4)

    def docs_row(self, inputs):
        # the docs' call sets only the prompt; the steps (and so t0 < t1 within them) and the size are the tiny run's
        return dict(prompt=PROMPT, video_length=4, height=32, width=48, num_inference_steps=2, t0=0, t1=1)

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/text_to_video_zero, "Text-To-Video", as written, on the tiny checkpoint."""
        import imageio  # noqa: F401  (the docs' writer; its frames are what this returns)
        from diffusers import TextToVideoZeroPipeline

        # checkpoint path: the tiny SD 1.5 folder; dtype: float32 (the docs: torch.float16); device: no .to("cuda")
        model_id = folder
        pipe = TextToVideoZeroPipeline.from_pretrained(model_id, torch_dtype=torch.float32)

        prompt = "A panda is playing guitar on times square"
        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        result = pipe(
            prompt=prompt,
            video_length=row["video_length"],  # sizes: the docs' 8 frames of 512 x 512, 50 steps with t0=44, t1=47
            height=row["height"],
            width=row["width"],
            num_inference_steps=row["num_inference_steps"],
            t0=row["t0"],
            t1=row["t1"],
        ).images
        result = [(r * 255).astype("uint8") for r in result]
        # imageio.mimsave("video.mp4", result, fps=4) writes these
        return np.stack(result)


@pytest.fixture(scope="module")
def tiny() -> Path:
    from videosweep.tasks.models import ensure_built

    ref = known_models()["tiny-text2video-zero"]
    ensure_built(ref)
    return Path(ref.source)


@pytest.fixture(scope="module")
def pipe(tiny: Path):
    return text2video_zero.load(LoadOptions(str(tiny), None, "float32", None), "cpu")


def small(**overrides) -> text2video_zero.Params:
    values = dict(prompt=PROMPT, video_length=4, height=32, width=32, num_inference_steps=2, t0=0, t1=1)
    return text2video_zero.Params(**{**values, **overrides})


def frames(pipe, seed: int = 0, **overrides) -> np.ndarray:
    return text2video_zero.FAMILY.render_one(pipe, small(**overrides), torch.Generator().manual_seed(seed), "cpu").frames


def manifest_problems(tmp_path: Path, **row) -> str:
    """The error load_manifest raises for one tiny row (fails the test if it raises none)."""
    path = tmp_path / "manifest.yaml"
    rows = {"model": "tiny-text2video-zero", "seed": 0, **row}
    path.write_text(yaml.safe_dump({"name": "t", "rows": [rows]}, sort_keys=False))
    with pytest.raises(ManifestError) as error:
        load_manifest(path, "cpu")
    return str(error.value)


# -- the checkpoint ------------------------------------------------------------------------------


def test_tiny_checkpoint_has_the_layout_of_the_real_sd15_repo(tiny: Path):
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "TextToVideoZeroPipeline"
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert index["feature_extractor"][1].startswith("CLIPImageProcessor")
    for weights in (
        "unet/diffusion_pytorch_model",
        "vae/diffusion_pytorch_model",
        "text_encoder/model",
        "safety_checker/model",
    ):
        assert (tiny / f"{weights}.safetensors").is_file()
        assert (tiny / f"{weights}.fp16.safetensors").is_file()
    scheduler = json.loads((tiny / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler" and scheduler["skip_prk_steps"] is True
    assert scheduler["clip_sample"] is False  # read by `scheduler: ddim`, as in the real config


def test_tiny_build_is_reproducible(tiny: Path, tmp_path: Path):
    """Same bytes on every machine, so job ids of tiny-model rows agree everywhere."""
    text2video_zero.build_tiny(tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(tiny)


def test_a_repo_saved_without_safety_checker_loads(pipe, tmp_path: Path):
    """Many SD 1.5 fine-tunes ship `safety_checker: [null, null]`; the plain recipe cannot load them."""
    from diffusers import TextToVideoZeroPipeline

    parts = {**pipe.components, "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    TextToVideoZeroPipeline(**parts).save_pretrained(tmp_path / "no-checker")
    with pytest.raises(ValueError, match="expected"):  # diffusers' own trap, the reason for _absent_parts
        TextToVideoZeroPipeline.from_pretrained(tmp_path / "no-checker")
    bare = text2video_zero.load(LoadOptions(str(tmp_path / "no-checker"), None, "float32", None), "cpu")
    assert bare.safety_checker is None
    assert np.array_equal(frames(bare), frames(pipe))  # the tiny checker flags nothing


# -- parameters, checked when the manifest is read -----------------------------------------------


def test_default_t0_t1_with_fewer_steps_are_refused_with_the_rule(tmp_path: Path):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_inference_steps=25)
    assert "t1=47" in message and "t0 < t1 < num_inference_steps" in message
    assert "t0=44, t1=47, num_inference_steps=25" in message and "for 50 steps" in message


@pytest.mark.parametrize("t0, t1", [(3, 3), (4, 2), (1, 10)])
def test_t0_t1_out_of_order_are_refused(tmp_path: Path, t0: int, t1: int):
    message = manifest_problems(tmp_path, prompt=PROMPT, num_inference_steps=10, t0=t0, t1=t1)
    assert f"t0={t0}, t1={t1}, num_inference_steps=10" in message


def test_t0_t1_within_the_steps_are_accepted():
    assert small(num_inference_steps=10, t0=0, t1=9).t1 == 9
    assert text2video_zero.Params(prompt=PROMPT).t1 == 47  # the defaults fit the default 50 steps


def test_prompt_is_required_and_size_must_be_a_multiple_of_8(tmp_path: Path):
    assert "missing 'prompt'" in manifest_problems(tmp_path, height=32, width=32)
    message = manifest_problems(tmp_path, prompt=PROMPT, height=36)
    assert "height=36" in message and "multiple of 8" in message


# -- rendering -----------------------------------------------------------------------------------


def test_render_shape_fps_timings_and_default_size(pipe):
    rendered = text2video_zero.FAMILY.render_one(pipe, small(video_length=3), torch.Generator().manual_seed(0), "cpu")
    assert rendered.frames.shape == (3, 32, 32, 3) and rendered.frames.dtype == np.uint8
    assert rendered.fps == 4  # the docs' imageio.mimsave(..., fps=4)
    assert rendered.denoise_s > 0 and rendered.decode_s > 0
    # unset height/width: the UNet's sample size x 8 (64 px for the tiny, 512 for SD 1.5)
    assert frames(pipe, height=None, width=None, video_length=2).shape == (2, 64, 64, 3)


def test_motion_field_moves_the_later_frames_only(pipe):
    """The first frame is denoised alone and attends to itself; the others are its warped copies."""
    still = frames(pipe, motion_field_strength_x=0.0, motion_field_strength_y=0.0)
    moving = frames(pipe, motion_field_strength_x=64.0, motion_field_strength_y=0.0)
    assert np.array_equal(still[0], moving[0])
    assert not np.array_equal(still[1:], moving[1:])


def test_scheduler_ddim_is_the_pipelines_own_test_setup(tmp_path: Path, tiny: Path, pipe):
    """`scheduler: ddim` renders what diffusers' test of this pipeline does: DDIMScheduler.from_config."""
    from diffusers import DDIMScheduler, TextToVideoZeroPipeline

    from videosweep.tasks.render import pipeline_cache
    from videosweep.tasks.pipeline_setup import prepare_job

    path = tmp_path / "manifest.yaml"
    row = dict(small().model_dump(), model="tiny-text2video-zero", seed=5, scheduler="ddim", eta=0.0)
    path.write_text(yaml.safe_dump({"name": "t", "rows": [row]}, sort_keys=False))
    (job,) = load_manifest(path, "cpu").jobs
    cached, baseline, _, _ = pipeline_cache().get(job, "cpu", "ddim-test")
    prepare_job(cached, job.options, baseline)
    assert type(cached.scheduler).__name__ == "DDIMScheduler" and cached.scheduler.config.clip_sample is False
    ours = text2video_zero.FAMILY.render_one(cached, job.typed_params(), torch.Generator().manual_seed(5), "cpu").frames

    theirs = TextToVideoZeroPipeline.from_pretrained(tiny, torch_dtype=torch.float32)
    theirs.scheduler = DDIMScheduler.from_config(theirs.scheduler.config)
    call = small().model_dump()
    expected = theirs(generator=torch.Generator().manual_seed(5), **call).images
    assert np.array_equal(ours, (expected * 255).astype(np.uint8))  # converted as the docs convert (truncated)
    assert not np.array_equal(ours, frames(pipe, 5))  # the repo's PNDM renders something else


def test_safety_checker_runs_on_our_decode(tiny: Path):
    """Flagged frames come out black, as from the pipeline's own decode: the checker is not skipped."""
    flagging = text2video_zero.load(LoadOptions(str(tiny), None, "float32", None), "cpu")
    with torch.no_grad():  # thresholds below any score: every frame is flagged
        flagging.safety_checker.concept_embeds_weights.fill_(-2.0)
    out = frames(flagging)
    assert out.shape == (4, 32, 32, 3) and not out.any()
    call = small().model_dump()
    assert all(flagging(generator=torch.Generator().manual_seed(0), **call).nsfw_content_detected)
