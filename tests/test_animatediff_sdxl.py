"""The AnimateDiff SDXL family on its tiny checkpoints: an SDXL base and an SDXL motion adapter in its own folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videosweep.tasks.jobs import job_video_path
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import animatediff_sdxl, ensure_built, folder_sha256, known_models
from videosweep.tasks.models.base import LoadOptions
from videosweep.tasks.render import RunContext, render_job
from videosweep.tasks.video import read_mp4

from .conftest import REPO, pipeline_call
from .family_contract import FamilyContract

PROMPT = "a panda surfing in the ocean, realistic, high quality"
NEGATIVE = "low quality, worst quality"


@pytest.fixture(scope="module", autouse=True)
def built():
    """The tiny checkpoints exist before a manifest names them (see test_animatediff.built)."""
    ensure_built(known_models()["tiny-animatediff-sdxl"])


class TestAnimateDiffSDXLContract(FamilyContract):
    family = "animatediff-sdxl"

    def row(self, inputs):
        # 3 steps: with 2 (t = 999, then near 0) the deep-cache check's reused last call barely moves a pixel
        return dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=48, num_frames=8, num_inference_steps=3)

    def half_precision_row(self, inputs):
        # smaller: the CPU's half-precision kernels are slow
        return {**self.row(inputs), "num_frames": 2, "height": 32, "width": 32}

    def other_video(self, inputs):
        return {"prompt": "a boat at sea, in the style of an oil painting"}

    docs_fps = 10  # the docs' export_to_gif(frames, "animation.gif") writes at its default, 10 fps

    def docs_row(self, inputs):
        return dict(
            prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=2, guidance_scale=8, width=48, height=32,
            num_frames=8,
        )  # fmt: skip

    def docs_recipe(self, folder, components, row, seed):
        """api/pipelines/animatediff, "AnimateDiffSDXLPipeline" (diffusers 0.42.1's docs), as written, on the tiny
        checkpoints."""
        from diffusers import AnimateDiffSDXLPipeline, DDIMScheduler, UNet2DConditionModel
        from diffusers.models import MotionAdapter

        # checkpoint path: the tiny SDXL adapter (the docs: guoyww/animatediff-motion-adapter-sdxl-beta);
        # dtype: float32 (the docs: torch.float16)
        adapter = MotionAdapter.from_pretrained(components["adapter"], dtype=torch.float32)

        model_id = folder  # checkpoint path: the tiny SDXL folder (the docs: stabilityai/stable-diffusion-xl-base-1.0)
        scheduler = DDIMScheduler.from_pretrained(
            model_id,
            subfolder="scheduler",
            clip_sample=False,
            timestep_spacing="linspace",
            beta_schedule="linear",
            steps_offset=1,
        )
        pipe = AnimateDiffSDXLPipeline.from_pretrained(
            model_id,
            motion_adapter=adapter,
            scheduler=scheduler,
            dtype=torch.float32,  # dtype: float32 and its weight files, no variant (the docs: torch.float16, "fp16")
        )  # device: the docs' .to("cuda") is left out (CPU only)
        # a diffusers bug, fixed as the family fixes it: the motion UNet's SDXL add_embedding is left at random
        # init by UNetMotionModel.from_unet2d (diffusers 0.42.1); the base UNet's weights are copied in
        pipe.unet.add_embedding.load_state_dict(
            UNet2DConditionModel.from_pretrained(model_id, subfolder="unet").add_embedding.state_dict()
        )

        # enable memory savings
        pipe.vae.enable_slicing()
        pipe.vae.enable_tiling()

        torch.manual_seed(seed)  # the docs pass no generator: their call draws from torch's global RNG, seeded here
        output = pipe(
            prompt="a panda surfing in the ocean, realistic, high quality",
            negative_prompt="low quality, worst quality",
            num_inference_steps=row["num_inference_steps"],  # sizes: 2 steps, 48 x 32, 8 frames (the docs: 20, 1024 x 1024, 16)
            guidance_scale=8,
            width=row["width"],
            height=row["height"],
            num_frames=row["num_frames"],
        )

        frames = output.frames[0]
        # export_to_gif(frames, "animation.gif") receives these PIL frames
        return np.stack([np.array(frame) for frame in frames])


@pytest.fixture(scope="module")
def tiny(built) -> tuple[Path, Path]:
    ref = known_models()["tiny-animatediff-sdxl"]
    return Path(ref.source), Path(dict(ref.components)["adapter"])


@pytest.fixture(scope="module")
def pipe(tiny):
    base, adapter = tiny
    return animatediff_sdxl.load(LoadOptions(str(base), None, "float32", None, (("adapter", str(adapter), None),)), "cpu")


def small(**overrides) -> animatediff_sdxl.Params:
    values = dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=48, num_frames=4, num_inference_steps=2)
    return animatediff_sdxl.Params(**{**values, **overrides})


def test_tiny_checkpoints_have_the_layout_of_the_real_repos(tiny, tmp_path):
    base, adapter = tiny
    index = json.loads((base / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline" and index["force_zeros_for_empty_prompt"] is True
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    scheduler = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerDiscreteScheduler"  # the SDXL base's own, which the docs replace
    unet = json.loads((base / "unet" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text_time" and unet["cross_attention_dim"] == 64  # both encoders' states
    vae = json.loads((base / "vae" / "config.json").read_text())
    assert vae["force_upcast"] is True and vae["scaling_factor"] == 0.13025
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder_2/model"):
        assert (base / f"{weights}.fp16.safetensors").is_file(), "the docs load variant='fp16'"
    config = json.loads((adapter / "config.json").read_text())
    assert config["use_motion_mid_block"] is False and config["motion_max_seq_length"] == 32
    assert not list(adapter.glob("*.fp16.*")), "the docs load adapters without a variant"
    # the same bytes on every machine, so job ids of tiny rows agree everywhere
    animatediff_sdxl.build_tiny(tmp_path / "base")
    animatediff_sdxl.build_tiny_adapter(tmp_path / "adapter")
    assert folder_sha256(tmp_path / "base") == folder_sha256(base)
    assert folder_sha256(tmp_path / "adapter") == folder_sha256(adapter)


def test_load_follows_the_docs(pipe, tiny):
    from diffusers import DDIMScheduler, MotionAdapter, UNetMotionModel

    assert isinstance(pipe.scheduler, DDIMScheduler)
    config = pipe.scheduler.config
    assert (config.clip_sample, config.timestep_spacing, config.beta_schedule, config.steps_offset) == (
        False, "linspace", "linear", 1,
    )  # fmt: skip
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert isinstance(pipe.unet, UNetMotionModel)
    adapter = MotionAdapter.from_pretrained(tiny[1])
    ours = pipe.unet.down_blocks[1].motion_modules.state_dict()
    theirs = adapter.down_blocks[1].motion_modules.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_motion_unet_holds_every_weight_of_the_base_unet(pipe, tiny):
    """Loads are deterministic and the SDXL added-condition embedding is the base's (the pipeline's own build leaves
    it at a fresh random init: two docs loads differ)."""
    from diffusers import AnimateDiffSDXLPipeline, MotionAdapter, UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(tiny[0], subfolder="unet").state_dict()
    ours = pipe.unet.state_dict()
    assert all(torch.equal(ours[key], value) for key, value in base.items() if key in ours)
    assert {key for key in base if key.startswith("add_embedding")} <= set(ours)
    adapter = MotionAdapter.from_pretrained(tiny[1])
    docs = [AnimateDiffSDXLPipeline.from_pretrained(tiny[0], motion_adapter=adapter).unet for _ in range(2)]
    if torch.equal(docs[0].add_embedding.linear_1.weight, docs[1].add_embedding.linear_1.weight):
        pytest.fail("diffusers now loads add_embedding itself: drop the copy in animatediff_sdxl.load and this check")


def test_bad_rows_are_refused_at_once(tmp_path):
    path = tmp_path / "manifest.yaml"
    rows = [{"num_frames": 8}, {"prompt": "a panda", "num_frames": 33, "height": 36, "clip_skip": 2}]
    path.write_text(yaml.safe_dump({"defaults": {"model": "tiny-animatediff-sdxl", "seed": 1}, "rows": rows}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, "cpu")
    message = str(caught.value)
    assert "missing 'prompt'" in message
    assert "num_frames=33" in message and "32" in message
    assert "height=36" in message and "multiple of 8" in message
    assert "unknown key 'clip_skip'" in message


def test_more_frames_than_a_swapped_adapter_holds_are_refused_before_the_call(tiny, tmp_path):
    """An adapter with 8 temporal positions: 9 frames would fail inside the UNet; refused with the limit named."""
    from diffusers import MotionAdapter

    short = MotionAdapter.from_config({**MotionAdapter.load_config(tiny[1]), "motion_max_seq_length": 8})
    short.save_pretrained(tmp_path / "short")
    options = LoadOptions(str(tiny[0]), None, "float32", None, (("adapter", str(tmp_path / "short"), None),))
    pipe = animatediff_sdxl.load(options, "cpu")
    with pytest.raises(ValueError, match="num_frames=9, but this motion adapter holds at most 8 frames"):
        animatediff_sdxl.FAMILY.render_one(pipe, small(num_frames=9), torch.Generator().manual_seed(0), "cpu")
    assert animatediff_sdxl.FAMILY.render_one(pipe, small(num_frames=8), torch.Generator().manual_seed(0), "cpu")


def test_call_parameters_reach_the_pipeline_and_an_unset_negative_prompt_stays_unset(pipe):
    """SDXL guides away from zero embeddings where the negative prompt is None, from the encoded "" otherwise: an
    unset one must reach the pipeline as None, not as the empty prompt the SD 1.5 families send."""
    generators = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)]
    params = [small(prompt="a boat", negative_prompt=None, guidance_rescale=0.7, eta=0.5), small(negative_prompt=None)]
    call = pipeline_call(pipe, lambda: animatediff_sdxl.FAMILY.render(pipe, params, generators, "cpu"))
    assert call.args == () and call.kwargs == dict(
        prompt=["a boat", PROMPT],
        negative_prompt=None,
        height=32,
        width=48,
        num_frames=4,
        num_inference_steps=2,
        guidance_scale=5.0,
        guidance_rescale=0.7,
        eta=0.5,
        generator=generators,
        output_type="latent",
    )
    call = pipeline_call(pipe, lambda: animatediff_sdxl.FAMILY.render(pipe, [small()], generators[:1], "cpu"))
    assert call.kwargs["negative_prompt"] == [NEGATIVE]
    empty = animatediff_sdxl.FAMILY.render_one(pipe, small(negative_prompt=""), torch.Generator().manual_seed(0), "cpu")
    unset = animatediff_sdxl.FAMILY.render_one(pipe, small(negative_prompt=None), torch.Generator().manual_seed(0), "cpu")
    assert np.abs(empty.frames.astype(int) - unset.frames.astype(int)).max() > 8, "zeros and '' guide apart"


def test_the_size_defaults_to_the_unets(pipe):
    rendered = animatediff_sdxl.FAMILY.render_one(
        pipe, small(height=None, width=None, num_frames=2), torch.Generator().manual_seed(0), "cpu"
    )
    assert rendered.frames.shape == (2, 64, 64, 3)  # sample_size 16 x VAE scale factor 4
    assert rendered.fps == 10 and rendered.denoise_s > 0 and rendered.decode_s > 0


def test_the_tiny_manifest_renders_end_to_end(tmp_path):
    path = REPO / "manifests" / "tiny" / "animatediff-sdxl.yaml"
    jobs = load_manifest(path, "cpu").jobs
    assert [job.model for job in jobs] == ["tiny-animatediff-sdxl"]
    run = RunContext("tiny", tmp_path / "out", "cpu", "tiny", str(path), "-")
    (record,) = [render_job(job, run) for job in jobs]
    assert record["status"] == "ok", record["error"]
    frames, fps = read_mp4(run.out_root / job_video_path(jobs[0].job_id))
    assert frames.shape == (8, 32, 48, 3) and fps == 10


def test_the_real_manifest_restates_the_docs():
    (job,) = load_manifest(REPO / "manifests" / "animatediff-sdxl.yaml", "cpu").jobs
    assert job.model == "animatediff-sdxl-beta" and job.components == {
        "adapter": "guoyww/animatediff-motion-adapter-sdxl-beta"
    }
    assert job.params["prompt"] == PROMPT and job.params["negative_prompt"] == NEGATIVE
    assert (job.params["num_inference_steps"], job.params["guidance_scale"]) == (20, 8.0)
    assert (job.params["height"], job.params["width"], job.params["num_frames"]) == (1024, 1024, 16)
